"""Misbehaves at shutdown: ignores SIGTERM, and so does a worker process it forks.

It answers requests normally. Expected on stop: `ignored_sigterm`, both processes need SIGKILL,
the forked worker (orphaned when its parent is killed) is found and killed too.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _misbehaving_common import bounded_sleep, serve_http

from harness.server import faulthandler_hook
from harness.server.strategy import Strategy


class IgnoresSigterm(Strategy):
    name = "mis-ignores-sigterm"
    summary = "answers, but ignores SIGTERM (as does its worker)"
    broken = "SIGTERM is ignored; only SIGKILL stops it"

    def serve(self, listener, app, options):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if os.fork() == 0:
            try:
                faulthandler_hook.install_from_env()
                listener.close()
                bounded_sleep()
            finally:
                os._exit(0)
        serve_http(listener, app)
