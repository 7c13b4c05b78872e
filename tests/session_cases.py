"""Shared helpers for the connection tests (not a test module): requests, response splitting, apps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from harness.server.app import App, Cancelled, Limits, Work
from harness.server.connection import HttpSession
from harness.server.protocol import Request, Response

TIMEOUT_S = 10.0


def get(target: str = "/", *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = ["GET %s %s" % (target, version), "Host: test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def split_responses(data: bytes) -> List[Tuple[int, dict, bytes]]:
    """Cut a byte stream into (status, headers, body) by Content-Length."""
    out: List[Tuple[int, dict, bytes]] = []
    for _ in range(1000):
        if not data:
            return out
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict((k.lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines))
        length = int(headers["content-length"])
        out.append((int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]
    raise AssertionError("too many responses")


def app(head_timeout_s: float = 10.0) -> App:
    return App(Work(bytes=5), Limits(head_timeout_s=head_timeout_s))


@dataclass(frozen=True)
class Counting(App):
    """The real app, recording the target of every request it starts."""

    started: List[str] = field(default_factory=list)

    def __call__(self, request: Request, cancelled: Optional[Cancelled] = None) -> Response:
        self.started.append(request.target)
        return super().__call__(request, cancelled)


def drive(session: HttpSession, data: bytes, cancelled: Optional[Cancelled] = None) -> bytes:
    """Receive `data`, then pull every response it completes, one at a time."""
    session.receive(data)
    out = b""
    for _ in range(1000):
        parts = session.next_response(cancelled)
        if parts is None:
            return out
        out += parts[0] + parts[1]
    raise AssertionError("too many responses")
