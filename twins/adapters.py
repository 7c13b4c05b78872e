"""WSGI and ASGI applications that serve hangbench's handler, byte for byte.

Both adapters turn the server's request into a `harness.server.protocol.Request` and let
`harness.server.app.handle` do the routing, the validation and the work, so a twin can never
drift from the built-ins: the same `/work` parameters and limits, the same status codes, the
same body bytes (the headers are the server's own: gunicorn and uvicorn write those).

- WSGI (gunicorn sync, gthread, gevent): the handler runs as is. Under the gevent worker
  `time.sleep` is monkey-patched, so a sleep yields to other greenlets, as it does in the
  built-in gevent strategy.
- ASGI (uvicorn): the handler's routing runs inline, the CPU burn runs inline (an `async def`
  handler that computes blocks its loop, which is the model being measured), and the sleep
  becomes `await asyncio.sleep`, which is how an asyncio application waits. The work is taken
  out of `App` by a subclass whose `perform` returns it instead of doing it, so the routing is
  still `App.__call__`'s own.

The server-wide defaults (`--cpu-us`, `--sleep-ms`, `--bytes`) reach the child server through
one environment variable, read by the factories `wsgi_app()` and `asgi_app()`.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass, fields
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, MutableMapping, Optional, Tuple
from urllib.parse import quote

from harness.server.app import App, Work, burn_cpu, handle, make_body
from harness.server.protocol import Request, Response

WORK_ENV = "HANGBENCH_TWIN_WORK"  # JSON: {"cpu_us": int, "sleep_ms": float, "bytes": int}


class TwinConfigError(ValueError):
    """The work defaults handed to a twin's child server cannot be read."""


def work_env(app: App) -> Dict[str, str]:
    """The environment entry that carries `app`'s defaults to a child server."""
    return {WORK_ENV: json.dumps(asdict(app.defaults), sort_keys=True)}


def app_from_env(environ: Mapping[str, str] = os.environ) -> App:
    """The App described by WORK_ENV (the default App when it is not set)."""
    text = environ.get(WORK_ENV)
    if not text:
        return App()
    try:
        fields = json.loads(text)
        work = Work(cpu_us=int(fields["cpu_us"]), sleep_ms=float(fields["sleep_ms"]), bytes=int(fields["bytes"]))
    except (ValueError, TypeError, KeyError) as error:
        raise TwinConfigError("%s is not a valid work description: %s" % (WORK_ENV, error)) from None
    return App(work.validated())


def _status_line(status: int) -> str:
    try:
        return "%d %s" % (status, HTTPStatus(status).phrase)
    except ValueError:
        return "%d Unknown" % status


def _headers(response: Response) -> List[Tuple[str, str]]:
    headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))]
    headers.extend(response.extra_headers)
    return headers


def _request(method: str, target: str, version: str) -> Request:
    # The handler reads only the method and the target; the headers are left out rather than
    # copied per request, and keep-alive is the server's business, not the handler's.
    return Request(method=method, target=target, version=version, headers=(), keep_alive=True)


# --------------------------------------------------------------------------- WSGI

StartResponse = Callable[..., Any]


class WsgiAdapter:
    """A WSGI application running `handle(app, request)` for each request."""

    def __init__(self, app: App) -> None:
        self.app = app

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = handle(self.app, _request(environ["REQUEST_METHOD"], wsgi_target(environ), _version(environ)))
        start_response(_status_line(response.status), _headers(response))
        return [response.body]


def wsgi_target(environ: Mapping[str, Any]) -> str:
    """The request target as sent (gunicorn's RAW_URI), else rebuilt from PATH_INFO + QUERY_STRING."""
    raw = environ.get("RAW_URI")
    if raw:
        return str(raw)
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/;=,~!$&'()*+:@")
    query = environ.get("QUERY_STRING", "")
    return path + ("?" + query if query else "")


def _version(environ: Mapping[str, Any]) -> str:
    version = str(environ.get("SERVER_PROTOCOL", "HTTP/1.1"))
    return version if version in ("HTTP/1.0", "HTTP/1.1") else "HTTP/1.1"


def wsgi_app() -> WsgiAdapter:
    """Factory for gunicorn (`twins.adapters:wsgi_app()`): the App described by the environment."""
    return WsgiAdapter(app_from_env())


# --------------------------------------------------------------------------- ASGI


@dataclass(frozen=True)
class _Pending(Response):
    """What `_Planner` returns for a valid /work request: the work, not yet done."""

    work: Work = Work()  # noqa: RUF009 - Work is frozen, so one shared default is safe


@dataclass(frozen=True)
class _Planner(App):
    """`App` with the routing and validation unchanged and the work deferred to the caller."""

    @staticmethod
    def perform(work: Work, cancelled: Optional[Callable[[], bool]] = None) -> Response:
        return _Pending(work=work)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AsgiAdapter:
    """An ASGI (3.0) HTTP application: App's routing inline, the sleep awaited."""

    def __init__(self, app: App) -> None:
        self.planner = _Planner(**{f.name: getattr(app, f.name) for f in fields(app)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websocket: nothing to set up, nothing to serve
        await _drain(receive)
        version = "HTTP/1.0" if scope.get("http_version") == "1.0" else "HTTP/1.1"
        response = handle(self.planner, _request(scope["method"], asgi_target(scope), version))
        if isinstance(response, _Pending):
            response = await perform_async(response.work)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in _headers(response)],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


async def perform_async(work: Work) -> Response:
    """`App.perform` for an event loop: the same CPU burn and body, the sleep awaited."""
    burn_cpu(work.cpu_us)
    if work.sleep_ms > 0:
        await asyncio.sleep(work.sleep_ms / 1000.0)
    return Response(200, make_body(work.bytes))


async def _drain(receive: Receive, limit: int = 1 << 20) -> None:
    """Read the request body (ignored by the handler, as the built-ins ignore it); bounded."""
    for _ in range(limit):
        message = await receive()
        if message.get("type") != "http.request" or not message.get("more_body", False):
            return


def asgi_target(scope: Mapping[str, Any]) -> str:
    raw: Optional[bytes] = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope.get("path", "/"))
    query = scope.get("query_string", b"")
    return path + ("?" + query.decode("latin-1") if query else "")


def asgi_app() -> AsgiAdapter:
    """Factory for uvicorn (`--factory twins.adapters:asgi_app`): the App described by the environment."""
    return AsgiAdapter(app_from_env())
