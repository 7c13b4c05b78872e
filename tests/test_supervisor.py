"""ServerProcess: readiness, each StartupFailure status, stop reports, resource samples.

Servers here are the misbehaving plugins (tests/misbehaving/) run under the server stub and,
when it exists, under the real `harness.server`; plus a tiny raw fake server (written to a temp
file) for what a plugin cannot do: misbehave *before* the ready line. Every test asserts
behaviour; waits are bounded polls, never timing assertions.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import textwrap
from pathlib import Path
from typing import List

import psutil
import pytest
from misbehaving._launch import (
    LAUNCHERS,
    REPO,
    argv_for,
    snapshot,
    still_there,
    wait_for,
)

from harness.supervise.supervisor import (
    CRASHED,
    FAILED_TO_START,
    NOT_READY,
    ServerProcess,
    StartupFailure,
    StopReport,
    SupervisorError,
    port_is_free,
)

pytestmark = pytest.mark.timeout(120)

FAKE_SERVER = textwrap.dedent(
    r'''
    """Raw fake server: misbehaves before or around its ready line, as a plugin cannot."""
    import json, os, socket, sys, time
    mode = sys.argv[1]
    deadline = time.monotonic() + 60  # bounded, whatever happens to the test
    if mode == "silent":
        while time.monotonic() < deadline:
            time.sleep(0.2)
        sys.exit(0)
    if mode == "partial":
        sys.stdout.write('{"event": "lis')
        sys.stdout.flush()
        while time.monotonic() < deadline:
            time.sleep(0.2)
        sys.exit(0)
    if mode == "chatty":
        for i in range(20000):  # ~400 KB: more than a pipe holds
            sys.stderr.write("chatter line %d\n" % i)
        sys.stderr.write("last words\n")
        sys.stderr.flush()
    if mode == "noise":
        print("hello from a print() left in a plugin")
        print("{not json")
        print(json.dumps({"event": "something-else"}))
        sys.stdout.flush()
    if mode == "fork-cpu":
        child = os.fork()
        if child == 0:
            start = time.process_time()
            while time.process_time() - start < 0.6 and time.monotonic() < deadline:
                pass
            os._exit(0)
        sys.stderr.write("child %d\n" % child)
        sys.stderr.flush()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    ready = {"event": "listening", "host": "127.0.0.1", "port": s.getsockname()[1], "pid": os.getpid()}
    print(json.dumps(ready), flush=True)
    if mode == "stdout-flood":
        for i in range(20000):
            print("stdout line %d" % i)
        sys.stdout.flush()
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        if mode == "fork-cpu":
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        with c:
            c.settimeout(2)
            try:
                c.recv(65536)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except OSError:
                pass
    '''
)


@pytest.fixture
def fake(tmp_path: Path):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    return lambda mode: [sys.executable, str(script), mode]


def assert_clean(report: StopReport, tree: List[psutil.Process]) -> None:
    assert report.leftover_pids == ()
    assert report.fd_leak == 0, "the harness leaked %d fd(s)" % report.fd_leak
    assert report.port_free in (True, None)
    assert report.leaks() == []
    assert still_there(tree) == [], "processes left behind"
    my_children = {c.pid for c in psutil.Process().children()}
    assert not my_children & set(report.tree_pids), "a tree member was left as a zombie child of the harness"


# --------------------------------------------------------------------------- ready


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_ready_line_then_answers_then_clean_stop(launcher: str, tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "logs") as server:
        ready = server.start(argv_for("baseline", launcher), ready_timeout_s=30, cwd=REPO)
        assert ready.port > 0 and ready["port"] == ready.port
        assert ready.pid == server.pid
        assert ready.strategy == "mis-baseline"
        http = server.wait_answering(10, probe="http")
        assert http.outcome == "answered" and http.is_http and http.first_line.startswith("HTTP/1.1 200")
        assert server.wait_answering(10).outcome == "answered"  # "accept" is satisfied by an answer
        assert server.wait_answering(10, probe="tcp").outcome == "connected"
        tree = snapshot(server.pids())
        assert not port_is_free("127.0.0.1", ready.port)
        report = server.stop(grace_s=10)
    assert report.exit_code == 0
    assert not report.ignored_sigterm
    assert report.killed_pids == ()
    assert report.port_free is True
    assert_clean(report, tree)


@pytest.mark.slow
def test_ready_line_found_among_other_stdout_lines(fake, tmp_path: Path) -> None:
    with ServerProcess(tmp_path) as server:
        server.start(fake("noise"), ready_timeout_s=20)
        server.stop(5)
    assert "hello from a print()" in (tmp_path / "stdout.log").read_text()


@pytest.mark.slow
def test_chatty_stderr_never_blocks_and_tail_is_kept(fake, tmp_path: Path) -> None:
    with ServerProcess(tmp_path) as server:
        server.start(fake("chatty"), ready_timeout_s=20)
        assert server.stderr_tail(2).splitlines() == ["chatter line 19999", "last words"]
        report = server.stop(5)
    assert server.stderr_tail(1) == "last words"  # still available after stop
    assert report.fd_leak == 0


@pytest.mark.slow
def test_stdout_after_ready_is_drained(fake, tmp_path: Path) -> None:
    with ServerProcess(tmp_path) as server:
        server.start(fake("stdout-flood"), ready_timeout_s=20)
        assert wait_for(lambda: "stdout line 19999" in (tmp_path / "stdout.log").read_text(), 20)
        server.wait_answering(10)  # not blocked on a full stdout pipe
        assert server.stop(5).fd_leak == 0


@pytest.mark.slow
def test_own_temporary_log_dir_is_removed(fake) -> None:
    with ServerProcess() as server:
        server.start(fake("plain"), ready_timeout_s=20)
        log_dir = server.log_dir
        assert log_dir.is_dir()
    assert not log_dir.exists()


# --------------------------------------------------------------------------- startup failures


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_import_error_is_failed_to_start(launcher: str) -> None:
    with ServerProcess() as server, pytest.raises(StartupFailure) as caught:
        server.start(argv_for("import_error", launcher), ready_timeout_s=30, cwd=REPO)
    failure = caught.value
    assert failure.status == FAILED_TO_START
    assert failure.exit_code not in (None, 0)
    assert "hangbench_module_that_does_not_exist" in failure.stderr_tail
    assert failure.stop_report is not None and failure.stop_report.leftover_pids == ()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_raise_in_serve_is_crashed(launcher: str) -> None:
    with ServerProcess() as server, pytest.raises(StartupFailure) as caught:
        server.start(argv_for("raises_in_serve", launcher), ready_timeout_s=30, cwd=REPO)
    assert caught.value.status == CRASHED
    assert caught.value.exit_code == 1
    assert "raised on purpose" in caught.value.stderr_tail


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_exit_at_once_is_crashed(launcher: str) -> None:
    with ServerProcess() as server, pytest.raises(StartupFailure) as caught:
        server.start(argv_for("exits_at_once", launcher), ready_timeout_s=30, cwd=REPO)
    assert caught.value.status == CRASHED
    assert caught.value.exit_code == 0


@pytest.mark.slow
def test_no_ready_line_is_not_ready_and_killed(fake) -> None:
    with ServerProcess() as server:
        with pytest.raises(StartupFailure) as caught:
            server.start(fake("silent"), ready_timeout_s=1.5)
        pid = server.pid
    assert caught.value.status == NOT_READY
    assert "no ready line" in caught.value.message
    assert caught.value.stop_report is not None
    assert caught.value.stop_report.exit_code == -15  # it had to be stopped: it was alive
    assert not psutil.pid_exists(pid) or psutil.Process(pid).ppid() != os.getpid()


@pytest.mark.slow
def test_half_a_ready_line_does_not_block(fake) -> None:
    with ServerProcess() as server, pytest.raises(StartupFailure) as caught:
        server.start(fake("partial"), ready_timeout_s=1.5)
    assert caught.value.status == NOT_READY


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_closed_listener_is_not_ready(launcher: str) -> None:
    with ServerProcess() as server, pytest.raises(StartupFailure) as caught:
        server.start(argv_for("never_binds", launcher), ready_timeout_s=5, cwd=REPO)
    assert caught.value.status == NOT_READY
    assert "refused" in caught.value.message.lower()
    assert caught.value.stop_report is not None
    assert caught.value.stop_report.port_free is True


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_listener_that_never_answers(launcher: str) -> None:
    with ServerProcess() as server, pytest.raises(StartupFailure) as caught:
        server.start(argv_for("never_answers", launcher), ready_timeout_s=5, cwd=REPO)
    assert caught.value.status == NOT_READY
    assert "did not accept" in caught.value.message
    assert caught.value.stuck is not None  # forensics of the live server were captured
    # A bare TCP probe is satisfied by the kernel's backlog.
    with ServerProcess() as server:
        server.start(argv_for("never_answers", "stub"), ready_timeout_s=5, probe="tcp", cwd=REPO)
        assert server.stop(5).leaks() == []


@pytest.mark.slow
def test_closing_every_connection_is_ready_by_accept_but_not_by_http() -> None:
    with ServerProcess() as server:
        server.start(argv_for("closes_at_once"), ready_timeout_s=10, cwd=REPO)
        assert server.wait_answering(5).outcome == "closed"
        server.stop(5)
    with ServerProcess() as server, pytest.raises(StartupFailure) as caught:
        server.start(argv_for("closes_at_once"), ready_timeout_s=3, probe="http", cwd=REPO)
    assert caught.value.status == NOT_READY
    assert re.search(r"closed the connection|reset", caught.value.message)


@pytest.mark.slow
def test_accepting_but_never_answering_is_ready_so_its_hangs_get_measured() -> None:
    with ServerProcess() as server:
        server.start(argv_for("stuck_in_recv"), ready_timeout_s=10, cwd=REPO)
        assert server.wait_answering(5).outcome == "accepted"
        server.stop(5)


@pytest.mark.slow
@pytest.mark.skipif("server" not in LAUNCHERS, reason="needs harness.server")
def test_the_articles_broken_fix_is_ready_not_not_ready() -> None:
    """pool-fromfd accepts and then never answers (docs/why-it-hangs.md): a finding to measure."""
    argv = [
        sys.executable,
        "-m",
        "harness.server",
        "--strategy",
        "pool-fromfd",
        "--port",
        "0",
        "--workers",
        "2",
        "--log-level",
        "WARNING",
    ]
    with ServerProcess() as server:
        server.start(argv, ready_timeout_s=30, cwd=REPO)
        assert server.wait_answering(10).outcome in ("accepted", "closed")
        report = server.stop(10)
    assert report.leaks() == []


@pytest.mark.slow
def test_garbage_answer_counts_as_answering_but_not_http() -> None:
    with ServerProcess() as server:
        server.start(argv_for("answers_garbage"), ready_timeout_s=10, probe=None, cwd=REPO)
        check = server.wait_answering(10, probe="http")
        assert check.outcome == "answered" and check.is_http is False and "NOT HTTP" in check.first_line
        server.stop(5)


@pytest.mark.slow
def test_missing_executable_is_failed_to_start(tmp_path: Path) -> None:
    with ServerProcess() as server:
        with pytest.raises(StartupFailure) as caught:
            server.start([str(tmp_path / "no-such-python")], ready_timeout_s=2)
        assert server.stop(1).exit_code is None  # stop() after a failed start is harmless
    assert caught.value.status == FAILED_TO_START


# --------------------------------------------------------------------------- stop


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_sigterm_ignoring_tree_is_killed(launcher: str) -> None:
    with ServerProcess() as server:
        server.start(argv_for("ignores_sigterm", launcher), ready_timeout_s=30, cwd=REPO)
        assert wait_for(lambda: len(server.pids()) >= 2, 10), "the plugin forks a worker"
        tree = snapshot(server.pids())
        report = server.stop(grace_s=1.0)
    assert report.ignored_sigterm
    assert report.exit_code == -9
    assert {p.pid for p in tree} <= set(report.killed_pids)
    assert_clean(report, tree)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_setsid_grandchild_is_found_and_killed(launcher: str) -> None:
    with ServerProcess() as server:
        server.start(argv_for("setsid_grandchild", launcher), ready_timeout_s=30, cwd=REPO)
        assert wait_for(lambda: "grandchild pid" in server.stderr_tail(50), 10)
        said = re.search(r"grandchild pid (\d+)", server.stderr_tail(50))
        assert said is not None
        grandchild = int(said.group(1))
        assert os.getsid(grandchild) not in (server.pid, os.getsid(0)), "it left the server's session"
        assert psutil.Process(grandchild).ppid() == os.getpid(), "reparented to the harness (subreaper)"
        assert grandchild in server.pids()
        tree = snapshot(server.pids())
        report = server.stop(grace_s=5)
    assert grandchild in report.tree_pids
    assert_clean(report, tree)


@pytest.mark.slow
def test_stop_is_idempotent_and_context_manager_stops(fake) -> None:
    with ServerProcess() as server:
        server.start(fake("plain"), ready_timeout_s=20)
        tree = snapshot(server.pids())
    first = server.stop_report
    assert first is not None and server.stop() is first
    assert_clean(first, tree)
    with pytest.raises(SupervisorError):
        server.start(fake("plain"))


@pytest.mark.slow
def test_stop_report_serialises(fake) -> None:
    with ServerProcess() as server:
        server.start(fake("plain"), ready_timeout_s=20)
        report = server.stop(5)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["exit_code"] == report.exit_code and data["leftover_pids"] == []


@pytest.mark.slow
def test_fd_count_stable_over_repeated_runs(fake) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with ServerProcess() as server:
            server.start(fake("plain"), ready_timeout_s=20)
            server.sample()
            assert server.stop(5).fd_leak == 0
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.slow
def test_a_connection_to_the_server_left_open_is_an_fd_leak(fake) -> None:
    with ServerProcess() as server:
        server.start(fake("plain"), ready_timeout_s=20)
        assert server.port is not None
        forgotten = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            report = server.stop(5)
        finally:
            forgotten.close()
    assert report.fd_leak == 1 and report.leaked_fds[0].startswith("socket:[")
    assert "still holds 1 fd" in report.leaks()[0]


def test_port_is_free_detects_a_listener() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
    assert port_is_free("127.0.0.1", port)


# --------------------------------------------------------------------------- sampling


@pytest.mark.slow
def test_sample_counts_cpu_of_a_spinning_server() -> None:
    with ServerProcess(sample_interval_s=0.2) as server:
        server.start(argv_for("spins_cpu"), ready_timeout_s=30, cwd=REPO)
        assert wait_for(lambda: server.sample().cpu_s >= 0.3, 20)
        sample = server.sample()
        assert sample.rss_bytes > 1 << 20 and sample.peak_rss_bytes >= sample.rss_bytes
        assert sample.n_processes == 1
        assert sample.mem_kind in ("pss", "uss", "rss") and 0 < sample.mem_bytes <= sample.rss_bytes
        report = server.stop(5)
    assert report.cpu_s >= 0.3 and report.peak_rss_bytes > 0
    assert report.mem_kind == sample.mem_kind and 0 < report.peak_mem_bytes <= report.peak_rss_bytes
    assert report.sample_interval_s >= 0.2  # the largest gap between samples, at least the interval


@pytest.mark.slow
def test_cpu_of_exited_children_is_kept(fake) -> None:
    with ServerProcess(sample_interval_s=0.1) as server:
        server.start(fake("fork-cpu"), ready_timeout_s=20)
        assert wait_for(lambda: "child" in server.stderr_tail(5), 10)
        said = re.search(r"child (\d+)", server.stderr_tail(5))
        assert said is not None
        child = int(said.group(1))
        assert wait_for(lambda: not psutil.pid_exists(child), 30), "the child burns 0.6 s of CPU, then is reaped"
        own = psutil.Process(server.pid).cpu_times()
        assert server.sample().cpu_s >= own.user + own.system + 0.4
        server.stop(5)
