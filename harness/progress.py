"""Progress lines on stderr while a run goes on: which case, which phase, time, requests so far.

On a terminal one status line is rewritten in place; in a log (CI, a pipe) a line is printed
every few seconds instead, so a long run is visibly alive without flooding the log. stdout is
left for the result table.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

LOG_EVERY_S = 5.0


class ProgressPrinter:
    def __init__(self, quiet: bool = False, stream: Optional[TextIO] = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._case = ""
        self._last_log = 0.0
        self._case_started = 0.0

    def line(self, text: str) -> None:
        if not self.quiet:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()

    def start_case(self, index: int, total: int, name: str) -> None:
        self._case = "[%d/%d] %s" % (index, total, name)
        self._case_started = time.monotonic()
        self._last_log = 0.0
        self.line("%s: starting server" % self._case)

    def progress(self, progress: Any) -> None:
        if self.quiet:
            return
        counts = progress.counts
        errors = sum(v for k, v in counts.items() if k not in ("ok", "hang"))
        text = "%s: %-7s %5.1fs  ok %d  hang %d  errors %d" % (
            self._case,
            progress.phase,
            progress.elapsed_s,
            counts.get("ok", 0),
            counts.get("hang", 0),
            errors,
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
        elif time.monotonic() - self._last_log >= LOG_EVERY_S:
            self._last_log = time.monotonic()
            self.line(text)

    def end_case(self, record: Any) -> None:
        summary = "%s: %s in %.1fs" % (self._case, record.status, time.monotonic() - self._case_started)
        if record.requests:
            summary += ", %.0f ok/s, %d hang(s)" % (record.throughput_rps, record.requests.get("hang", 0))
        if record.leaks:
            summary += ", LEAKS: " + "; ".join(record.leaks)
        self.line(summary)

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
