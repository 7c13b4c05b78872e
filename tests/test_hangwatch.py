"""When a case captures (harness.hangwatch): at the first hang, when a request is overdue,
bounded and spaced; and how the captures become the record's cause. A stand-in server keeps
these tests fast; test_causes_strategies.py runs real ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from harness import hangwatch
from harness.hangwatch import HangWatch
from harness.results.records import StrategyRecord
from harness.supervise.dumps import Forensics, Frame, ProcessDump, ThreadDump


@dataclass
class Tick:
    phase: str = "measure"
    elapsed_s: float = 1.0
    counts: Dict[str, int] = field(default_factory=dict)
    oldest_in_flight_s: Optional[float] = None


def _idle_process(pid: int) -> ProcessDump:
    frames = (Frame("accept", "/usr/lib/python3.11/socket.py", 294),)
    return ProcessDump(pid, "python", "S", None, "py-spy", (ThreadDump(pid, "MainThread", frames),), (), ())


class FakeServer:
    pid = 4242

    def __init__(self) -> None:
        self.forensics: Optional[Forensics] = None
        self.captured = 0
        self.alive: Tuple[int, ...] = (4242, 4243)

    def pids(self) -> Tuple[int, ...]:
        return self.alive

    def capture_forensics(self, timeout_s: float) -> Forensics:
        self.captured += 1
        self.forensics = Forensics(0.0, 0.0, tuple(_idle_process(p) for p in self.alive), "idle")
        return self.forensics

    def stderr_tail(self, n_lines: int = 20) -> str:
        return ""


def watch(server: Any) -> HangWatch:
    return HangWatch(server, port=1, forensics_timeout_s=5.0, deadline_s=2.0)


def test_no_capture_in_warm_up_or_without_a_hang_or_an_overdue_request() -> None:
    w = watch(FakeServer())
    assert not w.tick(Tick(phase="warmup", counts={"hang": 3}))
    assert not w.tick(Tick(counts={"hang": 0}))
    assert not w.tick(Tick(oldest_in_flight_s=0.9))  # under half the 2 s deadline


def test_first_hang_captures_once_and_an_overdue_request_captures_again_later(monkeypatch: Any) -> None:
    clock = [100.0]
    monkeypatch.setattr(hangwatch.time, "monotonic", lambda: clock[0])
    server = FakeServer()
    w = watch(server)
    assert w.tick(Tick(counts={"hang": 1}))
    assert not w.tick(Tick(counts={"hang": 1}))  # one at a time: the first is still running
    w.capture()
    assert not w.tick(Tick(counts={"hang": 2}))  # a later hang alone does not capture again
    assert not w.tick(Tick(oldest_in_flight_s=1.5))  # overdue, but too soon after the last capture
    clock[0] += hangwatch.MIN_GAP_S
    assert w.tick(Tick(oldest_in_flight_s=1.5))
    w.capture()
    clock[0] += hangwatch.MIN_GAP_S
    assert w.tick(Tick(oldest_in_flight_s=1.0))  # exactly half the deadline is overdue
    w.capture()
    clock[0] += hangwatch.MIN_GAP_S
    assert not w.tick(Tick(oldest_in_flight_s=1.9))  # MAX_CAPTURES reached
    assert server.captured == hangwatch.MAX_CAPTURES == w.captures


def test_apply_names_the_cause_from_a_capture_and_notes_exited_processes(monkeypatch: Any) -> None:
    server = FakeServer()
    w = watch(server)
    w.tick(Tick(phase="warmup"))  # sees 4242 and 4243
    server.alive = (4242,)  # 4243 exits
    monkeypatch.setattr(hangwatch, "snapshot", lambda port, pids, root: _snapshot())
    w.capture()
    record = w.apply(StrategyRecord("x", "completed", requests={"ok": 5, "hang": 2}))
    assert record.cause == "worker-died"
    assert record.cause_facts is not None and record.cause_facts["exited"] == [4243]
    assert record.cause_facts["connections"][0]["client_port"] == 40312


def test_apply_leaves_a_record_without_hangs_alone() -> None:
    w = watch(FakeServer())
    record = StrategyRecord("x", "completed", requests={"ok": 5, "hang": 0})
    assert w.apply(record) is record


def _snapshot() -> Any:
    from harness.supervise.connections import ServerConnection, Snapshot

    conn = ServerConnection(40312, "CLOSE_WAIT", 0, 0, "9", (4242,), "FIN_WAIT2", 0, 116, None, 2500)
    return Snapshot(port=1, root_pid=4242, pids=(4242,), accept_queue=0, connections=(conn,))
