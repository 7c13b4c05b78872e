"""harness.supervise.forensics and harness.server.faulthandler_hook: capture where a process is stuck, say it
in one phrase.

Live tests block a small script in `socket.recv` (the commonest hang in this project) and check
that both capture paths -- py-spy and the SIGUSR2/faulthandler fallback -- name it. The summary
logic is also tested on hand-built records, without processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest
from misbehaving._launch import REPO, argv_for, wait_for

from harness.server import faulthandler_hook
from harness.supervise.forensics import (
    ForensicsError,
    Frame,
    ProcessDump,
    TaskInfo,
    ThreadDump,
    capture,
    find_py_spy,
    parse_faulthandler,
    summarize_processes,
)
from harness.supervise.supervisor import NOT_READY, ServerProcess, StartupFailure

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

needs_py_spy = pytest.mark.skipif(find_py_spy() is None, reason="py-spy not installed")

BLOCKED_IN_RECV = textwrap.dedent(
    """
    import os, signal, socket, sys, time
    sys.path.insert(0, {repo!r})
    from harness.server import faulthandler_hook
    faulthandler_hook.install_from_env()
    a, b = socket.socketpair()
    signal.alarm(60)  # bounded, whatever happens to the test (no socket timeout: a plain recv)

    def wait_for_request(sock):
        return sock.recv(10)  # LINE_OF_RECV

    print("blocking", flush=True)
    try:
        wait_for_request(b)
    except OSError:
        pass
    """
)


def recv_line(script: str) -> int:
    return next(i for i, line in enumerate(script.splitlines(), 1) if "LINE_OF_RECV" in line)


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A process blocked in socket.recv, with the faulthandler hook armed."""
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKED_IN_RECV.format(repo=str(REPO)))
    env = dict(os.environ, HANGBENCH_FORENSICS_DIR=str(tmp_path / "stacks"))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None  # stdout=PIPE
    try:
        assert proc.stdout.readline() == b"blocking\n"
        assert wait_for(lambda: _state(proc.pid) == "S", 10)
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def _state(pid: int) -> Optional[str]:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# --------------------------------------------------------------------------- live capture


@pytest.mark.slow
@needs_py_spy
def test_py_spy_capture_names_recv(blocked: subprocess.Popen, tmp_path: Path) -> None:
    line = recv_line(BLOCKED_IN_RECV)
    result = capture([blocked.pid], tmp_path / "out", timeout_s=30)
    dump = result.processes[0]
    assert dump.stack_source.startswith("py-spy")
    assert result.summary.startswith("1/1 threads in recv (blocked.py:%d)" % line), result.summary
    assert any(f.function.endswith("wait_for_request") for f in dump.threads[0].frames)
    assert dump.state == "S"
    assert any(fd.target.startswith("socket:[") and fd.detail == "unix (unnamed)" for fd in dump.fds)
    # Full record as JSON on disk.
    assert result.path is not None
    saved = json.loads(Path(result.path).read_text())
    assert saved["summary"] == result.summary
    assert saved["processes"][0]["pid"] == blocked.pid


@pytest.mark.slow
def test_faulthandler_fallback_names_the_frame_and_the_call(blocked: subprocess.Popen) -> None:
    result = capture([blocked.pid], None, timeout_s=20, method="faulthandler")
    dump = result.processes[0]
    assert dump.stack_source == "faulthandler", dump.errors
    frames = dump.threads[0].frames
    assert frames[0].function == "wait_for_request" and frames[0].line == recv_line(BLOCKED_IN_RECV)
    # Python frames only, but a single-threaded process maps to its one task's system call.
    assert "recv" in result.summary and "blocked.py" in result.summary, result.summary


@pytest.mark.slow
def test_missing_py_spy_falls_back_to_faulthandler(blocked: subprocess.Popen, tmp_path: Path) -> None:
    result = capture([blocked.pid], None, timeout_s=20, py_spy=str(tmp_path / "no-py-spy"))
    dump = result.processes[0]
    assert dump.stack_source == "faulthandler"
    assert any("cannot run py-spy" in e for e in dump.errors)
    # The fallback runs code inside the server: the record says it was used, and where.
    assert result.fallback_pids == (blocked.pid,)
    assert result.stack_method.startswith("py-spy, faulthandler fallback")


@pytest.mark.slow
def test_forensics_that_cannot_be_written_are_still_returned(blocked: subprocess.Popen, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = capture([blocked.pid], not_a_folder, timeout_s=20, method="faulthandler")
    assert result.path is None and result.write_error and "cannot write the forensics" in result.write_error
    assert result.processes[0].threads, "the capture itself is kept"
    assert result.stack_method == "faulthandler (asked for)" and result.fallback_pids == (blocked.pid,)


@pytest.mark.slow
def test_sigusr2_is_never_sent_to_a_process_without_the_hook() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert wait_for(lambda: _state(proc.pid) == "S", 10)
        result = capture([proc.pid], None, timeout_s=10, method="faulthandler", faulthandler_dir="/tmp")
        assert any("does not handle SIGUSR2" in e for e in result.processes[0].errors)
        assert result.processes[0].threads == ()
        time.sleep(0.2)
        assert proc.poll() is None, "SIGUSR2's default action would have killed it"
        assert "no Python stacks" in result.summary and "sleeping" in result.summary
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_tcp_sockets_are_described() -> None:
    script = (
        "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1); "
        "print(s.getsockname()[1], flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None  # stdout=PIPE
    try:
        port = int(proc.stdout.readline())
        result = capture([proc.pid], None, timeout_s=10, method="faulthandler")
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    details = [fd.detail for fd in result.processes[0].fds if fd.detail]
    assert "tcp 127.0.0.1:%d <- 0.0.0.0:0 LISTEN" % port in details


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ForensicsError):
        capture([1], None, method="gdb")
    with pytest.raises(ForensicsError):
        capture([1], None, timeout_s=0)


@pytest.mark.slow
def test_capture_of_a_gone_process_records_and_goes_on() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    result = capture([proc.pid], None, timeout_s=10)
    assert result.processes[0].threads == () and result.processes[0].errors


# --------------------------------------------------------------------------- through the supervisor


@pytest.mark.slow
@needs_py_spy
def test_server_stuck_in_recv_is_diagnosed() -> None:
    with ServerProcess() as server:
        server.start(argv_for("stuck_in_recv"), ready_timeout_s=20, cwd=REPO)
        assert server.port is not None
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wait_for(lambda: "recv" in server.capture_forensics(10).summary, 10)
        assert server.forensics is not None
        assert "in recv (stuck_in_recv.py:" in server.forensics.summary
        server.stop(5)


@pytest.mark.slow
@needs_py_spy
def test_not_ready_failure_says_where_it_is_stuck() -> None:
    with ServerProcess() as server, pytest.raises(StartupFailure) as caught:
        server.start(argv_for("stuck_in_recv"), ready_timeout_s=4, probe="http", cwd=REPO)
    assert caught.value.status == NOT_READY
    assert caught.value.stuck is not None and "recv" in caught.value.stuck


@pytest.mark.slow
@needs_py_spy
def test_leaked_fds_are_visible(tmp_path: Path) -> None:
    with ServerProcess() as server:
        server.start(argv_for("leaks_fds"), ready_timeout_s=20, cwd=REPO)
        before = len(server.capture_forensics(10).processes[0].fds)
        for _ in range(5):
            server.wait_answering(5, probe="http")
        after = len(server.capture_forensics(10).processes[0].fds)
        server.stop(5)
    assert after - before >= 5


# --------------------------------------------------------------------------- the hook


def test_hook_does_nothing_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANGBENCH_FORENSICS_DIR", raising=False)
    assert faulthandler_hook.install_from_env() is None


@pytest.mark.slow
def test_hook_reinstalls_for_a_forked_worker(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        sys.path.insert(0, {repo!r})
        from harness.server import faulthandler_hook
        first = faulthandler_hook.install_from_env()
        assert faulthandler_hook.install_from_env() == first  # idempotent
        child = os.fork()
        if child == 0:
            path = faulthandler_hook.install_from_env()
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.2)
            os._exit(0 if path.endswith("%d.txt" % os.getpid()) else 1)
        _, status = os.waitpid(child, 0)
        print(child, os.waitstatus_to_exitcode(status))
        """
    ).format(repo=str(REPO))
    env = dict(os.environ, HANGBENCH_FORENSICS_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=30, check=True)
    child, code = map(int, out.stdout.split())
    assert code == 0
    dump = (tmp_path / ("%d.txt" % child)).read_text()
    assert "most recent call first" in dump
    parent_files = [p for p in tmp_path.iterdir() if p.name != "%d.txt" % child]
    assert all(p.read_text() == "" for p in parent_files), "the child wrote into its parent's file"


# --------------------------------------------------------------------------- parsing and summary

FAULTHANDLER_TEXT = """\
Thread 0x00007f0d4bfff6c0 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 327 in wait
  File "/usr/lib/python3.11/concurrent/futures/thread.py", line 81 in _worker

Current thread 0x00007f0d4d0f3740 (most recent call first):
  File "/srv/harness/connection.py", line 88 in handle
  File "/srv/strategies/threads.py", line 40 in serve
"""


def test_parse_faulthandler_dump() -> None:
    threads = parse_faulthandler(FAULTHANDLER_TEXT)
    assert [t.name for t in threads] == ["0x00007f0d4bfff6c0", "0x00007f0d4d0f3740"]
    assert threads[1].frames[0] == Frame("handle", "/srv/harness/connection.py", 88)
    assert len(threads[0].frames) == 2


STDLIB = "/usr/lib/python3.11/"


def _pool_worker(pid: int) -> ProcessDump:
    frames = (
        Frame("recv_bytes", STDLIB + "multiprocessing/connection.py", 216),
        Frame("get", STDLIB + "multiprocessing/queues.py", 103),
        Frame("worker", STDLIB + "multiprocessing/pool.py", 114),
        Frame("serve", "/srv/strategies/pool_socket.py", 43),
    )
    return ProcessDump(
        pid,
        "python",
        "S",
        "pipe_read",
        "py-spy",
        (ThreadDump(pid, None, frames),),
        (TaskInfo(pid, "python", "S", "pipe_read", "read"),),
        (),
    )


def _stuck_worker(pid: int) -> ProcessDump:
    frames = (
        Frame("recv", "libc.so.6", 0, native=True),
        Frame("sock_recv", "socketmodule.c", 3567, native=True),
        Frame("handle", "/srv/harness/connection.py", 88),
        Frame("worker", STDLIB + "multiprocessing/pool.py", 125),
        Frame("serve", "/srv/strategies/pool_socket.py", 43),
    )
    return ProcessDump(
        pid,
        "python",
        "S",
        "sk_wait_data",
        "py-spy --native",
        (ThreadDump(pid, None, frames),),
        (TaskInfo(pid, "python", "S", "sk_wait_data", "recvfrom"),),
        (),
    )


def test_summary_names_the_common_blocking_point_and_ignores_idle_workers() -> None:
    dumps = [_stuck_worker(pid) for pid in range(100, 112)] + [_pool_worker(pid) for pid in range(200, 204)]
    assert summarize_processes(dumps) == "12/16 threads in recv (connection.py:88) across 12 processes; 4 idle"


def test_summary_when_everything_is_idle() -> None:
    summary = summarize_processes([_pool_worker(1), _pool_worker(2)])
    assert summary.startswith("idle: 2/2 threads waiting for work")


def test_summary_of_a_spinning_thread() -> None:
    dump = ProcessDump(
        7,
        "python",
        "R",
        None,
        "py-spy",
        (ThreadDump(7, "spinner", (Frame("spin", "/srv/spins.py", 30),), True),),
        (TaskInfo(7, "python", "R", None, "running"),),
        (),
    )
    assert summarize_processes([dump]) == "1/1 threads running (spins.py:30)"


def test_summary_without_any_stack() -> None:
    dump = ProcessDump(7, "sleep", "S", "hrtimer_nanosleep", "none", (), (), ())
    assert summarize_processes([dump]) == "no Python stacks; 1 process: 1 sleeping in hrtimer_nanosleep"
    assert summarize_processes([]) == "no processes captured"
