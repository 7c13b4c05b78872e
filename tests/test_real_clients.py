"""Real HTTP clients (ab, wrk, curl) against every sound strategy.

The rest of the suite talks to servers through our own tiny client (`tests/helpers.py`) and the
harness's load engines. Those share assumptions with the server; ab, wrk and curl do not. They
are the tools a user reaches for first (README: `serve` exists so that "curl, ab, wrk or a
browser can talk to it"), and each stresses something different:

- ab without -k: one connection per request (HTTP/1.0, no keep-alive), 32 at a time;
- ab -k: HTTP/1.0 keep-alive, the case servers most often get wrong (they must echo
  `Connection: keep-alive` or close);
- wrk: HTTP/1.1 keep-alive with 64 connections as fast as the server answers, and again with
  `Connection: close` so that every request opens a connection;
- curl with two URLs: the second request must reuse the first connection;
- a malformed request must get a 400, and must not take the server down.

The assertions are about correctness only (no failed, non-2xx or socket-error lines, and some
requests done); speed is measured elsewhere, never asserted. Every client runs under a
subprocess timeout, and every server is stopped by `server_factory` whatever the outcome. A
test whose tool is not installed is skipped, not failed.

Run time is kept short on purpose (ab: 2000 requests; wrk: 2 s) because it is multiplied by
the number of strategies.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from typing import Callable, List, Sequence

import pytest
from helpers import HttpClient, NoResponse, ServerProcess

pytestmark = pytest.mark.realclient

SOUND_STRATEGIES = ["scm-rights", "threads", "gevent", "asyncio-executor"]
CLIENT_TIMEOUT_S = 60.0  # bound on any one client run; a healthy run takes a few seconds
AB_RESPONSE_TIMEOUT_S = 10  # ab -s: a response (or, without -k, the server's close) late by this is a failure
SOCKET_TIMEOUT_S = 5.0  # raw-socket reads; a healthy server answers in milliseconds

AB_REQUESTS = 2000
AB_CONCURRENCY = 32
WRK_CONNECTIONS = 64
WRK_SECONDS = 2
WRK_THREADS = 2

MALFORMED = [
    pytest.param(b"GARBAGE\r\n\r\n", id="garbage-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", id="header-without-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", id="bad-content-length"),
]

ServerFactory = Callable[..., ServerProcess]


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip("%s is not installed" % tool)
    return path


def run_client(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a client to completion (bounded); a timeout is a test failure that says so."""
    try:
        return subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        # The exception carries bytes even when the run was in text mode.
        so_far = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(
            "%s did not finish within %.0f s (server hung?)\nstdout so far:\n%s"
            % (" ".join(argv), CLIENT_TIMEOUT_S, so_far)
        )


def describe(proc: subprocess.CompletedProcess[str], server: ServerProcess) -> str:
    """Everything needed to diagnose a failed assertion: the command, its output, the server log."""
    return "$ %s  (exit %s)\n--- stdout\n%s\n--- stderr\n%s\n--- server log\n%s" % (
        " ".join(proc.args),
        proc.returncode,
        proc.stdout,
        proc.stderr[-4000:],
        server.stderr_text()[-4000:],
    )


def start(server_factory: ServerFactory, strategy: str) -> ServerProcess:
    """A server with the strategy's default options, as `python -m harness serve` would run it."""
    return server_factory(strategy, workers=None)


def url(server: ServerProcess, path: str = "/") -> str:
    return "http://127.0.0.1:%d%s" % (server.port, path)


# --------------------------------------------------------------------------- ab


def ab_field(output: str, name: str) -> str:
    match = re.search(r"^%s:\s+(.*)$" % re.escape(name), output, re.MULTILINE)
    assert match, "no %r line in ab output" % name
    return match.group(1).strip()


@pytest.mark.slow
@pytest.mark.parametrize("keep_alive", [False, True], ids=["close", "keep-alive"])
@pytest.mark.parametrize("strategy", SOUND_STRATEGIES)
def test_ab(server_factory: ServerFactory, strategy: str, keep_alive: bool) -> None:
    ab = require("ab")
    server = start(server_factory, strategy)
    argv: List[str] = (
        [ab]
        + (["-k"] if keep_alive else [])
        + ["-s", str(AB_RESPONSE_TIMEOUT_S), "-n", str(AB_REQUESTS), "-c", str(AB_CONCURRENCY), url(server)]
    )
    proc = run_client(argv)
    info = describe(proc, server)
    assert proc.returncode == 0, info
    assert ab_field(proc.stdout, "Complete requests") == str(AB_REQUESTS), info
    assert ab_field(proc.stdout, "Failed requests") == "0", info
    assert "Non-2xx responses" not in proc.stdout, info
    if keep_alive:  # the server kept HTTP/1.0 keep-alive connections open (else -k is a no-op)
        assert int(ab_field(proc.stdout, "Keep-Alive requests")) > 0, info


# --------------------------------------------------------------------------- wrk


@pytest.mark.slow
@pytest.mark.parametrize("connection", ["keep-alive", "close"])
@pytest.mark.parametrize("strategy", SOUND_STRATEGIES)
def test_wrk(server_factory: ServerFactory, strategy: str, connection: str) -> None:
    wrk = require("wrk")
    server = start(server_factory, strategy)
    argv = [wrk, "-c", str(WRK_CONNECTIONS), "-d", "%ds" % WRK_SECONDS, "-t", str(WRK_THREADS)]
    if connection == "close":
        argv += ["-H", "Connection: close"]
    proc = run_client([*argv, url(server)])
    info = describe(proc, server)
    assert proc.returncode == 0, info
    assert "Socket errors" not in proc.stdout, info
    assert "Non-2xx" not in proc.stdout, info
    match = re.search(r"^\s*(\d+) requests in ", proc.stdout, re.MULTILINE)
    assert match and int(match.group(1)) > 0, info


# --------------------------------------------------------------------------- curl


@pytest.mark.slow
@pytest.mark.parametrize("strategy", SOUND_STRATEGIES)
def test_curl_reuses_connection(server_factory: ServerFactory, strategy: str) -> None:
    curl = require("curl")
    server = start(server_factory, strategy)
    target = url(server)
    proc = run_client([curl, "-sv", "--max-time", "10", target, target])
    info = describe(proc, server)
    assert proc.returncode == 0, info
    assert proc.stdout.count("hangbench") == 2, info  # both bodies arrived
    assert "Re-using existing connection" in proc.stderr, info


def expect_400_then_close(client: HttpClient, garbage: bytes) -> None:
    client.send(garbage)
    try:
        response = client.read_response()
    except NoResponse:
        pytest.fail("the server closed the connection without answering %r with a 400" % garbage)
    assert response.status == 400, response
    assert (response.header("connection") or "").lower() == "close", response
    try:
        closed = client.at_eof()
    except socket.timeout:
        closed = False
    assert closed, (
        "the server answered 400 with Connection: close but had not closed the connection %.0f s later"
        % SOCKET_TIMEOUT_S
    )


@pytest.mark.slow
@pytest.mark.parametrize("garbage", MALFORMED)
@pytest.mark.parametrize("strategy", SOUND_STRATEGIES)
def test_malformed_request_gets_400_and_server_survives(
    server_factory: ServerFactory, strategy: str, garbage: bytes
) -> None:
    curl = require("curl")
    server = start(server_factory, strategy)
    with HttpClient(server.port, SOCKET_TIMEOUT_S) as client:  # garbage as the first bytes of a connection
        expect_400_then_close(client, garbage)
    with HttpClient(server.port, SOCKET_TIMEOUT_S) as client:  # garbage on a keep-alive connection already used
        assert client.get("/").status == 200
        expect_400_then_close(client, garbage)
    proc = run_client([curl, "-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", url(server)])
    info = describe(proc, server)
    assert proc.returncode == 0 and proc.stdout == "200", info
