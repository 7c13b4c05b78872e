"""Misbehaves by leaving a daemon behind: double-forks a grandchild that calls setsid() and
sleeps (bounded), the classic way to escape the parent's session and process group.

The grandchild keeps stdout/stderr (a careless daemon) and announces itself on stderr as
"grandchild pid N". The server itself answers normally. Expected on stop: the grandchild is
found (subreaper + run-id marker) and killed; nothing is left.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import bounded_sleep, serve_http

from harness.server import faulthandler_hook
from harness.server.strategy import Strategy


def _daemonize_grandchild(listener) -> None:
    """Runs in the first child: setsid, fork the grandchild, exit."""
    try:
        os.setsid()
        if os.fork() == 0:
            try:
                listener.close()
                faulthandler_hook.install_from_env()
                sys.stderr.write("grandchild pid %d\n" % os.getpid())
                sys.stderr.flush()
                bounded_sleep()
            finally:
                os._exit(0)
    finally:
        os._exit(0)


class SetsidGrandchild(Strategy):
    name = "mis-setsid-grandchild"
    summary = "answers, and leaves a setsid() grandchild daemon"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "a detached grandchild outlives the server"

    def serve(self, listener, app, options):
        child = os.fork()
        if child == 0:
            _daemonize_grandchild(listener)
        os.waitpid(child, 0)  # the first child exits at once
        serve_http(listener, app)
