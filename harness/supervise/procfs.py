"""Readers of the kernel's view of a process: /proc stat, tasks, wait channels, system calls,
fds, and the TCP/unix socket tables that turn a socket fd into addresses and a state.

They need no cooperation from the process (unlike a stack dump), so they work on a server that
is stuck in C code or stopped. Every reader returns an empty or None value when the process is
gone or /proc is absent (off Linux), never raises.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .dumps import FdInfo, TaskInfo


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def environ(pid: int) -> Dict[str, str]:
    pairs = (item.partition("=") for item in read_text("/proc/%d/environ" % pid).split("\0") if item)
    return {key: value for key, _, value in pairs}


def cmdline(pid: int) -> str:
    return " ".join(read_text("/proc/%d/cmdline" % pid).split("\0")).strip()


def _stat_fields(path: str) -> Tuple[str, List[str]]:
    """(comm, fields after comm) of a /proc stat file; ("", []) if unreadable."""
    raw = read_text(path)
    if ")" not in raw:
        return "", []
    return raw[raw.find("(") + 1 : raw.rfind(")")], raw[raw.rfind(")") + 2 :].split()


def proc_state(pid: int) -> Tuple[Optional[str], Optional[str]]:
    _, fields = _stat_fields("/proc/%d/stat" % pid)
    return (fields[0] if fields else None), _wchan("/proc/%d/wchan" % pid)


def is_zombie(pid: int) -> bool:
    return proc_state(pid)[0] == "Z"


def _wchan(path: str) -> Optional[str]:
    value = read_text(path).strip()
    return value if value and value != "0" else None


def tasks(pid: int) -> Tuple[TaskInfo, ...]:
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid) if t.isdigit())
    except OSError:
        return ()
    tasks = []
    for tid in tids:
        base = "/proc/%d/task/%d" % (pid, tid)
        comm, fields = _stat_fields(base + "/stat")
        if fields:
            tasks.append(
                TaskInfo(
                    tid=tid,
                    comm=comm,
                    state=fields[0],
                    wchan=_wchan(base + "/wchan"),
                    syscall=_syscall(base + "/syscall"),
                )
            )
    return tuple(tasks)


def _syscall(path: str) -> Optional[str]:
    first = read_text(path).split(" ", 1)[0].strip()
    if first == "running":
        return "running"
    if not first or first.startswith("-"):
        return None  # unreadable, or blocked outside a system call
    try:
        number = int(first)
    except ValueError:
        return None
    return _SYSCALLS.get(platform.machine(), {}).get(number, "syscall %d" % number)


class SocketTables:
    """Socket tables by network namespace, read once per capture: /proc/PID/net/tcp can hold
    tens of thousands of TIME_WAIT rows after a connection-per-request run, and every process
    of a server tree shares one namespace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: Dict[str, Dict[str, str]] = {}

    def get(self, pid: int) -> Dict[str, str]:
        try:
            namespace = os.readlink("/proc/%d/ns/net" % pid)
        except OSError:
            namespace = "pid:%d" % pid
        with self._lock:  # one reader per namespace; the others wait for its table
            if namespace not in self._tables:
                self._tables[namespace] = _socket_table(pid)
            return self._tables[namespace]


def fds(pid: int, tables: Optional[SocketTables] = None) -> Tuple[FdInfo, ...]:
    base = "/proc/%d/fd" % pid
    try:
        names = sorted(int(n) for n in os.listdir(base) if n.isdigit())
    except OSError:
        return ()
    sockets = (tables or SocketTables()).get(pid)
    fds = []
    for fd in names:
        try:
            target = os.readlink("%s/%d" % (base, fd))
        except OSError:
            continue
        inode = target[8:-1] if target.startswith("socket:[") else None
        fds.append(FdInfo(fd=fd, target=target, detail=sockets.get(inode) if inode else None))
    return tuple(fds)


_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


@dataclass(frozen=True)
class TcpEntry:
    """One row of /proc/PID/net/tcp{,6}: a TCP socket in the process's network namespace."""

    inode: str  # "0" for a connection still in a listener's accept queue (not accepted yet)
    kind: str  # "tcp" or "tcp6"
    local: str  # "127.0.0.1:8080"
    local_port: int
    remote: str
    remote_port: int
    state: str  # "ESTABLISHED", "LISTEN", ...
    # Bytes queued: unsent/unacked (tx) and received but not read by the application (rx). For a
    # LISTEN socket rx is the length of its accept queue.
    tx_queue: int = 0
    rx_queue: int = 0


def tcp_entries(pid: int) -> List[TcpEntry]:
    """The TCP sockets of `pid`'s network namespace (empty off Linux)."""
    entries = []
    for kind, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in read_text("/proc/%d/net/%s" % (pid, kind)).splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9:
                local, remote = _hex_addr(cols[1], family), _hex_addr(cols[2], family)
                entries.append(
                    TcpEntry(
                        cols[9],
                        kind,
                        local,
                        _port(cols[1]),
                        remote,
                        _port(cols[2]),
                        _TCP_STATES.get(cols[3], cols[3]),
                        *_queues(cols[4]),
                    )
                )
    return entries


def _queues(text: str) -> Tuple[int, int]:
    """(tx, rx) from the "tx_queue:rx_queue" column, both hex."""
    tx, _, rx = text.partition(":")
    try:
        return int(tx, 16), int(rx, 16)
    except ValueError:
        return 0, 0


def _port(hex_addr: str) -> int:
    try:
        return int(hex_addr.rpartition(":")[2], 16)
    except ValueError:
        return -1


def _socket_table(pid: int) -> Dict[str, str]:
    """inode -> "tcp local <- remote STATE" / "unix path" for the process's network namespace."""
    table = {e.inode: "%s %s <- %s %s" % (e.kind, e.local, e.remote, e.state) for e in tcp_entries(pid)}
    for line in read_text("/proc/%d/net/unix" % pid).splitlines()[1:]:
        cols = line.split()
        if len(cols) > 6:
            table[cols[6]] = "unix %s" % (cols[7] if len(cols) > 7 else "(unnamed)")
    return table


def _hex_addr(text: str, family: int) -> str:
    """Decode /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080"."""
    host_hex, _, port_hex = text.partition(":")
    try:
        raw = bytes.fromhex(host_hex)
        # Each 32-bit word is in host (little-endian on x86/arm) byte order.
        if sys.byteorder == "little":
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        return "%s:%d" % (socket.inet_ntop(family, raw), int(port_hex, 16))
    except (ValueError, OSError):
        return text


# Blocking system calls worth naming; others are shown as "syscall N".
_SYSCALLS: Dict[str, Dict[int, str]] = {
    "x86_64": {
        0: "read",
        1: "write",
        3: "close",
        7: "poll",
        19: "readv",
        20: "writev",
        23: "select",
        24: "sched_yield",
        34: "pause",
        35: "nanosleep",
        40: "sendfile",
        42: "connect",
        43: "accept",
        44: "sendto",
        45: "recvfrom",
        46: "sendmsg",
        47: "recvmsg",
        61: "wait4",
        65: "semop",
        70: "msgrcv",
        72: "fcntl",
        73: "flock",
        74: "fsync",
        128: "rt_sigtimedwait",
        130: "rt_sigsuspend",
        202: "futex",
        219: "restart_syscall",
        220: "semtimedop",
        230: "clock_nanosleep",
        232: "epoll_wait",
        247: "waitid",
        257: "openat",
        270: "pselect6",
        271: "ppoll",
        281: "epoll_pwait",
        288: "accept4",
        299: "recvmmsg",
        307: "sendmmsg",
        426: "io_uring_enter",
        441: "epoll_pwait2",
        449: "futex_waitv",
    },
    "aarch64": {
        22: "epoll_pwait",
        32: "flock",
        56: "openat",
        57: "close",
        63: "read",
        64: "write",
        65: "readv",
        66: "writev",
        72: "pselect6",
        73: "ppoll",
        82: "fsync",
        95: "waitid",
        98: "futex",
        101: "nanosleep",
        115: "clock_nanosleep",
        124: "sched_yield",
        128: "restart_syscall",
        133: "rt_sigsuspend",
        137: "rt_sigtimedwait",
        188: "msgrcv",
        192: "semtimedop",
        193: "semop",
        202: "accept",
        203: "connect",
        206: "sendto",
        207: "recvfrom",
        211: "sendmsg",
        212: "recvmsg",
        242: "accept4",
        243: "recvmmsg",
        260: "wait4",
        269: "sendmmsg",
        426: "io_uring_enter",
        441: "epoll_pwait2",
        449: "futex_waitv",
    },
}
