"""What every worker process runs first; the base class (`workers.py`) calls it, strategies never do.

Fork children inherit the server's stop handlers, which set the server's stop flag (or raise
`ServerStop`); in a worker that would wake the parent or turn the parent's orderly stop into
tracebacks. Workers instead die on SIGTERM and ignore SIGINT (a Ctrl-C in a terminal reaches
the whole process group; the parent decides). Under fork they also close the inherited fds
they must not hold (the listener, the stop pipe, their siblings' channels), and only then
unblock the stop signals the parent blocked around fork. Finally they re-install the forensics
hook so that a stack dump names the worker's own pid. Standard library only.
"""

from __future__ import annotations

import os
import signal
from typing import Sequence

from . import log
from .lifecycle import unblock_stop_signals


def init_worker(close_fds: Sequence[int] = ()) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked child of an asyncio server shares the parent's signal wake-up fd; a signal
    # delivered to the child would otherwise wake (and confuse) the parent's event loop.
    signal.set_wakeup_fd(-1)
    for fd in close_fds:  # fork only: numbers computed by the parent (workers.inherited_fds)
        try:
            os.close(fd)
        except OSError:
            pass
    unblock_stop_signals()
    # Spawned and forkserver workers start with a fresh logger: give them the server's format.
    log.setup(os.environ.get("HANGBENCH_LOG_LEVEL", "INFO"))
    try:
        from . import faulthandler_hook
    except ImportError:  # pragma: no cover
        return
    faulthandler_hook.install_from_env()
