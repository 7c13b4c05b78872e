"""The run's signal policy: any signal that asks the harness to end stops the server tree first.

Left to their defaults, SIGTERM, SIGHUP (the terminal closed, an ssh session dropped) and SIGQUIT
(Ctrl-\\) end the harness at once and leave the current server tree running. So all of them
count as a Ctrl-C: the first stops the current measurement, stops the server and saves partial
results; a second leaves at once -- except while a server tree is being stopped. SIGKILL cannot
be caught: for it, the server's own watchdog (`harness.server.watchdog`) ends the tree.

Shaped after gunicorn's arbiter: the handler only sets a flag (and writes one line); the run
loop looks at the flag between steps.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Dict, Tuple

# The signals that end the harness by default and can be caught (SIGHUP/SIGQUIT are POSIX only).
STOP_SIGNALS: Tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)


class Interrupts:
    """First Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT): stop the current measurement, save partial
    results. Second: leave now.

    "Now" has two exceptions, marked by `shielded` > 0, where a second signal only sets `leave`
    and `leave_if_asked()` raises KeyboardInterrupt once the section is over: stopping a server
    tree (cut short, it would leave the server running), and the load generator (it ends within
    a moment of the first Ctrl-C anyway, and a KeyboardInterrupt inside an event-loop callback
    is swallowed by the loop, or turns its teardown into a page of noise)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.shielded = 0
        self.leave = False
        self.signum = signal.SIGINT  # the first signal received
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum)  # 130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            if self.shielded:
                self.leave = True
                _say("\nhangbench: leaving as soon as the server is stopped\n")
                return
            raise KeyboardInterrupt
        self.signum = signal.Signals(signum)
        self.stop.set()
        how = "" if signum == signal.SIGINT else " by %s" % signal.Signals(signum).name
        _say(
            "\nhangbench: interrupted%s; stopping the current server and saving partial results "
            "(Ctrl-C again to quit at once)\n" % how
        )

    def leave_if_asked(self) -> None:
        if self.leave and not self.shielded:
            raise KeyboardInterrupt


def _say(text: str) -> None:
    """Write to stderr, which may be gone (SIGHUP: the terminal closed): never raise."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
