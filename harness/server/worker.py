"""What every worker process a strategy starts should run first (pool initializer, prefork child).

Fork children inherit the server's signal handlers, which raise `ServerStop`; in a worker that
would turn the parent's orderly `terminate()` into tracebacks. Workers instead die on SIGTERM
and ignore SIGINT (a Ctrl-C in a terminal reaches the whole process group; the parent decides).
They also re-install the forensics hook so that a stack dump names the worker's own pid.
Standard library only.
"""

from __future__ import annotations

import os
import signal

from . import log


def init_worker() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked child of an asyncio server shares the parent's signal wake-up fd; a signal
    # delivered to the child would otherwise wake (and confuse) the parent's event loop.
    signal.set_wakeup_fd(-1)
    # Spawned and forkserver workers start with a fresh logger: give them the server's format.
    log.setup(os.environ.get("HANGBENCH_LOG_LEVEL", "INFO"))
    try:
        from . import faulthandler_hook
    except ImportError:  # pragma: no cover
        return
    faulthandler_hook.install_from_env()
