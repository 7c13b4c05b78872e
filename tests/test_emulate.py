"""Tests for `harness.server.emulate`: macOS's AF_UNIX refusal semantics, emulated on Linux.

Three layers:

1. Socket level, in this process: a listener with backlog 1 that never accepts, and several
   concurrent connects. Linux queues 2 and makes the rest wait (bounded here by SO_SNDTIMEO);
   with the emulation 1 queues and the rest are refused at once, as on macOS.
2. Propagation: fresh interpreters started with `child_env()` install the same patches through
   `_emulate_site/sitecustomize.py`, and still run a sitecustomize it shadows.
3. The gh-101225 scenario at the multiprocessing level (`python harness/server/emulate_lab.py reproduce`),
   in a subprocess per case (a forkserver and the patches must not leak into this process),
   under this interpreter and, when installed, pyenv's 3.12.1 (bug) and 3.13.0 (fixed).

Every socket has a timeout, every thread join and subprocess a deadline. Linux only.
"""

from __future__ import annotations

import _socket
import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not add the repo root
    sys.path.insert(0, str(ROOT))

from harness.server import emulate, emulate_lab  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux semantics")

EMULATE_LAB_PY = ROOT / "harness" / "server" / "emulate_lab.py"  # run by file path, as the docs do
SNDTIMEO = 0.5  # how long a queued (blocking) connect may wait in the socket-level tests
START_METHODS = ("fork", "spawn", "forkserver")


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def emulated() -> Iterator[None]:
    """The emulation installed in this process for one test, then removed."""
    saved = {k: os.environ.get(k) for k in (emulate.ENV_VAR, "PYTHONPATH")}
    emulate.apply([emulate.MACOS_UNIX_REFUSAL])
    try:
        yield
    finally:
        emulate.restore()
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


@pytest.fixture
def unix_listener() -> Iterator[str]:
    """Path of an AF_UNIX listener with backlog 1 that never accepts."""
    with tempfile.TemporaryDirectory(prefix="hangbench-test-") as tmp:
        path = os.path.join(tmp, "listener")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen(1)
            yield path


def _set_sndtimeo(sock: socket.socket, seconds: float) -> None:
    """Bound a blocking AF_UNIX connect: Linux waits at most SO_SNDTIMEO, then says EAGAIN."""
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def _connect_outcome(path: str, barrier: threading.Barrier, keep: List[socket.socket]) -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    keep.append(sock)
    _set_sndtimeo(sock, SNDTIMEO)
    barrier.wait(5.0)
    started = time.monotonic()
    try:
        sock.connect(path)
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except BlockingIOError:
        waited = time.monotonic() - started
        return "waited" if waited >= SNDTIMEO * 0.8 else f"EAGAIN after {waited:.3f}s"


def concurrent_connects(path: str, n: int) -> Dict[str, int]:
    """Start `n` blocking connects at once; count their outcomes."""
    barrier = threading.Barrier(n)
    keep: List[socket.socket] = []
    outcomes: List[str] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(_connect_outcome(path, barrier, keep))) for _ in range(n)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10.0)
        assert not any(t.is_alive() for t in threads), "a connect outlived its SO_SNDTIMEO"
    finally:
        for sock in keep:
            sock.close()
    return {k: outcomes.count(k) for k in set(outcomes)}


def interpreter(version: str) -> Optional[str]:
    """Path of pyenv's Python `version`, or None if it is not installed."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
        root = out.stdout.strip() or root
    path = os.path.join(root, "versions", version, "bin", "python")
    return path if os.access(path, os.X_OK) else None


def reproduce(python: str, method: str, *flags: str, tasks: int = 24) -> Dict[str, Any]:
    """Run `python harness/server/emulate_lab.py reproduce` and return its JSON summary."""
    cmd = [python, str(EMULATE_LAB_PY), "reproduce", "--method", method, "--tasks", str(tasks)]
    cmd += ["--concurrency", "8", "--grace", "1.5", *flags]
    env = {k: v for k, v in os.environ.items() if k not in (emulate.ENV_VAR, emulate.LOG_ENV_VAR)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def reproduce_until_loss(python: str, method: str, attempts: int = 3) -> Dict[str, Any]:
    """Loss depends on timing: try up to `attempts` runs, return the first that lost a task."""
    summary: Dict[str, Any] = {}
    for _ in range(attempts):
        summary = reproduce(python, method)
        if summary["lost"]:
            break
    return summary


def run_python(python: str, code: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd="/")


# --- names and API ---------------------------------------------------------------------------


def test_unknown_name_is_a_value_error_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown emulation 'windows'.*macos-unix-refusal"):
        emulate.apply(["windows"])
    with pytest.raises(ValueError, match="macos-unix-refusal"):
        emulate.child_env(["macos-unix-refusal", "bogus"])
    assert emulate.active() == []


def test_apply_nothing_changes_nothing() -> None:
    before = dict(os.environ)
    emulate.apply([])
    assert dict(os.environ) == before and emulate.active() == []


def test_child_env_names_the_emulation_and_puts_the_hook_first() -> None:
    env = emulate.child_env([emulate.MACOS_UNIX_REFUSAL], {"PYTHONPATH": "/a", "X": "1"})
    assert env["X"] == "1"
    assert env[emulate.ENV_VAR] == "macos-unix-refusal"
    assert env["PYTHONPATH"].split(os.pathsep) == [emulate.SITE_DIR, "/a"]
    assert (Path(emulate.SITE_DIR) / "sitecustomize.py").is_file()


def test_apply_is_idempotent_and_restore_undoes_it(emulated: None) -> None:
    emulate.apply([emulate.MACOS_UNIX_REFUSAL])
    assert emulate.active() == [emulate.MACOS_UNIX_REFUSAL]
    assert os.environ["PYTHONPATH"].split(os.pathsep).count(emulate.SITE_DIR) == 1
    emulate.restore()
    assert emulate.active() == []
    assert socket.socket.connect is _socket.socket.connect
    assert emulate.ENV_VAR not in os.environ


def test_macos_queue_limits() -> None:
    # XNU: backlog <= 0 or > somaxconn (128) means 128; `so_qlen >= so_qlimit` is refused.
    limits = [emulate.macos_queue_limit(b) for b in (-1, 0, 1, 2, 128, 129)]
    assert limits == [128, 128, 1, 2, 128, 128]
    assert emulate.linux_backlog_for_macos(1) == 0  # Linux queues backlog + 1


# --- socket level ----------------------------------------------------------------------------


def test_linux_queues_backlog_plus_one_then_makes_connects_wait(unix_listener: str) -> None:
    assert concurrent_connects(unix_listener, 4) == {"connected": 2, "waited": 2}


def test_emulation_queues_backlog_then_refuses_at_once(emulated: None, unix_listener: str) -> None:
    # The listener was created after apply(): listen(1) queues 1, as on macOS.
    assert concurrent_connects(unix_listener, 4) == {"connected": 1, "refused": 3}


@pytest.mark.parametrize("backlog, linux", [(1, 2), (2, 3), (5, 6), (0, 1)])
def test_probe_counts(backlog: int, linux: int) -> None:
    assert emulate_lab.probe_queue_limit(backlog) == (linux, "EAGAIN")


@pytest.mark.parametrize("backlog, macos", [(1, 1), (2, 2), (5, 5), (0, 128)])
def test_probe_counts_emulated(emulated: None, backlog: int, macos: int) -> None:
    assert emulate_lab.probe_queue_limit(backlog) == (macos, "ECONNREFUSED")


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.8.18", None])
def test_lab_probe_runs_by_file_path(version: Optional[str]) -> None:
    """`emulate_lab.py probe` as docs/why-it-hangs.md runs it: by path, outside the package."""
    python = interpreter(version) if version else sys.executable
    if python is None:
        pytest.skip("Python %s not installed" % version)
    env = {k: v for k, v in os.environ.items() if k not in (emulate.ENV_VAR, emulate.LOG_ENV_VAR, "PYTHONPATH")}
    lines = []
    for flags in ([], ["--emulate"]):
        cmd = [python, str(EMULATE_LAB_PY), "probe", "--backlog", "1", *flags]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
        assert out.returncode == 0, out.stderr
        lines.append(json.loads(out.stdout))
    assert lines == [
        {"backlog": 1, "queued": 2, "next": "EAGAIN"},
        {"backlog": 1, "queued": 1, "next": "ECONNREFUSED"},
    ]


@pytest.mark.parametrize("timeout", [None, 0.0, 2.5])
def test_refusal_keeps_the_socket_timeout(emulated: None, unix_listener: str, timeout: Optional[float]) -> None:
    with socket.socket(socket.AF_UNIX) as first, socket.socket(socket.AF_UNIX) as second:
        first.settimeout(1.0)
        first.connect(unix_listener)  # fills the queue (1 on "macOS")
        second.settimeout(timeout)
        with pytest.raises(ConnectionRefusedError) as info:
            second.connect(unix_listener)
        assert info.value.errno == errno.ECONNREFUSED
        assert second.gettimeout() == timeout
        assert second.connect_ex(unix_listener) == errno.ECONNREFUSED
        assert second.gettimeout() == timeout


def test_connected_socket_is_usable_and_keeps_blocking_mode(emulated: None) -> None:
    with tempfile.TemporaryDirectory() as tmp, socket.socket(socket.AF_UNIX) as listener:
        path = os.path.join(tmp, "s")
        listener.bind(path)
        listener.listen(4)
        listener.settimeout(5.0)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            assert client.gettimeout() is None
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(5.0)
                client.sendall(b"ping")
                assert peer.recv(4) == b"ping"


def test_missing_path_is_still_file_not_found(emulated: None) -> None:
    with socket.socket(socket.AF_UNIX) as client, pytest.raises(FileNotFoundError):
        client.connect("/nonexistent/hangbench-no-such-socket")


def test_other_families_keep_linux_semantics(emulated: None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        address = listener.getsockname()
        with socket.create_connection(address, timeout=5.0) as client:
            assert client.gettimeout() == 5.0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        free = closed.getsockname()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
        client.settimeout(5.0)
        assert client.connect_ex(free) == errno.ECONNREFUSED


def test_refusals_are_logged_when_asked(
    emulated: None, unix_listener: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "refusals.log"
    monkeypatch.setenv(emulate.LOG_ENV_VAR, str(log))
    assert concurrent_connects(unix_listener, 3) == {"connected": 1, "refused": 2}
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all("ECONNREFUSED" in line for line in lines)


# --- propagation to fresh interpreters -------------------------------------------------------

CHECK = "import socket; print(socket.socket.__dict__.get('_hangbench_emulate', {}).get('names'))"


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.8.18", "3.13.0", None])
def test_fresh_interpreter_installs_the_patch(version: Optional[str]) -> None:
    python = sys.executable if version is None else interpreter(version)
    if python is None:
        pytest.skip(f"Python {version} not installed")
    env = emulate.child_env([emulate.MACOS_UNIX_REFUSAL])
    out = run_python(python, CHECK, env)
    assert out.stdout.strip() == "('macos-unix-refusal',)", out.stderr
    assert out.stderr == ""
    plain = run_python(python, CHECK, {k: v for k, v in env.items() if k != emulate.ENV_VAR})
    assert plain.stdout.strip() == "None"


@pytest.mark.slow
def test_hook_still_runs_the_sitecustomize_it_shadows(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.SHADOWED_RAN = True\n")
    base = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env = emulate.child_env([emulate.MACOS_UNIX_REFUSAL], base)
    out = run_python(sys.executable, "import builtins; print(builtins.SHADOWED_RAN); " + CHECK, env)
    assert out.stdout.split() == ["True", "('macos-unix-refusal',)"], out.stderr


@pytest.mark.slow
def test_bad_environment_warns_and_starts_anyway() -> None:
    env = emulate.child_env([emulate.MACOS_UNIX_REFUSAL])
    env[emulate.ENV_VAR] = "bogus"
    out = run_python(sys.executable, "print('alive')", env)
    assert out.stdout.strip() == "alive"
    assert "unknown emulation 'bogus'" in out.stderr


# --- gh-101225 at the multiprocessing level (seconds each: marked slow) ----------------------


def _has_small_backlog(python: str) -> bool:
    """CPython <= 3.12.x: the resource sharer listens with the default backlog of 1."""
    code = "import sys; print(sys.version_info[:2] < (3, 13))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() == "True"


@pytest.mark.slow
@pytest.mark.parametrize("method", START_METHODS)
def test_no_task_lost_without_emulation(method: str) -> None:
    summary = reproduce(sys.executable, method, "--no-emulate")
    assert (summary["lost"], summary["completed"]) == (0, summary["tasks"]), summary


@pytest.mark.slow
@pytest.mark.parametrize("method", START_METHODS)
def test_tasks_lost_with_emulation_here(method: str) -> None:
    if not _has_small_backlog(sys.executable):
        pytest.skip("this interpreter has the gh-101225 fix (backlog 128)")
    summary = reproduce_until_loss(sys.executable, method)
    assert summary["worker_emulation"] == [emulate.MACOS_UNIX_REFUSAL], summary
    assert summary["lost"] > 0 and summary["refusals"] > 0, summary


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_tasks_lost_with_emulation_on_3_12_1(method: str) -> None:
    python = interpreter("3.12.1")
    if python is None:
        pytest.skip("Python 3.12.1 not installed")
    summary = reproduce_until_loss(python, method)
    assert summary["worker_emulation"] == [emulate.MACOS_UNIX_REFUSAL], summary
    assert summary["lost"] > 0 and summary["refusals"] > 0, summary


@pytest.mark.slow
@pytest.mark.parametrize("method", START_METHODS)
def test_no_task_lost_with_emulation_on_3_13_0(method: str) -> None:
    python = interpreter("3.13.0")
    if python is None:
        pytest.skip("Python 3.13.0 not installed")
    summary = reproduce(python, method)
    assert summary["worker_emulation"] == [emulate.MACOS_UNIX_REFUSAL], summary
    assert (summary["lost"], summary["refusals"]) == (0, 0), summary
