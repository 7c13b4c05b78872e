"""The server's connections as the kernel sees them, joined to the processes that hold them.

A hang is a connection nobody serves. Which connection, and who holds it, is in the kernel:

* the TCP table (/proc/PID/net/tcp) gives every connection to the server's port with its state
  and queues: bytes received and not yet read (the request, unread) and bytes not yet acked;
  the listening socket's receive queue is its accept queue (connections not yet accepted);
* /proc/PID/fd of each process of the server tree says which processes hold each socket (by
  inode): the acceptor only, a worker, or nobody;
* `ss -tie`, where it exists, adds per-socket counters the table lacks: bytes the server sent and
  received, and how long ago it last sent or received (the "request read 1.9 s ago").
* the client's own end of each connection (same namespace, loopback) gives the client port and
  the client's state (FIN_WAIT2: the client gave up and closed).

`snapshot()` takes all of that at one instant; it is cheap (no stacks) and never raises: what
cannot be read is left out. The result is plain JSON for the record and the input of `causes`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .procfs import TcpEntry, tcp_entries

_SS_TIMEOUT_S = 3.0
_MAX_CONNECTIONS = 200  # kept in the record; a snapshot of a busy server is bounded


@dataclass(frozen=True)
class ServerConnection:
    """One accepted (or still queued) connection to the server's port, from the server's side."""

    client_port: int
    state: str  # the server side's TCP state: ESTABLISHED, CLOSE_WAIT (the client closed), ...
    unread: int  # bytes received and not read by the server (the request, if > 0)
    unsent: int  # bytes written by the server and not yet acked by the client
    inode: str  # "0": still in the accept queue, not accepted by anyone
    holders: Tuple[int, ...]  # pids of the server tree holding the socket open
    client_state: Optional[str] = None  # the client's end: FIN_WAIT2 means the client gave up
    bytes_sent: Optional[int] = None  # by the server on this connection (ss), None if unknown
    bytes_received: Optional[int] = None  # by the server's kernel on this connection (ss)
    last_send_ms: Optional[int] = None  # since the server last sent on it (ss)
    last_receive_ms: Optional[int] = None  # since the server last received on it (ss)


@dataclass(frozen=True)
class Snapshot:
    port: int
    root_pid: Optional[int]  # the acceptor: the server process the harness started
    pids: Tuple[int, ...]  # the live processes of the tree at the snapshot
    accept_queue: Optional[int]  # connections completed by the kernel, not yet accept()ed
    connections: Tuple[ServerConnection, ...] = ()
    truncated: int = 0  # connections left out past the bound
    errors: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def snapshot(port: int, pids: Iterable[int], root_pid: Optional[int] = None) -> Snapshot:
    """The connections to `port` and which of `pids` hold each, now."""
    live = tuple(dict.fromkeys(int(p) for p in pids))
    reader = root_pid if root_pid is not None else (live[0] if live else os.getpid())
    entries, stats, ss_error = ss_sockets(port)
    if ss_error:  # /proc/net/tcp lists every socket of the namespace: slow with many TIME_WAIT rows
        entries = tcp_entries(reader) or tcp_entries(os.getpid())
    holders = _holders(live)
    listener = [e for e in entries if e.state == "LISTEN" and e.local_port == port]
    clients = {e.local_port: e.state for e in entries if e.remote_port == port and e.state != "LISTEN"}
    conns = []
    for entry in entries:
        if entry.local_port != port or entry.state in ("LISTEN", "TIME_WAIT"):
            continue
        # ss leaves out a counter that is zero ("bytes_sent" of a connection nothing was sent on).
        counters = dict(_ZERO_COUNTERS, **stats[entry.inode]) if entry.inode in stats else {}
        conns.append(
            ServerConnection(
                client_port=entry.remote_port,
                state=entry.state,
                unread=unread_bytes(entry),
                unsent=entry.tx_queue,
                inode=entry.inode,
                holders=tuple(sorted(holders.get(entry.inode, ()))),
                client_state=clients.get(entry.remote_port),
                bytes_sent=counters.get("bytes_sent"),
                bytes_received=counters.get("bytes_received"),
                last_send_ms=counters.get("lastsnd"),
                last_receive_ms=counters.get("lastrcv"),
            )
        )
    conns.sort(key=lambda c: (c.state == "ESTABLISHED", -(c.last_receive_ms or 0)))
    return Snapshot(
        port=port,
        root_pid=root_pid,
        pids=live,
        accept_queue=listener[0].rx_queue if listener else None,
        connections=tuple(conns[:_MAX_CONNECTIONS]),
        truncated=max(0, len(conns) - _MAX_CONNECTIONS),
        errors=(ss_error,) if ss_error else (),
    )


def persisting(before: Snapshot, after: Snapshot) -> Snapshot:
    """`after`, keeping only the connections already there in `before` (same socket) with no
    change in what was unread: what did not move while the stacks were taken, seconds apart. A
    request merely queued on a slow machine is served in between; a lost one is not."""
    earlier = {c.inode: c for c in before.connections if c.inode != "0"}
    kept = tuple(
        c
        for c in after.connections
        if c.inode in earlier and earlier[c.inode].unread == c.unread and earlier[c.inode].bytes_sent == c.bytes_sent
    )
    return replace(after, connections=kept, errors=before.errors + after.errors)


# States in which the peer's FIN has arrived: the kernel counts it as one byte of the receive
# queue (rcv_nxt moves past it), so /proc's rx_queue is one more than the unread data.
_FIN_RECEIVED = ("CLOSE_WAIT", "LAST_ACK", "CLOSING")


def unread_bytes(entry: TcpEntry) -> int:
    """Data bytes received and not read by the socket's owner (the peer's FIN not counted)."""
    return max(0, entry.rx_queue - 1) if entry.state in _FIN_RECEIVED else entry.rx_queue


def _holders(pids: Tuple[int, ...]) -> Dict[str, List[int]]:
    """socket inode -> pids that have it open."""
    held: Dict[str, List[int]] = {}
    for pid in pids:
        base = "/proc/%d/fd" % pid
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink("%s/%s" % (base, name))
            except OSError:
                continue
            if target.startswith("socket:["):
                owners = held.setdefault(target[8:-1], [])
                if pid not in owners:
                    owners.append(pid)
    return held


_ZERO_COUNTERS = {"bytes_sent": 0, "bytes_received": 0}
_SS_FIELDS = re.compile(r"\b(bytes_sent|bytes_received|lastsnd|lastrcv):(\d+)")
_SS_INODE = re.compile(r"\bino:(\d+)")


def ss_sockets(port: int) -> Tuple[List[TcpEntry], Dict[str, Dict[str, int]], Optional[str]]:
    """The TCP sockets from or to `port` and, by inode, {bytes_sent, bytes_received, lastsnd,
    lastrcv}, from `ss -tie` (iproute2: the kernel filters by port, where /proc/net/tcp lists the
    whole namespace); ([], {}, why) where ss is missing or fails."""
    ss = shutil.which("ss")
    if ss is None:
        return [], {}, "ss (iproute2) not found: no per-connection byte counters"
    try:
        done = subprocess.run(
            [ss, "-tieHn", "state", "all", "( sport = :%d or dport = :%d )" % (port, port)],
            capture_output=True,
            text=True,
            timeout=_SS_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return [], {}, "ss failed: %s" % error
    if done.returncode != 0:
        return [], {}, "ss failed: %s" % (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[0]
    entries, counters = parse_ss(done.stdout)
    return entries, counters, None


def parse_ss(text: str) -> Tuple[List[TcpEntry], Dict[str, Dict[str, int]]]:
    """Parse `ss -tieHn` output: a socket's line ("ESTAB 18 0 local peer ino:N ...") followed by
    its indented details (the counters)."""
    entries: List[TcpEntry] = []
    result: Dict[str, Dict[str, int]] = {}
    current: Optional[Dict[str, int]] = None
    for line in text.splitlines():
        if line[:1].isspace():
            if current is not None:
                current.update((k, int(v)) for k, v in _SS_FIELDS.findall(line))
            continue
        entry = _ss_entry(line)
        current = None
        if entry is not None:
            entries.append(entry)
            current = result.setdefault(entry.inode, {})
            current.update((k, int(v)) for k, v in _SS_FIELDS.findall(line))
    return entries, result


def _ss_entry(line: str) -> Optional[TcpEntry]:
    cols = line.split()
    inode = _SS_INODE.search(line)
    if len(cols) < 5 or inode is None:
        return None
    try:
        rx, tx = int(cols[1]), int(cols[2])
    except ValueError:
        return None
    state = _SS_STATES.get(cols[0], cols[0].replace("-", "_"))
    local, remote = cols[3], cols[4]
    return TcpEntry(inode.group(1), "tcp", local, _ss_port(local), remote, _ss_port(remote), state, tx, rx)


def _ss_port(address: str) -> int:
    port = address.rpartition(":")[2]
    return int(port) if port.isdigit() else 0


_SS_STATES = {"ESTAB": "ESTABLISHED", "UNCONN": "CLOSE"}


def describe(conn: ServerConnection, root_pid: Optional[int]) -> str:
    """One line for the evidence: "client port 40312: server side ESTABLISHED, 78 bytes unread,
    request received 1.9 s ago, nothing sent, held by pid 1234 (the acceptor) only"."""
    parts = ["client port %d: server side %s" % (conn.client_port, conn.state)]
    if conn.client_state:
        parts.append("client side %s" % conn.client_state)
    parts.append("%d bytes unread" % conn.unread if conn.unread else "request read (0 bytes unread)")
    if conn.last_receive_ms is not None:
        parts.append("last byte received %.1f s ago" % (conn.last_receive_ms / 1000.0))
    if conn.bytes_sent is not None:
        parts.append("%d bytes sent back" % conn.bytes_sent if conn.bytes_sent else "nothing sent back")
    parts.append(held_by(conn.holders, root_pid))
    return ", ".join(parts)


def held_by(holders: Tuple[int, ...], root_pid: Optional[int]) -> str:
    if not holders:
        return "held by no process of the server (its fd in flight, or closed)"
    names = ["pid %d%s" % (pid, " (the acceptor)" if pid == root_pid else "") for pid in holders]
    only = " only; no worker holds it" if set(holders) == {root_pid} else ""
    return "held by %s%s" % (", ".join(names), only)


def as_connections(data: Dict[str, Any]) -> Tuple[ServerConnection, ...]:
    """The connections of a snapshot read back from its JSON form."""
    out = []
    for item in data.get("connections") or ():
        values = dict(item)
        values["holders"] = tuple(values.get("holders") or ())
        out.append(ServerConnection(**values))
    return tuple(out)


__all__ = [
    "ServerConnection",
    "Snapshot",
    "TcpEntry",
    "as_connections",
    "describe",
    "parse_ss",
    "persisting",
    "snapshot",
    "ss_sockets",
    "unread_bytes",
]
