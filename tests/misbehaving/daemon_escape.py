"""Misbehaves by leaving a daemon that hides every trace of its run: the server double-forks,
the middle child calls setsid(), and the grandchild closes its stdio and execs a fresh
interpreter with an EMPTY environment (so no HANGBENCH_RUN_ID marker), then sleeps (bounded).

Its command line carries "hangbench-daemon-escape" and, when the tests set one, their
HANGBENCH_TEST_TOKEN, so that a test can look for it; the harness cannot use that (it does not
know the token). The server itself answers normally. Expected on stop: the daemon is found
(run cgroup, or the subreaper's reparented-orphan rule) and killed; nothing is left.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import LIFETIME_S, serve_http

from harness.server.strategy import Strategy

TAG = "hangbench-daemon-escape"
DAEMON_CODE = "import sys, time\nfor _ in range(int(float(sys.argv[1]) * 2)):\n    time.sleep(0.5)\n"


def _escape(listener) -> None:
    """Runs in the middle child: setsid, fork the daemon, exit at once."""
    try:
        os.setsid()
        if os.fork() == 0:
            try:
                listener.close()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                tag = "%s-%s" % (TAG, os.environ.get("HANGBENCH_TEST_TOKEN", "none"))
                os.execve(sys.executable, [sys.executable, "-c", DAEMON_CODE, str(LIFETIME_S), tag], {})
            finally:
                os._exit(0)
    finally:
        os._exit(0)


class DaemonEscape(Strategy):
    name = "mis-daemon-escape"
    summary = "answers, and leaves a setsid() daemon exec'd with an empty environment"
    interrupt_on_stop = True  # a plain blocking accept loop: the stop signal must interrupt it
    broken = "a detached daemon without the run marker outlives the server"

    def serve(self, listener, app, options):
        child = os.fork()
        if child == 0:
            _escape(listener)
        os.waitpid(child, 0)  # the middle child exits at once: the daemon is reparented
        serve_http(listener, app)
