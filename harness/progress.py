"""Progress lines on stderr while a run goes on: which case, which phase, rate, ok, hangs, time left.

On a terminal one status line is rewritten in place; in a log (CI, a pipe) a line is printed
every few seconds instead, so a long run is visibly alive without flooding the log. stdout is
left for the result table. Cases are named as the table names them (`case_name`), so the line
and the row of the same case read the same.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from .load import Progress
from .results.records import StrategyRecord

LOG_EVERY_S = 5.0
MIN_RATE_SPAN_S = 0.5


class ProgressPrinter:
    def __init__(
        self,
        quiet: bool = False,
        stream: Optional[TextIO] = None,
        warmup_s: float = 0.0,
        duration_s: Optional[float] = None,
    ) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.warmup_s = warmup_s
        self.duration_s = duration_s  # None: a --requests run, whose end is not known in advance
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

    def format(self, progress: Progress) -> str:
        counts = progress.counts
        ok, hang = counts.get("ok", 0), counts.get("hang", 0)
        errors = sum(v for k, v in counts.items() if k not in ("ok", "hang"))
        # A rate over the first instants of a phase says nothing yet.
        rate = "%6.0f" % (ok / progress.elapsed_s) if progress.elapsed_s >= MIN_RATE_SPAN_S else "     -"
        text = "%s: %-7s %5.1fs  %s ok/s  ok %d  hang %d  errors %d" % (
            self._case,
            progress.phase,
            progress.elapsed_s,
            rate,
            ok,
            hang,
            errors,
        )
        left = self._time_left(progress)
        return text + ("  %.0fs left" % left if left is not None else "")

    def _time_left(self, progress: Progress) -> Optional[float]:
        if self.duration_s is None:
            return None
        if progress.phase == "measure":
            return max(0.0, self.duration_s - progress.elapsed_s)
        return max(0.0, self.warmup_s - progress.elapsed_s) + self.duration_s

    def progress(self, progress: Progress) -> None:
        if self.quiet:
            return
        text = self.format(progress)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
        elif time.monotonic() - self._last_log >= LOG_EVERY_S:
            self._last_log = time.monotonic()
            self.line(text)

    def end_case(self, record: StrategyRecord) -> None:
        summary = "%s: %s in %.1fs" % (self._case, record.status, time.monotonic() - self._case_started)
        if record.requests:
            summary += ", %.0f ok/s, %d hang(s)" % (record.throughput_rps, record.requests.get("hang", 0))
        if record.leaks:
            summary += ", LEAKS: " + "; ".join(record.leaks)
        self.line(summary)

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
