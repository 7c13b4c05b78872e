"""`--sweep`: the levels a case is measured at, one record per (case, level).

    --sweep concurrency=1,8,32,128,512     a list (closed loop: requests in flight)
    --sweep rate=500:20000:x2              a geometric range: 500, 1000, ... 16000 (open loop, req/s)
    --sweep rate=1000:5000:+1000           an arithmetic range: 1000, 2000, ... 5000

A range runs from START up to STOP inclusive (STOP itself only when the steps land on it);
levels are listed in increasing order, each once, at most MAX_LEVELS of them. A `rate` sweep
makes the run open loop at each level's rate (`--concurrency` is then the connection pool); a
`concurrency` sweep keeps the run's load model and sets the requests in flight.

Server starts: every level gets a fresh server, for every strategy. Reusing one server across
the levels of a case would save a start (0.2-1 s) per level, but it is not sound for what a
sweep is for: a rate sweep drives the upper levels past saturation on purpose, and an
overloaded server carries its backlog, queued work and half-open connections (and, for the
hang-prone strategies, stuck workers and leaked sockets) into the next level, whose numbers
would then depend on the order of the levels. With a fresh server each level starts from the
same state, levels can be compared with each other and with plain runs, and a hang or crash
is attributed to the level that caused it (with its own forensics). The cost is bounded by
running sweeps with a shorter default measurement (`DEFAULT_DURATION_S`, `DEFAULT_WARMUP_S`
per level unless `-d`/`-w` are given), and by not running a rate level above one at which the
case already fell behind (it hung, failed, or sent under 99 % of the rate:
`matrix.saturated_below`): a higher open-loop rate only overloads it more, the knee is already
below, and each such level costs a deadline of queued requests plus a forensics capture
(10-15 s instead of 3). Those levels have no record; the run prints that it skipped them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

from .errors import UsageError
from .load import workload as limits

KINDS = ("concurrency", "rate")
MAX_LEVELS = 40
DEFAULT_DURATION_S = 2.0  # per level, unless --duration is given
DEFAULT_WARMUP_S = 0.5  # per level (a fresh server each), unless --warmup is given


class SweepError(UsageError):
    """A --sweep value that cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class Sweep:
    kind: str  # "concurrency" or "rate"
    levels: Tuple[float, ...]  # increasing; whole numbers for concurrency

    def level(self, value: float) -> dict:
        """The record's `level` for one value: {"concurrency": 32} or {"rate": 2000.0}."""
        return {self.kind: int(value)} if self.kind == "concurrency" else {self.kind: float(value)}

    def describe(self) -> str:
        return "%s %s" % (self.kind, ", ".join("%g" % value for value in self.levels))


def parse(text: str) -> Sweep:
    """`KIND=LIST` or `KIND=START:STOP:xFACTOR` / `KIND=START:STOP:+STEP` as a Sweep, or SweepError."""
    kind, sep, spec = text.partition("=")
    kind, spec = kind.strip(), spec.strip()
    if not sep or kind not in KINDS or not spec:
        raise SweepError(
            "--sweep takes concurrency=LIST or rate=LIST, a LIST being 1,8,32 or START:STOP:xFACTOR "
            "(e.g. rate=500:20000:x2) (got %r)" % text
        )
    levels = _range(kind, spec) if ":" in spec else [_number(kind, item) for item in spec.split(",")]
    if not levels:  # e.g. a range whose bounds are not comparable numbers: nothing would run
        raise SweepError("--sweep %s names no level; give at least one" % text)
    for value in levels:
        _check(kind, value)
    if len(set(levels)) < len(levels):
        raise SweepError("--sweep %s names a level twice; name each level once" % text)
    if len(levels) > MAX_LEVELS:
        raise SweepError("--sweep %s has %d levels; at most %d" % (text, len(levels), MAX_LEVELS))
    return Sweep(kind, tuple(sorted(levels)))


def _number(kind: str, item: str) -> float:
    item = item.strip()
    try:
        value = float(item)
    except ValueError:
        raise SweepError("--sweep %s: %r is not a number" % (kind, item)) from None
    if not math.isfinite(value):  # nan makes every comparison false (a range of no level), inf a range unbounded
        raise SweepError("--sweep %s: %r is not a finite number" % (kind, item))
    if kind == "concurrency" and not value.is_integer():
        raise SweepError("--sweep concurrency: %r is not a whole number" % item)
    return value


def _range(kind: str, spec: str) -> List[float]:
    parts = spec.split(":")
    if len(parts) != 3 or parts[2].strip()[:1] not in ("x", "+"):
        raise SweepError(
            "--sweep %s=%s: a range is START:STOP:xFACTOR or START:STOP:+STEP (e.g. 500:20000:x2)" % (kind, spec)
        )
    start, stop = _number(kind, parts[0]), _number(kind, parts[1])
    step_text = parts[2].strip()
    step = _number(kind if step_text[0] == "+" else "rate", step_text[1:])
    if stop < start:
        raise SweepError("--sweep %s=%s: STOP (%g) is below START (%g)" % (kind, spec, stop, start))
    geometric = step_text[0] == "x"
    if (geometric and not step > 1) or (not geometric and not step > 0) or not math.isfinite(step):
        what = "FACTOR must be more than 1" if geometric else "STEP must be more than 0"
        raise SweepError("--sweep %s=%s: %s (got %g)" % (kind, spec, what, step))
    levels: List[float] = []
    value = start
    # Bounded: MAX_LEVELS + 1 steps are enough to tell the user there are too many.
    while value <= stop * (1 + 1e-9) and len(levels) <= MAX_LEVELS:
        levels.append(float(round(value)) if kind == "concurrency" else round(value, 6))
        value = value * step if geometric else value + step
    if kind == "concurrency":
        levels = sorted(set(levels))  # x1.5 from 1 rounds 1, 2, 2, 3: each level once
    return levels


def _check(kind: str, value: float) -> None:
    if kind == "concurrency":
        if not 1 <= value <= limits.MAX_CONCURRENCY:
            raise SweepError(
                "--sweep concurrency levels must be between 1 and %d (got %g)" % (limits.MAX_CONCURRENCY, value)
            )
    elif not (math.isfinite(value) and 0 < value <= limits.MAX_RATE):
        raise SweepError(
            "--sweep rate levels must be more than 0 and at most %g req/s (got %g)" % (limits.MAX_RATE, value)
        )
