"""The harness's end of the server watchdog (see `harness.server.watchdog`): a pipe whose read
end the server gets and whose write end only the harness holds, so that the harness's death,
even by SIGKILL, is an EOF the server sees.

"Only the harness": the write end is O_CLOEXEC (os.pipe), so exec'd children never get it, and
it is closed in every child the harness *forks* (multiprocessing's fork start method) by an
at-fork hook -- a forked copy holding it would keep the pipe open after the harness died.
"""

from __future__ import annotations

import os
from typing import Optional, Set

from .markers import WATCHDOG_FD_ENV

__all__ = ["WATCHDOG_FD_ENV", "WatchdogPipe"]

_writers: Set[int] = set()


def _close_writers_in_child() -> None:
    for fd in list(_writers):
        try:
            os.close(fd)
        except OSError:
            pass
    _writers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_writers_in_child)


class WatchdogPipe:
    """`read_fd` goes to the server (pass_fds and WATCHDOG_FD_ENV); call `sent()` once the
    server is started, `close()` once its tree is gone."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()
        _writers.add(self._write_fd)
        self._read_open = True

    @property
    def write_fd(self) -> Optional[int]:
        return self._write_fd if self._write_fd >= 0 else None

    def sent(self) -> None:
        """The server has its copy of the read end: the harness's copy is not needed."""
        if self._read_open:
            os.close(self.read_fd)
            self._read_open = False

    def close(self) -> None:
        self.sent()
        if self._write_fd >= 0:
            _writers.discard(self._write_fd)
            os.close(self._write_fd)
            self._write_fd = -1
