"""Watch one case for hangs and name their cause: the glue between a run and `causes`.

`case.run_case` makes one `HangWatch` per case once the server is ready. During the measurement
it is told of every progress report (`tick`: it notes the tree's processes, so one that exits
during the run is known, and says when to capture: at the first hang, or as soon as a request is
overdue where the engine reports how old its oldest request in flight is) and it takes the
captures (`capture`: a connection snapshot, see `supervise.connections`, the forensics stacks,
and a second snapshot; only connections unchanged across the two count), bounded to
`MAX_CAPTURES` per case. At the end `apply` turns the captures, the server's log tail and the
client's counts into the record's `cause`, `cause_evidence` and `cause_facts` (see
`supervise.causes`).

Kept out of case.py so that the orchestration there stays one screen and the facts gathered for
a cause are in one place.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Set, Tuple

from .errors import plain
from .results.records import StrategyRecord
from .supervise.causes import OVERLOADED, UNKNOWN, Facts, name_cause, threads_from
from .supervise.connections import Snapshot, persisting, snapshot
from .supervise.dumps import Forensics
from .supervise.supervisor import ServerProcess

MAX_CAPTURES = 3  # stack captures per case; each costs up to a few seconds of py-spy
OVERDUE_FRACTION = 0.5  # a request this far into its deadline is overdue: capture while it waits
MIN_GAP_S = 3.0  # between two captures of one case
LOG_TAIL_LINES = 400  # of the server's stderr, searched for workers' fd errors


@dataclass(frozen=True)
class _Capture:
    snapshot: Snapshot
    forensics: Optional[Forensics]
    exited: Tuple[int, ...]


class HangWatch:
    def __init__(self, server: ServerProcess, port: int, forensics_timeout_s: float, deadline_s: float) -> None:
        self._server = server
        self._port = port
        self._timeout_s = forensics_timeout_s
        self._deadline_s = deadline_s
        self._lock = threading.Lock()
        self._seen: Set[int] = set()
        self._started = 0
        self._busy = False
        self._last_at = 0.0
        self._captures: List[_Capture] = []

    @property
    def captures(self) -> int:
        return len(self._captures)

    def tick(self, progress: Any) -> bool:
        """Note the tree's live processes (once per progress report); True if a capture should
        start now: the first hang of the measurement, or -- where the engine reports the age of
        its oldest request in flight (`oldest_in_flight_s`) -- a request past OVERDUE_FRACTION of
        its deadline, at most MAX_CAPTURES per case, MIN_GAP_S apart, one at a time."""
        pids = self._server.pids()
        now = time.monotonic()
        oldest = getattr(progress, "oldest_in_flight_s", None)
        overdue = oldest is not None and oldest >= OVERDUE_FRACTION * self._deadline_s
        hung = bool(progress.counts.get("hang"))
        with self._lock:
            self._seen.update(pids)
            if progress.phase != "measure" or self._busy or self._started >= MAX_CAPTURES:
                return False
            if self._started and now - self._last_at < MIN_GAP_S:
                return False
            if not (overdue or (hung and not self._started)):
                return False
            self._busy = True
            return True

    def explains(self, record: StrategyRecord) -> bool:
        """The captures so far name a fault (not `overloaded` or `unknown`) for the record's
        hangs. A queue seen under load is worth one more look once the load has ended: a queue
        drains, a lost connection stays."""
        return self.apply(record).cause not in (None, UNKNOWN, OVERLOADED)

    def capture(self, final: bool = False) -> None:
        """Connections, then stacks of every process; a no-op past MAX_CAPTURES, except for the
        `final` one, taken once the load has ended."""
        with self._lock:
            if self._started >= MAX_CAPTURES + (1 if final else 0):
                self._busy = False
                return
            self._started += 1
            self._busy = True
        try:
            # The connections first: cheap and instantaneous, whereas stacks of a large tree can
            # take seconds, during which a slow server may still serve what looked stuck.
            before = snapshot(self._port, self._server.pids(), self._server.pid)
            forensics = self._server.capture_forensics(self._timeout_s)
            # Again after the stacks (seconds later): only what stayed put is evidence of a hang.
            taken = persisting(before, snapshot(self._port, self._server.pids(), self._server.pid))
            # A process gone by the second snapshot, or whose command line was already empty (its
            # memory released: exiting), was exiting while its stack was taken: it serves nothing.
            live = set(taken.pids) - {dump.pid for dump in forensics.processes if not dump.cmdline}
            with self._lock:
                self._seen.update(before.pids)
                exited = tuple(sorted(self._seen - live))
                self._captures.append(_Capture(taken, forensics, exited))
        finally:
            with self._lock:
                self._busy = False
                self._last_at = time.monotonic()

    def apply(self, record: StrategyRecord) -> StrategyRecord:
        """The record with its cause, if its hangs (or a worker's fd errors) have one: the latest
        capture with a named cause wins over `unknown`."""
        with self._lock:
            captures = list(self._captures)
        log_lines = tuple(self._server.stderr_tail(LOG_TAIL_LINES).splitlines())
        best: Optional[Tuple[str, List[str], _Capture]] = None
        for index, taken in reversed(list(enumerate(captures))):
            found = name_cause(self._facts(record, taken, log_lines))
            if found is None:
                continue
            evidence = list(found[1])
            if len(captures) > 1:
                evidence.append("from capture %d of %d" % (index + 1, len(captures)))
            # A fault seen in any capture wins over a queue, and a queue over `unknown`; among
            # equals, the latest capture.
            if best is None or _rank(found[0]) > _rank(best[0]):
                best = (found[0], evidence, taken)
        if best is None:
            return record
        cause, evidence, taken = best
        facts = dict(taken.snapshot.to_dict(), exited=list(taken.exited), captures=len(captures))
        return replace(record, cause=cause, cause_evidence=evidence, cause_facts=plain(facts))

    def _facts(self, record: StrategyRecord, taken: _Capture, log_lines: Tuple[str, ...]) -> Facts:
        return Facts(
            hangs=record.requests.get("hang", 0),
            ok=record.requests.get("ok", 0),
            connections=taken.snapshot.connections,
            accept_queue=taken.snapshot.accept_queue,
            root_pid=self._server.pid,
            pids=taken.snapshot.pids,
            threads=tuple(t for t in threads_from(taken.forensics.processes) if t.pid not in taken.exited)
            if taken.forensics
            else (),
            exited=taken.exited,
            log_lines=log_lines,
            milestones=dict(record.hang_milestones),
            client_view=client_view(record.timelines),
        )


def client_view(timelines: List[Dict[str, Any]]) -> Dict[int, str]:
    """Client port -> "hang: request sent, no byte back (request_written at 0.1 ms)", from the
    client's kept timelines: the join of the client's view of a connection to the server's."""
    view: Dict[int, str] = {}
    for item in timelines:
        port, marks = item.get("port"), item.get("milestones") or {}
        if isinstance(port, int) and isinstance(marks, dict) and marks:
            name, at = list(marks.items())[-1]
            view[port] = "%s: %s (%s at %.1f ms)" % (item.get("outcome"), item.get("last"), name, at / 1000.0)
    return view


def _rank(cause: str) -> int:
    return {UNKNOWN: 0, OVERLOADED: 1}.get(cause, 2)
