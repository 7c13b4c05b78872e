"""Shared test helpers: run a server process, speak HTTP/1.1 over a raw socket.

Tests talk to servers the way a benchmark client does: over TCP on 127.0.0.1, with a timeout on
every socket operation. The HTTP client here is deliberately tiny and strict (Content-Length
framing only, which is all the server side produces) and independent of `harness.server.protocol`, so
that a parser bug cannot hide itself by being on both ends.

Every server is started in its own session (`start_new_session=True`), so its process group
holds the server and every worker it starts; `ServerProcess.stop()` sends SIGTERM to the server,
waits (bounded), then SIGKILLs the whole group. Nothing else is ever signalled.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
IO_TIMEOUT_S = 10.0
MAX_HEAD = 64 * 1024


# --------------------------------------------------------------------------- HTTP client


class NoResponse(Exception):
    """The server closed (or reset) the connection before a complete response arrived."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    reason: str
    headers: Dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())


class HttpClient:
    """One client connection: send raw bytes, read responses framed by Content-Length."""

    def __init__(self, port: int, timeout: float = IO_TIMEOUT_S, host: str = HOST) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self._buffer = bytearray()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, target: str = "/", headers: Sequence[Tuple[str, str]] = (), method: str = "GET") -> HttpResponse:
        self.send(request_bytes(target, headers, method))
        return self.read_response(head_only=method == "HEAD")

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise NoResponse("connection closed after %d bytes of a response" % len(self._buffer))
        self._buffer += chunk

    def read_response(self, head_only: bool = False) -> HttpResponse:
        """Read exactly one response; raises NoResponse on EOF, socket.timeout on silence."""
        for _ in range(MAX_HEAD):  # bounded: each round either returns or adds >= 1 byte
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buffer) > MAX_HEAD:
                raise AssertionError("response head larger than %d bytes" % MAX_HEAD)
            self._fill()
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        version, status, reason = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers["content-length"])
        for _ in range(length + 1):
            if len(self._buffer) >= length:
                break
            self._fill()
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return HttpResponse(int(status), reason, headers, body)

    def read_until_eof(self) -> bytes:
        """Everything the server sends until it closes (socket.timeout if it never does)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        for _ in range(1_000_000):
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        raise AssertionError("server sent more than expected")

    def at_eof(self) -> bool:
        """True if the server has closed the connection (nothing more buffered or arriving)."""
        if self._buffer:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def request_bytes(target: str = "/", headers: Sequence[Tuple[str, str]] = (), method: str = "GET") -> bytes:
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s" % HOST]
    lines += ["%s: %s" % pair for pair in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def get(
    port: int, target: str = "/", headers: Sequence[Tuple[str, str]] = (), timeout: float = IO_TIMEOUT_S
) -> HttpResponse:
    """One request on a fresh connection."""
    with HttpClient(port, timeout) as client:
        return client.get(target, headers)


# --------------------------------------------------------------------------- server process


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    ready: Dict[str, object]
    stderr_file: IO[bytes]
    returncode: Optional[int] = None
    stop_log: List[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        port = self.ready["port"]
        assert isinstance(port, int), self.ready
        return port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        self.stderr_file.flush()
        with open(self.stderr_file.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for_stderr(self, needles: Sequence[str], timeout: float = 10.0) -> str:
        """Poll the server log until it contains one of `needles` (bounded); return the log."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr_text()
            if any(n in text for n in needles) or time.monotonic() >= deadline:
                return text
            time.sleep(0.05)

    def group_pids(self) -> List[int]:
        """Live (non-zombie) processes in the server's process group, the server included."""
        import psutil

        found = []
        for proc in psutil.process_iter(["status"]):
            try:
                if os.getpgid(proc.pid) == self.pid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(proc.pid)
            except (OSError, psutil.Error):
                continue
        return found

    def stop(self, timeout: float = STOP_TIMEOUT_S, group: bool = False) -> Optional[int]:
        """SIGTERM the server, wait for it (bounded), then SIGKILL its whole process group.

        SIGTERM goes to the server process only (as the harness's supervisor does): the server
        stops its own workers. Sending it to the whole group instead would kill the workers
        under the server's feet (`group=True` does, for the test that shows what happens).
        Returns the server's exit status if it exited on SIGTERM within `timeout`, else None."""
        if self.proc.poll() is None:
            _signal(self.pid, signal.SIGTERM, group)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop_log.append("server %d ignored SIGTERM for %.0f s" % (self.pid, timeout))
        elif self.returncode is None:
            self.returncode = self.proc.returncode
        self._kill_group()  # workers that outlived the server, if any
        if self.proc.poll() is None:
            self.proc.wait(STOP_TIMEOUT_S)
            return None
        return self.returncode

    def stop_gracefully(self, timeout: float = STOP_TIMEOUT_S, group: bool = False) -> Tuple[Optional[int], List[int]]:
        """SIGTERM only; return the exit status (None if still running after `timeout`) and the
        group members still alive afterwards (polled for up to `timeout`, since orphaned
        workers may take a moment to exit). The group is SIGKILLed afterwards either way."""
        _signal(self.pid, signal.SIGTERM, group)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.returncode = None
        deadline = time.monotonic() + timeout
        left = self.group_pids()
        while left and self.returncode is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.group_pids()
        status = self.returncode
        if status is None:  # it ignores SIGTERM now (one-shot handler): no second try
            self._kill_group()
            self.proc.wait(STOP_TIMEOUT_S)
        self.stop()
        return status, left

    def _kill_group(self) -> None:
        _killpg(self.pid, signal.SIGKILL)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.stderr_file.close()


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, signum: int, group: bool) -> None:
    if group:
        _killpg(pid, signum)
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a pipe, waiting at most `timeout` seconds in total."""
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no ready line within %.0f s (got %r)" % (timeout, data))
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def python_env(extra_path: Sequence[os.PathLike] = (), **env: str) -> Dict[str, str]:
    """The environment for a child interpreter: the repo (and `extra_path`) on PYTHONPATH."""
    result = dict(os.environ)
    paths = [str(p) for p in extra_path] + [str(REPO)]
    if result.get("PYTHONPATH"):
        paths.append(result["PYTHONPATH"])
    result["PYTHONPATH"] = os.pathsep.join(paths)
    result.pop("HANGBENCH_FORENSICS_DIR", None)
    result.update(env)
    return result


def start_server(
    strategy: str,
    *args: str,
    workers: Optional[int] = 2,
    extra_path: Sequence[os.PathLike] = (),
    python: str = sys.executable,
    ready_timeout: float = READY_TIMEOUT_S,
) -> ServerProcess:
    """Start `python -m harness.server --strategy STRATEGY --port 0 ...` and wait for its ready line."""
    argv = [python, "-m", "harness.server", "--strategy", strategy, "--host", HOST, "--port", "0"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    argv += list(args)
    stderr_file = tempfile.NamedTemporaryFile(prefix="hangbench-server-", suffix=".log")  # noqa: SIM115 - the server owns it
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        cwd=str(REPO),
        env=python_env(extra_path),
        start_new_session=True,
    )
    server = ServerProcess(proc, {}, stderr_file)
    try:
        assert proc.stdout is not None  # stdout=PIPE
        line = _read_line(proc.stdout, ready_timeout)
        if not line:
            raise RuntimeError(
                "server exited before it was ready (status %s): %s" % (proc.wait(STOP_TIMEOUT_S), server.stderr_text())
            )
        server.ready = json.loads(line)
        assert server.ready["event"] == "listening", server.ready
    except BaseException:
        server.close()
        raise
    return server


def run_cli(
    *args: str, extra_path: Sequence[os.PathLike] = (), python: str = sys.executable, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS...` to completion (bounded), output captured as text."""
    return subprocess.run(
        [python, "-m", "harness", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=str(REPO),
        env=python_env(extra_path),
        timeout=timeout,
    )
