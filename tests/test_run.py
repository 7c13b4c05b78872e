"""The main job end to end, as a new user runs it: `python -m harness --strategy ...` in a
subprocess, in a scratch folder, with short settings; then the JSON, the Markdown table, the
progress lines, `compare`, the lingering-reference hang of the article, and Ctrl-C.

Every harness subprocess carries a marker in its environment (`HANGBENCH_TEST_TOKEN`), which
every server it starts inherits (a server gets the harness's environment, and so do the
server's own children, even one that detaches itself with setsid()). After a run, no process
may carry the marker: that is how these tests check that a run leaves nothing behind. The
helpers here are shared with `test_containment.py`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
TOKEN_ENV = "HANGBENCH_TEST_TOKEN"
FAST = ("--duration", "1", "--warmup", "0.3", "--concurrency", "4")
RUN_TIMEOUT_S = 180.0  # no harness subprocess of these tests may run longer
GONE_WAIT_S = 5.0  # processes being reaped when the harness exits get this long to disappear


# --------------------------------------------------------------------------- shared helpers


def harness_env(token: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    for name in ("HANGBENCH_FORENSICS_DIR", "HANGBENCH_RUN_ID"):
        env.pop(name, None)
    env[TOKEN_ENV] = token
    return env


@dataclass
class Finished:
    """A harness run that ended: its exit status, output, wall time and marker."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    token: str

    def describe(self) -> str:
        return "exit %s after %.1f s\n--- stdout\n%s\n--- stderr\n%s" % (
            self.returncode,
            self.wall_s,
            self.stdout[-3000:],
            self.stderr[-3000:],
        )


def run_harness(*args: str, cwd: Path, timeout: float = RUN_TIMEOUT_S) -> Finished:
    """`python -m harness ARGS` to completion (bounded), in `cwd`, marked with a fresh token."""
    token = uuid.uuid4().hex
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness", *args],
            cwd=str(cwd),
            env=harness_env(token),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        kill_marked(token)  # whatever happened, leave nothing running (a no-op when all is well)
    return Finished(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started, token)


def marked(token: str) -> List[psutil.Process]:
    """Live processes (not zombies) whose environment carries `token`: started by one run."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.pid != os.getpid()
                and proc.environ().get(TOKEN_ENV) == token
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except (psutil.Error, OSError):
            pass  # gone, a zombie, or not ours to read
    return found


def left_behind(token: str, wait_s: float = GONE_WAIT_S) -> List[str]:
    """What is still running of a finished run after `wait_s` (bounded), described."""
    deadline = time.monotonic() + wait_s
    while marked(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    described = []
    for proc in marked(token):
        try:
            described.append("pid %d: %s" % (proc.pid, " ".join(proc.cmdline())[:200]))
        except psutil.Error:
            pass
    return described


def kill_marked(token: str) -> None:
    """SIGKILL the processes carrying this test's own token (and nothing else)."""
    for proc in marked(token):
        try:
            proc.kill()
        except psutil.Error:
            pass


def assert_nothing_left(token: str) -> None:
    left = left_behind(token)
    kill_marked(token)
    assert not left, "processes of the run are still alive: %s" % "; ".join(left)


def load_json(path: Path) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        data: Dict[str, Any] = json.load(stream)
    return data


def by_strategy(data: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {record["strategy"]: record for record in data["strategies"]}


def assert_one_sentence_error(result: Finished, *fragments: str) -> None:
    """Exit 2, one line on stderr starting 'hangbench: error:', no traceback."""
    assert result.returncode == 2, result.describe()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("hangbench: error: "), result.describe()
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.describe()


class Running:
    """A harness run in progress (Popen, own session) whose stderr lines can be awaited."""

    def __init__(self, args: Sequence[str], cwd: Path) -> None:
        self.token = uuid.uuid4().hex
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness", *args],
            cwd=str(cwd),
            env=harness_env(self.token),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stderr_lines: List[str] = []
        self.stdout_lines: List[str] = []
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: Any, sink: List[str], announce: bool) -> None:
        for line in stream:  # ends at EOF: when the harness (and all holding the pipe) exit
            sink.append(line)
            if announce:
                self._lines.put(line)
        if announce:
            self._lines.put(None)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    "no such line within %.0f s; stderr so far:\n%s" % (timeout_s, "".join(self.stderr_lines))
                )
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    "the harness ended (exit %s) before that line; stderr:\n%s"
                    % (self.proc.wait(5), "".join(self.stderr_lines))
                )
            if predicate(line):
                return line

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        os.kill(self.proc.pid, signum)  # the harness process only, as a terminal's Ctrl-C reaches it

    def wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def close(self) -> None:
        """Whatever happened: kill the harness's own process group, then anything marked."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        kill_marked(self.token)


# --------------------------------------------------------------------------- a small real run


@dataclass
class SmallRun:
    cwd: Path
    result: Finished
    output: Path
    data: Dict[str, Any] = field(default_factory=dict)


# Every test of the small run shares one real run of two strategies (about 15 s): slow.
@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallRun]:
    """`--strategy threads,pool-fromfd`, default output path (results/ under the cwd).

    Four pool workers, not sixteen: a stray hang makes the harness capture forensics of every
    process of the tree, which takes seconds per process."""
    cwd = tmp_path_factory.mktemp("small-run")
    result = run_harness("--strategy", "threads,pool-fromfd", *FAST, "--workers", "4", cwd=cwd)
    outputs = sorted((cwd / "results").glob("*.json"))
    assert result.returncode == 0, result.describe()
    assert len(outputs) == 1, (outputs, result.describe())
    yield SmallRun(cwd, result, outputs[0], load_json(outputs[0]))


@pytest.mark.slow
def test_small_run_measures_threads_and_finds_pool_fromfd_broken(small_run: SmallRun) -> None:
    records = by_strategy(small_run.data)
    assert set(records) == {"threads", "pool-fromfd"}
    threads, fromfd = records["threads"], records["pool-fromfd"]
    # Not one response from pool-fromfd: its run completed, but `completed` would read as "it worked".
    assert threads["status"] == "completed" and fromfd["status"] == "no-response"
    assert threads["requests"]["ok"] > 0
    assert threads["hang_rate"] == 0
    # The article's "fix": the fd number means nothing in the worker; not one response.
    assert fromfd["requests"]["ok"] == 0
    assert fromfd["requests"]["reset"] + fromfd["requests"]["closed"] > 0
    assert fromfd["start_method"] == "fork" and fromfd["broken"]
    assert threads["leaks"] == []
    # Under fork, a worker's fromfd that fails with ENOTSOCK has already dup()ed the fd: the
    # server's fd count may grow. Nothing else may leak.
    assert all("open fds grew" in leak for leak in fromfd["leaks"]), fromfd["leaks"]
    for record in records.values():
        assert record["stop"]["leftover_pids"] == [] and record["stop"]["fd_leak"] == 0
        assert record["stop"]["port_free"] is True


@pytest.mark.slow
def test_small_run_writes_the_default_path_and_latest_md_beside_it(small_run: SmallRun) -> None:
    assert small_run.output.parent == small_run.cwd / "results"
    assert small_run.output.name.endswith("-pool-fromfd-threads.json")
    assert small_run.data["label"] == small_run.output.stem
    assert small_run.data["partial"] is False
    latest = small_run.output.parent / "latest.md"
    text = latest.read_text(encoding="utf-8")
    assert text.startswith("# hangbench run %s" % small_run.data["created"])
    assert "--strategy threads,pool-fromfd" in text
    assert "| threads " in text and "| pool-fromfd " in text
    # Nothing else: no temporary files left by the atomic writes.
    assert sorted(p.name for p in small_run.output.parent.iterdir()) == sorted([small_run.output.name, "latest.md"])


@pytest.mark.slow
def test_small_run_prints_progress_on_stderr_and_the_table_on_stdout(small_run: SmallRun) -> None:
    err = small_run.result.stderr
    assert "hangbench: 2 case(s)" in err
    assert "[1/2] threads: starting server" in err
    # Named as the table names them: the start method only where start methods vary.
    assert "[2/2] pool-fromfd: starting server" in err
    assert "[1/2] threads: completed in" in err and "[2/2] pool-fromfd: no-response in" in err
    assert " measure " in err or " warmup " in err
    assert " ok/s " in err and " left" in err
    assert "Traceback" not in err
    out = small_run.result.stdout
    header = out.splitlines()[0].split()
    assert header[:4] == ["#", "strategy", "status", "ok/s"] and any(h.startswith("hang") for h in header)
    assert max(len(line) for line in out.splitlines()) <= 120
    assert "results: %s" % (Path("results") / small_run.output.name) in out
    assert "[1/2]" not in out  # progress never pollutes the table


@pytest.mark.slow
def test_small_run_record_has_the_documented_fields(small_run: SmallRun) -> None:
    from hdrh.histogram import HdrHistogram

    data = small_run.data
    assert data["schema_version"] == 2
    env = data["environment"]
    for key in ("python", "kernel", "cpu_model", "packages", "git_commit", "cpu_count", "os"):
        assert key in env, key
    assert env["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert env["packages"]["hangbench"]
    config = data["config"]
    assert config["cases"] == ["threads", "pool-fromfd/fork"]
    assert config["concurrency"] == 4 and config["duration_s"] == 1.0 and config["deadline_s"] == 2.0
    assert config["case_budget_s"] > 0
    for record in data["strategies"]:
        for key in (
            "strategy",
            "status",
            "requests",
            "throughput_rps",
            "hang_rate",
            "error_rate",
            "latency_us",
            "client_bound",
            "histogram",
            "elapsed_s",
            "stop",
            "leaks",
            "wall_s",
        ):
            assert key in record, key
        assert set(record["latency_us"]) == {"p50", "p90", "p99", "p999", "max"}
        assert set(record["requests"]) == {"ok", "hang", "refused", "reset", "closed", "malformed", "http_error"}
        histogram = HdrHistogram.decode(record["histogram"].encode("ascii"))
        assert histogram.get_total_count() == record["requests"]["ok"]
        assert record["wall_s"] <= config["case_budget_s"]
    threads = by_strategy(data)["threads"]
    assert threads["latency_us"]["p50"] <= threads["latency_us"]["p99"] <= threads["latency_us"]["max"]
    assert threads["throughput_rps"] == pytest.approx(threads["requests"]["ok"] / threads["elapsed_s"], rel=1e-6)


@pytest.mark.slow
def test_small_run_leaves_no_process(small_run: SmallRun) -> None:
    assert_nothing_left(small_run.result.token)


@pytest.mark.slow
def test_compare_two_real_runs(small_run: SmallRun, tmp_path: Path) -> None:
    out = tmp_path / "out"
    second = run_harness("--strategy", "threads", *FAST, "--output", str(out / "b.json"), "--quiet", cwd=tmp_path)
    assert second.returncode == 0, second.describe()
    assert second.stderr.strip() == ""  # --quiet: no progress lines
    # --output names the JSON; its table goes beside it as <stem>.md, and nothing else is written.
    assert sorted(p.name for p in out.iterdir()) == ["b.json", "b.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert "(table: %s)" % (out / "b.md") in second.stdout
    result = run_harness("compare", str(small_run.output), str(out / "b.json"), cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.describe()
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "->" in rows["threads"] and "%" in rows["threads"]  # throughput and p99 changes
    assert "only in baseline" in rows["pool-fromfd"]
    for header in ("ok/s", "p99 ms", "hangs"):
        assert header in result.stdout


# --------------------------------------------------------------------------- the article's hang


@pytest.mark.slow
def test_lingering_reference_hangs_a_client_that_reads_until_eof(tmp_path: Path) -> None:
    """One client thread reading until the server closes: the parent's reference to the
    accepted socket keeps the FIN back until the next accept, which never comes. (Two pool
    workers keep the forensics capture short; the parent's reference does not care.)"""
    base = (
        "--strategy",
        "pool-socket",
        "--engine",
        "threads",
        "--concurrency",
        "1",
        "--duration",
        "3",
        "--warmup",
        "0.5",
        "--workers",
        "2",
        "--quiet",
    )
    eof = run_harness(*base, "--read", "eof", "--output", str(tmp_path / "eof.json"), cwd=tmp_path)
    assert eof.returncode == 0, eof.describe()
    record = load_json(tmp_path / "eof.json")["strategies"][0]
    # Measured to the end; `no-response` if not one of its requests got a response.
    assert record["status"] == ("completed" if record["requests"]["ok"] else "no-response")
    assert record["hang_rate"] > 0 and record["requests"]["hang"] > 0
    # A hang is a finding, and a finding comes with evidence: where the server was.
    assert record["stuck"]
    assert record["forensics"] and record["forensics"]["processes"]
    # The evidence itself: the parent sits in accept() and still holds the connection whose
    # client gave up waiting for the FIN.
    holders = [
        process
        for process in record["forensics"]["processes"]
        if any("tcp" in (fd["detail"] or "") and "LISTEN" not in fd["detail"] for fd in process["fds"])
    ]
    assert holders, record["forensics"]["processes"]
    assert any("accept" in frame["function"] for thread in holders[0]["threads"] for frame in thread["frames"]), (
        holders[0]
    )
    assert record["leaks"] == []
    assert_nothing_left(eof.token)

    framed = run_harness(*base, "--read", "content-length", "--output", str(tmp_path / "cl.json"), cwd=tmp_path)
    assert framed.returncode == 0, framed.describe()
    record = load_json(tmp_path / "cl.json")["strategies"][0]
    assert record["status"] == "completed"
    assert record["hang_rate"] == 0 and record["requests"]["ok"] > 0
    assert record["forensics"] is None
    assert_nothing_left(framed.token)


# --------------------------------------------------------------------------- Ctrl-C


CTRL_C_ARGS = ("--strategy", "threads,gevent", "--duration", "20", "--warmup", "0.3", "--concurrency", "4")
FIRST_LINE_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 15.0


def is_measure_line(line: str) -> bool:
    return " measure " in line


@pytest.mark.slow
def test_ctrl_c_saves_partial_results_and_stops_the_server(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    run = Running([*CTRL_C_ARGS, "--output", str(output)], tmp_path)
    try:
        run.wait_for_line(is_measure_line, FIRST_LINE_TIMEOUT_S)
        run.interrupt()
        code = run.wait(EXIT_TIMEOUT_S)
    finally:
        run.close()
    assert code == 130, run.stderr
    assert "Traceback" not in run.stderr
    assert "interrupted" in run.stderr
    data = load_json(output)
    assert data["partial"] is True
    assert [r["strategy"] for r in data["strategies"]] == ["threads"]  # gevent never started
    threads = data["strategies"][0]
    assert threads["status"] == "interrupted" and threads["partial"] is True
    assert threads["requests"]["ok"] > 0
    assert threads["leaks"] == []
    assert "(partial)" in (tmp_path / "out.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.md"]
    assert_nothing_left(run.token)


@pytest.mark.slow
def test_two_ctrl_c_leave_at_once_and_leave_nothing_running(tmp_path: Path) -> None:
    run = Running([*CTRL_C_ARGS, "--output", str(tmp_path / "out.json")], tmp_path)
    try:
        run.wait_for_line(is_measure_line, FIRST_LINE_TIMEOUT_S)
        run.interrupt()
        time.sleep(0.05)
        run.interrupt()
        code = run.wait(EXIT_TIMEOUT_S)
    finally:
        run.close()
    assert code != 0, run.stderr
    assert "Traceback (most recent call last)" not in run.stderr
    assert_nothing_left(run.token)


@pytest.mark.slow
def test_sigterm_is_a_ctrl_c_not_an_abandoned_server(tmp_path: Path) -> None:
    """`timeout`, a cancelled CI job or `kill` send SIGTERM: the harness still stops the server
    tree and saves what it measured, and says so with the shell's status for SIGTERM."""
    output = tmp_path / "out.json"
    run = Running([*CTRL_C_ARGS, "--output", str(output)], tmp_path)
    try:
        run.wait_for_line(is_measure_line, FIRST_LINE_TIMEOUT_S)
        run.interrupt(signal.SIGTERM)
        code = run.wait(EXIT_TIMEOUT_S)
    finally:
        run.close()
    assert code == 128 + signal.SIGTERM, run.stderr
    assert "interrupted by SIGTERM" in run.stderr
    data = load_json(output)
    assert data["partial"] is True and data["strategies"][0]["status"] == "interrupted"
    assert_nothing_left(run.token)
