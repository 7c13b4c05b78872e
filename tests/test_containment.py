"""Containment: whatever a strategy does, the run ends within its computed bound, reports what
happened with the right status, and leaves no process behind.

Each misbehaving plugin of `tests/misbehaving/` (see its README) is run as a user would:
`python -m harness --plugin tests/misbehaving/FILE.py --strategy NAME`, with short bounds
(`--ready-timeout 3 --stop-grace 1`). Afterwards no process may carry the run's marker in its
environment -- the marker every server, worker and detached daemon inherits from the harness
(see `test_run.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import pytest
from test_run import FAST, Running, assert_nothing_left, load_json, run_harness

MISBEHAVING = Path(__file__).resolve().parent / "misbehaving"
BOUNDS = ("--ready-timeout", "3", "--stop-grace", "1")
SLACK_S = 20.0  # interpreter start-up, planning and writing, beyond the per-case budget
Record = Dict[str, Any]


@dataclass(frozen=True)
class Case:
    file: str
    name: Optional[str]  # None: the plugin cannot be loaded; it is named by its path
    status: str
    check: Callable[[Record], None]
    extra: Tuple[str, ...] = ()
    slow: bool = False


def answered(record: Record) -> None:
    assert record["requests"]["ok"] > 0 and record["hang_rate"] == 0, record["requests"]


def failed_to_start(record: Record) -> None:
    assert "before it printed its ready line" in record["message"]
    assert "hangbench_module_that_does_not_exist" in record["message"]  # the server's stderr tail


def crashed(record: Record) -> None:
    assert "exited" in record["message"]


def crashed_with_traceback(record: Record) -> None:
    crashed(record)
    assert "serve() raised on purpose" in record["message"]


def not_ready(record: Record) -> None:
    assert "no response to the accept probe" in record["message"]
    assert record["stuck"] and "sleep" in record["stuck"]  # where it was: its bounded sleep


def all_hang_in_recv(record: Record) -> None:
    assert record["requests"]["hang"] > 0 and record["requests"]["ok"] == 0
    assert record["hang_rate"] == 1.0
    assert record["stuck"] and "recv" in record["stuck"]
    assert record["forensics"]["processes"]


def closed_or_reset(record: Record) -> None:
    assert record["requests"]["ok"] == 0
    assert record["requests"]["closed"] + record["requests"]["reset"] > 0
    assert record["error_rate"] == 1.0


def malformed(record: Record) -> None:
    assert record["requests"]["ok"] == 0 and record["requests"]["malformed"] > 0


def sigterm_ignored(record: Record) -> None:
    answered(record)
    stop = record["stop"]
    assert stop["ignored_sigterm"] is True and stop["exit_code"] == -9
    assert len(stop["killed_pids"]) == 2, stop  # the server and the worker it forked
    assert record["stuck"]  # captured just before the SIGKILL


def daemon_found(record: Record) -> None:
    answered(record)
    assert len(record["stop"]["tree_pids"]) >= 2, record["stop"]  # the setsid() grandchild was seen


def burns_cpu(record: Record) -> None:
    """The spinner's CPU shows in the cost per request: about 3 CPU s per 1,000 requests here,
    where the same serial server without it (mis-baseline) costs under 0.1 s."""
    answered(record)
    assert record["server_cpu_s_per_1k"] > 0.5, record["server_cpu_s_per_1k"]


def fds_leaked(record: Record) -> None:
    """It keeps a dup of every accepted socket (up to 1,000): the run reports the growth."""
    answered(record)
    before, after = record["server_fds"]
    assert after - before > 500, record["server_fds"]
    assert record["leaks"] == ["the server's open fds grew from %d to %d during the run" % (before, after)]


# Strategies whose own misbehaviour is a leak of the server's fds (checked by their case).
LEAKING = {"mis-leaks-fds"}

CASES = [
    Case("baseline.py", "mis-baseline", "completed", answered),
    Case("import_error.py", None, "failed-to-start", failed_to_start),
    Case("raises_in_serve.py", "mis-raises-in-serve", "crashed", crashed_with_traceback),
    Case("exits_at_once.py", "mis-exits-at-once", "crashed", crashed),
    Case("never_binds.py", "mis-never-binds", "not-ready", not_ready, slow=True),
    Case("never_answers.py", "mis-never-answers", "not-ready", not_ready, slow=True),
    # Deadline shorter than the measurement, so that requests start -- and hang -- in it.
    Case(
        "stuck_in_recv.py",
        "mis-stuck-in-recv",
        "completed",
        all_hang_in_recv,
        ("--duration", "1.5", "--deadline", "0.5"),
        slow=True,
    ),
    Case("closes_at_once.py", "mis-closes-at-once", "completed", closed_or_reset),
    Case("answers_garbage.py", "mis-answers-garbage", "completed", malformed),
    Case("ignores_sigterm.py", "mis-ignores-sigterm", "completed", sigterm_ignored, slow=True),
    Case("setsid_grandchild.py", "mis-setsid-grandchild", "completed", daemon_found),
    Case("spins_cpu.py", "mis-spins-cpu", "completed", burns_cpu),
    Case("leaks_fds.py", "mis-leaks-fds", "completed", fds_leaked),
]


def test_every_misbehaving_plugin_has_a_case() -> None:
    plugins = {p.name for p in MISBEHAVING.glob("*.py") if not p.name.startswith("_")}
    assert plugins == {case.file for case in CASES}


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.file[:-3], marks=[pytest.mark.slow] if c.slow else []) for c in CASES]
)
def test_misbehaving_plugin_is_contained(case: Case, tmp_path: Path) -> None:
    plugin = str(MISBEHAVING / case.file)
    name = case.name or plugin
    output = tmp_path / "out.json"
    extra = dict(zip(FAST[::2], FAST[1::2]))
    extra.update(dict(zip(case.extra[::2], case.extra[1::2])))
    args = [item for pair in extra.items() for item in pair]
    result = run_harness(
        "--plugin", plugin, "--strategy", name, *args, *BOUNDS, "--output", str(output), "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    data = load_json(output)
    budget = data["config"]["case_budget_s"]
    assert result.wall_s <= budget + SLACK_S, (result.wall_s, budget)
    assert data["partial"] is False
    [record] = data["strategies"]
    assert record["strategy"] == name
    assert record["status"] == case.status, (record["status"], record["message"])
    assert record["wall_s"] <= budget
    if name not in LEAKING:
        assert record["leaks"] == [], record["leaks"]
    assert record["stop"]["leftover_pids"] == [] and record["stop"]["fd_leak"] == 0
    if record["stop"]["port_free"] is not None:
        assert record["stop"]["port_free"] is True
    case.check(record)
    assert_nothing_left(result.token)


@pytest.mark.slow
def test_second_ctrl_c_while_a_stubborn_server_is_stopped_still_stops_it(tmp_path: Path) -> None:
    """The server ignores SIGTERM, so stopping it takes the whole grace period: a second Ctrl-C
    arriving meanwhile must not abandon the stop half-way (leaving the server running)."""
    args = [
        "--plugin",
        str(MISBEHAVING / "ignores_sigterm.py"),
        "--strategy",
        "mis-ignores-sigterm",
        "--duration",
        "20",
        "--warmup",
        "0.3",
        "--concurrency",
        "4",
        "--stop-grace",
        "3",
        "--output",
        str(tmp_path / "out.json"),
    ]
    run = Running(args, tmp_path)
    try:
        run.wait_for_line(lambda line: " measure " in line, 60)
        run.interrupt()
        time.sleep(1.0)  # inside the 3 s grace: the server is being stopped now
        run.interrupt()
        code = run.wait(60)
    finally:
        run.close()
    assert code == 130, run.stderr
    assert "Traceback" not in run.stderr
    assert_nothing_left(run.token)
