"""The server's ready line: wait for it (bounded), and believe nothing in it unchecked.

The ready line is one JSON object with `"event": "listening"` on stdout. It comes from a
process the harness does not trust -- a plugin can print anything -- so every field is checked
for type, range and length before the harness uses it: `"port": Infinity` or 70000, a string,
a host that is not an IP address, a line of megabytes or JSON nested a million deep each give
a `not-ready` failure with one sentence (`ReadyLineError`), never a traceback. The host must
be the one the server was asked to bind (`--host` in its argv; loopback too when that is a
wildcard, loopback only when there is none): the harness probes the address in the line, and
a forged line must never aim that traffic at another machine.

Lines are read from the output pump's hand-over (see `output`), never with a blocking
readline: a server that prints half a line and hangs must not hang the harness.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import FAILED_TO_START, NOT_READY
from .output import OutputPump
from .reports import describe_exit

READY_EVENT = "listening"
MAX_STDOUT_LINE = 1 << 20  # a "ready line" longer than this is not one
MAX_READY_LINE = 64 * 1024  # a ready line this long is a forgery or a bug
MAX_TEXT_FIELD = 256
MAX_PID = 1 << 22  # Linux's largest pid_max
_SLICE_S = 0.1


class ReadyLineError(ValueError):
    """The server printed a ready line the harness cannot use; the message says which field."""


@dataclass(frozen=True)
class ReadyInfo:
    """The server's ready line, as parsed and checked."""

    host: str
    port: int
    pid: int
    strategy: Optional[str]
    python: Optional[str]
    elapsed_s: float  # from Popen to the ready line
    raw: Dict[str, Any] = field(default_factory=dict, compare=False)

    def __getitem__(self, key: str) -> Any:
        """Dict-style access to the ready line as printed (`ready["port"]`)."""
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


class _NotJson:
    """Stands for NaN/Infinity, which Python's json accepts but JSON has not: never a valid field."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def requested_host(argv: Sequence[str]) -> Optional[str]:
    """The `--host` a server's command line asks it to bind (the last one given), or None."""
    host = None
    for index, arg in enumerate(argv):
        if arg == "--host" and index + 1 < len(argv):
            host = argv[index + 1]
        elif arg.startswith("--host="):
            host = arg[len("--host=") :]
    return host


def _host_allowed(host: str, requested: Optional[str]) -> bool:
    """Whether a ready line's (valid IP) host is one the harness may send probes to."""
    address = ipaddress.ip_address(host)
    try:
        wanted = ipaddress.ip_address(requested) if requested is not None else None
    except ValueError:  # a name such as localhost: it binds a loopback address
        wanted = None
    if wanted is None:
        return address.is_loopback
    if wanted.is_unspecified:
        return address == wanted or address.is_loopback
    return address == wanted


def parse_ready(
    line: bytes, default_pid: int, elapsed_s: float, requested: Optional[str] = None
) -> Optional[ReadyInfo]:
    """The ready line if `line` is one; None if it is another line; ReadyLineError if it
    announces readiness (`"event": "listening"`) with fields the harness cannot use.
    `requested`: the --host the server was asked to bind (None: loopback only)."""
    if b"listening" not in line or len(line) > MAX_STDOUT_LINE:
        return None  # cheap: most lines a server prints are log lines
    try:
        message = json.loads(line.decode("utf-8", errors="replace"), parse_constant=_NotJson)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("event") != READY_EVENT:
        return None
    if len(line) > MAX_READY_LINE:
        raise ReadyLineError("the ready line is %d bytes long (limit %d)" % (len(line), MAX_READY_LINE))
    host = _host(message.get("host", "127.0.0.1"))
    if not _host_allowed(host, requested):
        raise ReadyLineError(
            "the ready line's 'host' is %s, not the address the server was asked to bind (%s)"
            % (_shown(host), requested or "loopback")
        )
    return ReadyInfo(
        host=host,
        port=_integer(message, "port", 1, 65535, required=True),
        pid=_integer(message, "pid", 1, MAX_PID, default=default_pid),
        strategy=_text(message, "strategy"),
        python=_text(message, "python"),
        elapsed_s=elapsed_s,
        raw=message,
    )


def _integer(
    message: Dict[str, Any], name: str, low: int, high: int, *, required: bool = False, default: int = 0
) -> int:
    if name not in message:
        if required:
            raise ReadyLineError("the ready line has no %r field" % name)
        return default
    value = message[name]
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReadyLineError("the ready line's %r is %s, not an integer" % (name, _shown(value)))
    if not low <= value <= high:
        raise ReadyLineError("the ready line's %r is %s, outside %d..%d" % (name, _shown(value), low, high))
    return value


def _host(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT_FIELD:
        raise ReadyLineError("the ready line's 'host' is %s, not an IP address" % _shown(value))
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ReadyLineError("the ready line's 'host' is %s, not an IP address" % _shown(value)) from None
    return value


def _text(message: Dict[str, Any], name: str) -> Optional[str]:
    value = message.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_FIELD:
        raise ReadyLineError(
            "the ready line's %r is %s, not a string of at most %d characters" % (name, _shown(value), MAX_TEXT_FIELD)
        )
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


Outcome = Union[ReadyInfo, Tuple[str, str]]


def await_ready_line(
    pump: OutputPump,
    peek_exit: Callable[[], Optional[int]],
    default_pid: int,
    started_at: float,
    deadline: float,
    timeout_s: float,
    requested: Optional[str] = None,
) -> Outcome:
    """The ready line, or (status, one-sentence message) saying why there is none. Lines that
    are not the ready line go to the stdout log; so does whatever follows the ready line."""
    buffer = b""
    for _ in range(int(timeout_s / _SLICE_S) + 1000):  # bounded; the deadline ends it first
        remaining = deadline - time.monotonic()
        data, eof = pump.take_stdout(max(0.0, min(_SLICE_S, remaining)))
        buffer += data
        exited = peek_exit() is not None
        if exited and not data:
            more, _ = pump.take_stdout(_SLICE_S)  # what was written just before the exit
            buffer += more
        try:
            ready, buffer, other = _scan_lines(buffer, default_pid, time.monotonic() - started_at, requested)
        except ReadyLineError as error:
            pump.end_handover()
            return NOT_READY, "%s, so the harness cannot use it" % error
        pump.stdout_log.write(b"".join(other))
        if ready is not None:
            pump.end_handover(buffer)
            return ready
        if exited:
            pump.end_handover(buffer)
            return FAILED_TO_START, (
                "the server exited with %s before it printed its ready line" % describe_exit(peek_exit())
            )
        if len(buffer) > MAX_STDOUT_LINE:
            pump.end_handover(buffer)
            return NOT_READY, "more than %d bytes on stdout without a newline" % MAX_STDOUT_LINE
        if remaining <= 0:
            pump.end_handover(buffer)
            return NOT_READY, "no ready line on stdout within %.1f s (the process is alive)" % timeout_s
        if eof:
            time.sleep(max(0.0, min(_SLICE_S, remaining)))  # stdout closed, process alive: wait for exit
    pump.end_handover(buffer)
    return NOT_READY, "no ready line on stdout within %.1f s (the process is alive)" % timeout_s


def _scan_lines(
    buffer: bytes, default_pid: int, elapsed_s: float, requested: Optional[str] = None
) -> Tuple[Optional[ReadyInfo], bytes, List[bytes]]:
    """(ready line or None, what is left after it or the incomplete last line, other lines)."""
    other: List[bytes] = []
    while b"\n" in buffer:
        line, buffer = buffer.split(b"\n", 1)
        ready = parse_ready(line, default_pid, elapsed_s, requested)
        if ready is not None:
            return ready, buffer, other
        other.append(line + b"\n")
    return None, buffer, other
