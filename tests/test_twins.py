"""Production twins (gunicorn sync/gthread/gevent, uvicorn) answer exactly as the built-ins do.

The adapter tests run in-process and need neither gunicorn nor uvicorn. The server tests start
each twin as `python -m harness.server --strategy twins.servers:Class` (the way the harness runs
any plugin), compare its answers with the built-in `threads` strategy's (status, body, and the
Allow header where there is one; the other headers are each server's own), and check that
SIGTERM stops it with nothing left in its process group. They are skipped when the `[twins]`
extra is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from typing import Any, Dict, Iterator, List, MutableMapping, Tuple

import pytest
from helpers import HttpClient, HttpResponse, ServerProcess, request_bytes, start_server

from harness.server.app import MAX_CPU_US, App, Work, handle
from harness.server.protocol import Request
from harness.server.strategy import StrategyError
from twins import adapters, servers

TWINS = ["GunicornSync", "GunicornGthread", "GunicornGthread1x32", "GunicornGevent", "Uvicorn"]
TARGETS = [
    "/",
    "/work?bytes=1000",
    "/work?bytes=0",
    "/work?cpu_us=100&sleep_ms=2&bytes=7",
    "/work?cpu_us=%d" % (MAX_CPU_US + 1),
    "/work?bytes=lots",
    "/elsewhere",
]


def _reference(target: str, method: str = "GET") -> Tuple[int, bytes]:
    response = handle(App(), Request(method, target, "HTTP/1.1", (), True))
    return response.status, response.body


# --------------------------------------------------------------------------- adapters, in-process


def _wsgi(adapter: adapters.WsgiAdapter, method: str, target: str) -> Tuple[int, Dict[str, str], bytes]:
    path, _, query = target.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1"}
    seen: List[Any] = []
    body = b"".join(adapter(environ, lambda status, headers: seen.extend([status, headers])))
    return int(seen[0].split()[0]), dict(seen[1]), body


def _asgi(adapter: adapters.AsgiAdapter, method: str, target: str) -> Tuple[int, Dict[str, str], bytes]:
    path, _, query = target.partition("?")
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query.encode()}
    sent: List[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(adapter(scope, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("call", [_wsgi, _asgi], ids=["wsgi", "asgi"])
@pytest.mark.parametrize("target", TARGETS)
def test_adapters_answer_what_the_handler_answers(call: Any, target: str) -> None:
    adapter = adapters.WsgiAdapter(App()) if call is _wsgi else adapters.AsgiAdapter(App())
    status, headers, body = call(adapter, "GET", target)
    assert (status, body) == _reference(target)
    assert headers["content-length" if call is _asgi else "Content-Length"] == str(len(body))


@pytest.mark.parametrize("call", [_wsgi, _asgi], ids=["wsgi", "asgi"])
def test_adapters_refuse_other_methods_with_the_allow_header(call: Any) -> None:
    adapter = adapters.WsgiAdapter(App()) if call is _wsgi else adapters.AsgiAdapter(App())
    status, headers, body = call(adapter, "DELETE", "/work")
    assert (status, body) == _reference("/work", "DELETE")
    assert {k.lower(): v for k, v in headers.items()}["allow"] == "GET, HEAD, POST"


def test_work_defaults_travel_through_the_environment() -> None:
    app = App(Work(cpu_us=0, sleep_ms=0.5, bytes=9))
    assert adapters.app_from_env(adapters.work_env(app)) == app
    assert adapters.app_from_env({}) == App()
    with pytest.raises(adapters.TwinConfigError):
        adapters.app_from_env({adapters.WORK_ENV: '{"cpu_us": "many"}'})


def test_asgi_adapter_uses_the_server_defaults() -> None:
    adapter = adapters.AsgiAdapter(App(Work(bytes=5)))
    assert _asgi(adapter, "GET", "/work")[2] == b"x" * 5


def test_a_twin_without_its_server_says_what_to_install() -> None:
    class Missing(servers.Twin):
        name = "missing-twin"
        summary = "test twin whose server is not installed"
        requires = ("hangbench_test_no_such_server",)

    reason = Missing.unavailable()
    assert reason is not None and "hangbench_test_no_such_server" in reason and "[twins]" in reason
    with pytest.raises(StrategyError, match="twins"):
        Missing()


def test_gunicorn_command_serves_the_inherited_socket() -> None:
    options = servers.ServeOptions(workers=3)
    argv = servers.GunicornGthread.command(servers.GunicornGthread.__new__(servers.GunicornGthread), 7, options)
    assert argv[argv.index("--bind") + 1] == "fd://7"
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[argv.index("--threads") + 1] == "16"


def test_uvicorn_launcher_opens_an_inherited_tcp_socket_as_tcp() -> None:
    # uvicorn's own `--fd` labels every socket AF_UNIX, which costs TCP_NODELAY (see uvicorn_fd).
    from twins import uvicorn_fd

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with uvicorn_fd._fromfd(listener.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as opened:
            assert opened.family == socket.AF_INET
            assert opened.fileno() != listener.fileno()  # a duplicate the caller owns, as fromfd's


# --------------------------------------------------------------------------- real servers

needs_servers = pytest.mark.skipif(
    importlib.util.find_spec("gunicorn") is None or importlib.util.find_spec("uvicorn") is None,
    reason="the [twins] extra (gunicorn, uvicorn) is not installed",
)


def _answers(port: int) -> List[Tuple[int, bytes, Any]]:
    """(status, body, Allow header) for every target, then for a DELETE; one connection each."""
    answers = []
    for target, method in [(t, "GET") for t in TARGETS] + [("/work", "DELETE")]:
        with HttpClient(port) as conn:
            response: HttpResponse = conn.get(target, headers=[("Connection", "close")], method=method)
        assert response.header("connection") == "close"
        answers.append((response.status, response.body, response.header("allow")))
    return answers


@pytest.fixture(scope="module")
def reference_answers() -> Iterator[List[Tuple[int, bytes, Any]]]:
    server = start_server("threads", workers=4)
    try:
        yield _answers(server.port)
    finally:
        server.close()


@pytest.fixture(scope="module", params=TWINS)
def twin(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    server = start_server("twins.servers:" + request.param, workers=None)
    yield server
    server.close()


@pytest.mark.slow
@needs_servers
def test_twin_answers_as_threads_does(twin: ServerProcess, reference_answers: List[Tuple[int, bytes, Any]]) -> None:
    assert _answers(twin.port) == reference_answers


@pytest.mark.slow
@needs_servers
def test_twin_head_sends_no_body_and_keeps_the_connection_usable(twin: ServerProcess) -> None:
    with HttpClient(twin.port) as conn:
        head = conn.get("/work?bytes=1000", method="HEAD")
        assert head.status == 200 and head.header("content-length") == "1000"
        if head.header("connection") == "close":  # gunicorn sync keeps no connection alive
            assert conn.at_eof()
            return
        assert conn.get("/work?bytes=3").body == b"xxx"


@pytest.mark.slow
@needs_servers
def test_twin_skips_a_request_body_it_does_not_read(twin: ServerProcess) -> None:
    with HttpClient(twin.port) as conn:
        conn.send(request_bytes("/work?bytes=3", [("Content-Length", "5")], "POST") + b"hello")
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"xxx")
        if response.header("connection") == "close":
            return
        assert conn.get("/work?bytes=2").body == b"xx"  # "hello" was not taken for a request


@pytest.mark.slow
@needs_servers
@pytest.mark.parametrize("name", TWINS)
def test_twin_stops_on_sigterm_leaving_no_process(name: str) -> None:
    server = start_server("twins.servers:" + name, workers=2)
    try:
        with HttpClient(server.port) as conn:
            assert conn.get("/").status == 200  # the workers are up, and one holds a connection
            assert len(server.group_pids()) >= 3  # the server, the production master, workers
            status, left = server.stop_gracefully(timeout=8.0)
        assert status == 0
        assert left == []
    finally:
        server.close()
