"""Shared pieces of the benchmark scripts in this folder: wrk, nginx, servers, medians.

Everything here talks to 127.0.0.1 only, bounds every wait, and stops only the processes it
started (by the Popen it holds, or the process group it created for that one process).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
NGINX = "/usr/sbin/nginx"
BODY_64 = "x" * 64  # what hangbench's default request (/work?...&bytes=64) is answered with
READY_TIMEOUT_S = 30.0
# The scripts run as `python bench/NAME.py`: import `harness` and `twins` from this tree (they
# import this module before either), whether or not the tree is installed.
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))
STOP_TIMEOUT_S = 10.0


class BenchError(RuntimeError):
    """A benchmark cannot run here (a tool is missing, a server does not start)."""


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkResult:
    rps: float
    errors: int  # socket errors (connect, read, write, timeout) plus non-2xx/3xx responses
    output: str


def wrk(url: str, threads: int = 2, connections: int = 64, duration_s: int = 5, close: bool = False) -> WrkResult:
    """One wrk run; `close` sends `Connection: close` (a new connection per request)."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    argv = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % duration_s]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30, check=False)
    found = re.search(r"Requests/sec:\s*([0-9.]+)", done.stdout)
    if done.returncode != 0 or not found:
        raise BenchError("wrk failed (status %d): %s" % (done.returncode, (done.stderr or done.stdout).strip()))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", done.stdout))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    return WrkResult(float(found.group(1)), errors + (int(non2xx.group(1)) if non2xx else 0), done.stdout)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, alive: Optional[subprocess.Popen[bytes]] = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise BenchError("the server exited (status %d) before it accepted a connection" % alive.returncode)
        try:
            socket.create_connection((HOST, port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError("nothing accepted connections on %s:%d within %.0f s" % (HOST, port, timeout_s))


def stop_process(proc: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> None:
    """Signal `proc`, wait (bounded), then SIGKILL its process group (its own session: see start)."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signum)
            proc.wait(STOP_TIMEOUT_S)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any; the group is only theirs
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(STOP_TIMEOUT_S)


# --------------------------------------------------------------------------- nginx

NGINX_CONF = """daemon off;
worker_processes %(workers)s;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    server {
        listen %(host)s:%(port)d;
        location / {
            default_type text/plain;
            return 200 "%(body)s";
        }
    }
}
"""


@contextmanager
def nginx(workers: str = "2") -> Iterator[int]:
    """nginx on 127.0.0.1 answering every request with 200 and BODY_64; yields its port.

    The configuration, pid file and error log live in a temporary folder; nginx is stopped
    (SIGQUIT, bounded wait, SIGKILL of its own process group) however the block ends."""
    if not os.access(NGINX, os.X_OK):
        raise BenchError("%s is not installed (apt-get install nginx-light)" % NGINX)
    with tempfile.TemporaryDirectory(prefix="hangbench-nginx-") as tmp:
        port = free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF % {"workers": workers, "dir": tmp, "host": HOST, "port": port, "body": BODY_64})
        proc = subprocess.Popen(
            [NGINX, "-p", tmp, "-c", str(conf), "-e", str(Path(tmp) / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: the last-resort SIGKILL reaches its workers only
        )
        try:
            try:
                wait_for_port(port, 10.0, proc)
            except BenchError:
                log = (Path(tmp) / "error.log").read_text() if (Path(tmp) / "error.log").exists() else ""
                raise BenchError("nginx did not start: %s" % log.strip()[-500:]) from None
            yield port
        finally:
            stop_process(proc, signal.SIGQUIT)  # graceful: workers finish their requests


# --------------------------------------------------------------------------- hangbench servers


@dataclass
class Server:
    """A `python -m harness.server` process started by `start_server`."""

    proc: subprocess.Popen[bytes]
    ready: Dict[str, object]
    log: Path

    @property
    def port(self) -> int:
        port = self.ready["port"]
        assert isinstance(port, int), self.ready
        return port

    def url(self, target: str) -> str:
        return "http://%s:%d%s" % (HOST, self.port, target)


def start_server(strategy: str, args: Sequence[str] = (), log_dir: Optional[Path] = None) -> Server:
    """Start one strategy (a name or module:Class) on a free port; wait for its ready line."""
    log = Path(tempfile.mkstemp(prefix="hangbench-bench-", suffix=".log", dir=log_dir)[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    argv = [sys.executable, "-m", "harness.server", "--strategy", strategy, "--host", HOST, "--port", "0", *args]
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=str(REPO),
            env=env,
            start_new_session=True,
        )
    try:
        line = _read_line(proc, READY_TIMEOUT_S)
        ready = json.loads(line)
    except (BenchError, ValueError) as error:
        stop_process(proc)
        raise BenchError("%s did not start (%s): %s" % (strategy, error, log.read_text()[-800:].strip())) from None
    server = Server(proc, ready, log)
    wait_for_port(server.port, 10.0, proc)
    return server


def stop_server(server: Server) -> None:
    stop_process(server.proc)
    if server.proc.stdout is not None:
        server.proc.stdout.close()
    server.log.unlink(missing_ok=True)


def _read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise BenchError("no ready line within %.0f s" % timeout_s)
        chunk = os.read(fd, 4096)
        if not chunk:
            raise BenchError("the server exited (status %s)" % proc.wait(STOP_TIMEOUT_S))
        data += chunk
    return data


def write_json(path: str, script: str, argv: List[str], machine: str, data: Dict[str, object]) -> None:
    """Write a bench script's figures to `path`, with the command that made them and the machine."""
    record = {
        "command": "python bench/%s %s" % (script, " ".join(argv)),
        "machine": machine,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        **data,
    }
    Path(path).write_text(json.dumps(record, indent=1) + "\n")
    print("figures: %s" % path)


def machine() -> str:
    """One line saying where a figure was measured."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return "%s, %d CPUs, load %.2f %.2f %.2f, Python %s, %s UTC" % (
        os.uname().machine,
        os.cpu_count() or 0,
        *load,
        sys.version.split()[0],
        time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    )


def print_table(headers: List[str], rows: List[List[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
