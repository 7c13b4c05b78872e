"""Containment: whatever a strategy does, the run ends within its computed bound, reports what
happened with the right status, and leaves no process behind.

Each misbehaving plugin of `tests/misbehaving/` (see its README) is run as a user would:
`python -m harness --plugin tests/misbehaving/FILE.py --strategy NAME`, with short bounds
(`--ready-timeout 3 --stop-grace 1`). Afterwards no process may carry the run's marker in its
environment -- the marker every server, worker and detached daemon inherits from the harness
(see `test_run.py`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import psutil
import pytest
from test_run import FAST, Running, assert_nothing_left, load_json, run_harness

MISBEHAVING = Path(__file__).resolve().parent / "misbehaving"
BOUNDS = ("--ready-timeout", "3", "--stop-grace", "1", "--allow-failures")  # failing is what they do
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


REFUSED = "refused"  # not a status: the harness refuses the command line (exit 2) before any server starts


def failed_to_start(record: Record) -> None:
    """A plugin that cannot be imported is bad input: refused before anything starts, naming the error."""
    assert record["returncode"] == 2 and record["stderr"].startswith("hangbench: error: ")
    assert len(record["stderr"].splitlines()) == 1
    assert "hangbench_module_that_does_not_exist" in record["stderr"]


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
    # Where a capture finds it depends on the moment: in recv on a client's connection, or back in
    # accept holding the connections its clients gave up on. Both name the fault.
    assert record["stuck"] and ("recv" in record["stuck"] or "accepted client connection" in record["stuck"])
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


def daemon_found_without_marker(record: Record) -> None:
    answered(record)
    stop = record["stop"]
    assert len(stop["tree_pids"]) >= 2, stop  # the server and the exec'd daemon (the middle child is brief)
    assert stop["containment"] in ("cgroup", "subreaper+poll")


def forged_ready_refused(record: Record) -> None:
    assert record["message"].startswith("the ready line's 'port' is Infinity, not an integer"), record["message"]
    assert "Traceback" not in record["message"]


def drained(record: Record) -> None:
    answered(record)
    stdout_bytes, stderr_bytes = record["stop"]["output_bytes"]
    assert stdout_bytes + stderr_bytes > 10_000_000, record["stop"]["output_bytes"]
    assert record["stop"]["output_dropped_bytes"] > 0


def worker_died(record: Record) -> None:
    """A pool worker `_exit`s after reading every fifth request: that request hangs, and the
    cause names the dead worker, not an overloaded or lost-task server."""
    assert record["requests"]["hang"] > 0 and record["requests"]["ok"] > 0
    assert record["cause"] == "worker-died", (record["cause"], record["cause_evidence"])


# Strategies whose own misbehaviour is a leak of the server's fds (checked by their case).
LEAKING = {"mis-leaks-fds"}

CASES = [
    Case("baseline.py", "mis-baseline", "completed", answered),
    Case("import_error.py", None, REFUSED, failed_to_start),
    Case("raises_in_serve.py", "mis-raises-in-serve", "crashed", crashed_with_traceback),
    Case("exits_at_once.py", "mis-exits-at-once", "crashed", crashed),
    Case("never_binds.py", "mis-never-binds", "not-ready", not_ready, slow=True),
    Case("never_answers.py", "mis-never-answers", "not-ready", not_ready, slow=True),
    # Deadline shorter than the measurement, so that requests start -- and hang -- in it.
    Case(
        "stuck_in_recv.py",
        "mis-stuck-in-recv",
        "no-response",  # measured to the end, not one response
        all_hang_in_recv,
        ("--duration", "1.5", "--deadline", "0.5"),
        slow=True,
    ),
    Case("closes_at_once.py", "mis-closes-at-once", "no-response", closed_or_reset),
    Case("answers_garbage.py", "mis-answers-garbage", "completed", malformed),
    Case("ignores_sigterm.py", "mis-ignores-sigterm", "completed", sigterm_ignored, slow=True),
    Case("setsid_grandchild.py", "mis-setsid-grandchild", "completed", daemon_found),
    Case("spins_cpu.py", "mis-spins-cpu", "completed", burns_cpu),
    Case("leaks_fds.py", "mis-leaks-fds", "completed", fds_leaked),
    Case("daemon_escape.py", "mis-daemon-escape", "completed", daemon_found_without_marker, slow=True),
    Case("forged_ready.py", "mis-forged-ready", "not-ready", forged_ready_refused, slow=True),
    Case("chatty_output.py", "mis-chatty-output", "completed", drained, slow=True),
    Case(
        "worker_exits.py",
        "mis-worker-exits",
        "completed",
        worker_died,
        ("--engine", "threads", "--duration", "3"),
        True,
    ),
]


def test_every_misbehaving_plugin_has_a_case() -> None:
    plugins = {p.name for p in MISBEHAVING.glob("*.py") if not p.name.startswith("_")}
    assert plugins == {case.file for case in CASES}


@pytest.mark.slow  # every case runs the harness and a server: seconds each, slow or not
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.file[:-3], marks=[pytest.mark.slow] if c.slow else []) for c in CASES]
)
def test_misbehaving_plugin_is_contained(case: Case, tmp_path: Path) -> None:
    plugin = str(MISBEHAVING / case.file)
    name = case.name or plugin
    output = tmp_path / "out.json"
    extra = dict(zip(FAST[::2], FAST[1::2], strict=True))
    extra.update(dict(zip(case.extra[::2], case.extra[1::2], strict=True)))
    args = [item for pair in extra.items() for item in pair]
    result = run_harness(
        "--plugin", plugin, "--strategy", name, *args, *BOUNDS, "--output", str(output), "--quiet", cwd=tmp_path
    )
    assert "Traceback" not in result.stderr, result.describe()
    if case.status == REFUSED:
        case.check({"returncode": result.returncode, "stderr": result.stderr})
        assert not output.exists()
        assert_nothing_left(result.token)
        return
    assert result.returncode == 0, result.describe()
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
    assert with_token_in_cmdline(result.token) == []  # a daemon that dropped the marker from its environment


def with_token_in_cmdline(token: str) -> List[int]:
    """Live processes whose command line names `token` (the daemon_escape plugin's daemon)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(token in part for part in proc.info["cmdline"] or ()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_chatty_server_keeps_the_runs_scratch_space_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """~100 MB/s of server output for 3 s: the harness's scratch (logs, forensics) stays under
    a few MiB while the run goes on, and the run completes normally."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the harness's temporary folders go here
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], disk_usage(scratch))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = tmp_path / "out.json"
    plugin = str(MISBEHAVING / "chatty_output.py")
    try:
        result = run_harness(
            "--plugin", plugin, "--strategy", "mis-chatty-output", "--duration", "3", "--warmup", "0.3",
            "--concurrency", "4", *BOUNDS, "--output", str(output), "--quiet", cwd=tmp_path,
        )  # fmt: skip
    finally:
        done.set()
        watcher.join(5)
    assert result.returncode == 0, result.describe()
    [record] = load_json(output)["strategies"]
    assert record["status"] == "completed" and record["requests"]["ok"] > 0
    assert sum(record["stop"]["output_bytes"]) > 50_000_000, record["stop"]
    assert peak[0] < 8 << 20, "the scratch space grew to %d bytes" % peak[0]
    assert_nothing_left(result.token)


def disk_usage(folder: Path) -> int:
    """Bytes allocated under `folder` (files may vanish while it is walked)."""
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.lstat().st_blocks * 512
        except OSError:
            continue
    return total


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
