"""A named cause for a case's hangs, from rules over the facts a capture gathered.

The `stuck` phrase says where the server was; a cause says *why* a request got no answer, in
the terms of docs/why-it-hangs.md. Each rule is a pure function of `Facts` returning
(cause, evidence lines) or None; `name_cause` tries them in order and the first that matches wins,
else `unknown` with what was seen. The facts come from a forensics capture (thread stacks), a
connection snapshot (`connections`: kernel TCP state joined to the processes holding each
socket), the server's log tail and the tree's exited processes, and the client's per-request
milestones when the load engine records them. The rules, in order:

* `fd-not-open-in-worker`: a worker logged EBADF or ENOTSOCK on the fd number it was given (the
  article's `socket.fromfd` fix: the number names nothing, or another file, in the worker).
* `lost-task`: a connection the client gave up on (or silent for a while) whose request is still
  unread, held by the acceptor alone while it is idle (or by no process at all: its fd is in
  flight in an SCM_RIGHTS message nobody received), more of them than threads at work, while
  some worker process waits for work: the task carrying it never reached a worker (gh-101225's
  lost task). Fewer is a queue (`overloaded`): under heavy machine load a pool's hand-off can
  stall for seconds behind one worker still importing modules.
* `worker-died`: a worker process of the tree exited during the run, and a connection whose
  request was read got not one byte back since (the server last received after it last sent) and
  is held by idle processes only.
* `fin-held`: the response was sent in full (sent after the last byte received, nothing unread,
  nothing unacked) but the server never closed: the connection sits in CLOSE_WAIT/ESTABLISHED held
  by processes that are all idle (the parent's lingering reference, section 2 of the article's
  analysis).
* `overloaded`: threads are working and requests wait behind them (the accept queue, or
  accepted connections with unread requests): slow, not a bug.

Connections that are merely in flight look like a lost task for a moment; "stale" (the client
closed, or nothing moved for `STALE_MS`) keeps them out, and so does taking the connections twice,
before and after the stacks (`connections.persisting`). Where the client recorded where its hung
requests stopped (`milestones`), a rule must agree with it: `lost-task` and `worker-died` need
hung requests that were sent and got no byte back, `fin-held` ones that got the full response.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .connections import ServerConnection, describe
from .diagnosis import thread_activity
from .dumps import ProcessDump, ThreadDump

LOST_TASK = "lost-task"
FIN_HELD = "fin-held"
FD_NOT_OPEN = "fd-not-open-in-worker"
WORKER_DIED = "worker-died"
OVERLOADED = "overloaded"
UNKNOWN = "unknown"
CAUSES = (FD_NOT_OPEN, LOST_TASK, WORKER_DIED, FIN_HELD, OVERLOADED, UNKNOWN)

REQUEST_SENT = "request sent, no byte back"  # harness.load.timeline.PHRASES, as the client says it
FULL_RESPONSE = "full response, no FIN"
STALE_MS = 1000  # a connection with no byte moving for this long is not merely in flight
_EXAMPLES = 3  # connections quoted per cause
# Worker log lines about the fd it was handed: errno 9 (EBADF) or 88 (ENOTSOCK), by name or text.
_WORKER_LINE = re.compile(r"\bworker\b.*\bfd\b", re.IGNORECASE)
_FD_ERROR = re.compile(r"Bad file descriptor|Socket operation on non-socket|\bEBADF\b|\bENOTSOCK\b")

Verdict = Tuple[str, List[str]]


@dataclass(frozen=True)
class Thread:
    """One captured thread, reduced: where it is and whether it merely waits for work."""

    pid: int
    call: str
    where: str
    idle: bool


@dataclass(frozen=True)
class Facts:
    hangs: int  # requests with no complete response by the deadline
    ok: int = 0
    connections: Tuple[ServerConnection, ...] = ()
    accept_queue: Optional[int] = None  # connections not yet accepted
    root_pid: Optional[int] = None  # the acceptor (the process the harness started)
    pids: Tuple[int, ...] = ()  # live processes of the tree at the capture
    threads: Tuple[Thread, ...] = ()  # empty: no stacks were captured
    exited: Tuple[int, ...] = ()  # processes of the tree that exited during the run
    log_lines: Tuple[str, ...] = ()  # the tail of the server's log
    milestones: Dict[str, int] = field(default_factory=dict)  # hung requests by last client milestone
    client_view: Dict[int, str] = field(default_factory=dict)  # client port -> how far its request got

    @property
    def busy_pids(self) -> Tuple[int, ...]:
        return tuple(sorted({t.pid for t in self.threads if not t.idle}))


def name_cause(facts: Facts) -> Optional[Verdict]:
    """The first rule that matches, else `unknown` with what was seen; None without a hang or
    a worker fd error (nothing to explain)."""
    for rule in RULES:
        found = rule(facts)
        if found is not None:
            return found
    if facts.hangs <= 0:
        return None
    return UNKNOWN, _seen(facts)


def fd_not_open_in_worker(facts: Facts) -> Optional[Verdict]:
    errors = [line.strip() for line in facts.log_lines if _FD_ERROR.search(line)]
    if not errors:
        return None
    # Prefer the workers' own lines ("worker 123: fd 44 from the parent ...") over the parent's
    # echo of the same failure through the pool's error callback.
    own = [line for line in errors if _WORKER_LINE.search(line)] or errors
    ebadf = sum(1 for line in own if "Bad file descriptor" in line or "EBADF" in line)
    evidence = [
        "%d of the last %d lines of the server's log: a worker could not use the fd number it was given: "
        "%d EBADF (not open in the worker), %d ENOTSOCK (another file there)"
        % (len(own), len(facts.log_lines), ebadf, len(own) - ebadf),
        "e.g. %s" % _trim(own[0]),
    ]
    return FD_NOT_OPEN, evidence


def lost_task(facts: Facts) -> Optional[Verdict]:
    idle_workers = [pid for pid in facts.pids if pid != facts.root_pid and pid not in facts.busy_pids]
    if not facts.threads or not idle_workers or not _client_saw(facts, REQUEST_SENT):
        return None
    lost = [c for c in _stale(facts) if c.unread > 0 and _held_by_idle_acceptor(c, facts)]
    # Each working thread may be handing one of them over (slowly, on a loaded machine): only
    # more of them than threads at work is a loss rather than a queue (see `overloaded`).
    busy = sum(1 for t in facts.threads if not t.idle)
    if len(lost) <= busy:
        return None
    evidence = [
        "%d connection(s) with the request unread, held by the idle acceptor alone (or by no process: an fd in "
        "flight), while %d other process(es) of the server are idle" % (len(lost), len(idle_workers))
    ]
    evidence += _examples(lost, facts)
    if facts.exited:
        evidence.append("%d process(es) of the tree exited during the run" % len(facts.exited))
    return LOST_TASK, evidence + _milestone_line(facts)


def worker_died(facts: Facts) -> Optional[Verdict]:
    if not facts.exited or not _client_saw(facts, REQUEST_SENT):
        return None
    dropped = [c for c in _stale(facts) if c.unread == 0 and _unanswered(c) and _held_by_idle(c, facts)]
    if not dropped:
        return None
    evidence = [
        "%d process(es) of the tree exited during the run (pids %s)"
        % (len(facts.exited), ", ".join(str(p) for p in facts.exited[:5])),
        "%d connection(s) whose request was read got no byte back, held by idle processes only" % len(dropped),
    ]
    evidence += _examples(dropped, facts)
    return WORKER_DIED, evidence + _milestone_line(facts)


def fin_held(facts: Facts) -> Optional[Verdict]:
    held = [
        c
        for c in _stale(facts)
        if c.unread == 0
        and _answered(c)
        and c.unsent == 0
        and c.state in ("ESTABLISHED", "CLOSE_WAIT")
        and _held_by_idle(c, facts)
    ]
    if not held or not facts.threads or not _client_saw(facts, FULL_RESPONSE):
        return None
    evidence = [
        "%d connection(s) with the response sent in full and no FIN: the server never closed them, and every "
        "process holding them is idle" % len(held)
    ]
    evidence += _examples(held, facts)
    return FIN_HELD, evidence + _milestone_line(facts)


def overloaded(facts: Facts) -> Optional[Verdict]:
    busy = [t for t in facts.threads if not t.idle]
    unread = [c for c in facts.connections if c.unread > 0 and c.state in ("ESTABLISHED", "CLOSE_WAIT")]
    waiting = (facts.accept_queue or 0) + len(unread)
    if not busy or not waiting:
        return None
    (call, where), count = Counter((t.call, t.where) for t in busy).most_common(1)[0]
    evidence = [
        "%d/%d threads working, %d of them %s%s"
        % (
            len(busy),
            len(facts.threads),
            count,
            "running" if call == "running" else "in " + call,
            " (%s)" % where if where else "",
        ),
        "%d request(s) waiting behind them: %d in the accept queue, %d accepted with the request unread"
        % (waiting, facts.accept_queue or 0, len(unread)),
        "%d request(s) were answered meanwhile" % facts.ok,
    ]
    return OVERLOADED, evidence


RULES: Sequence[Callable[[Facts], Optional[Verdict]]] = (
    fd_not_open_in_worker,
    lost_task,
    worker_died,
    fin_held,
    overloaded,
)


def _examples(conns: List[ServerConnection], facts: Facts) -> List[str]:
    """The first few, those the client kept a timeline for first (both views of one connection)."""
    ordered = sorted(conns, key=lambda c: c.client_port not in facts.client_view)
    return [_describe(c, facts) for c in ordered[:_EXAMPLES]]


def _describe(conn: ServerConnection, facts: Facts) -> str:
    """The server's view of a connection, and the client's where its timeline was kept."""
    client = facts.client_view.get(conn.client_port)
    return describe(conn, facts.root_pid) + ("; the client's view: %s" % client if client else "")


def _stale(facts: Facts) -> List[ServerConnection]:
    """Accepted connections that are not merely in flight: the client closed its end (CLOSE_WAIT
    on the server's side), or nothing was received for STALE_MS."""
    return [
        c
        for c in facts.connections
        if c.inode != "0"
        and (c.state == "CLOSE_WAIT" or (c.last_receive_ms is not None and c.last_receive_ms >= STALE_MS))
    ]


def _client_saw(facts: Facts, phrase: str) -> bool:
    """Some hung request's last client milestone was `phrase`, or the client recorded none (an
    engine without timelines): the server-side facts must not contradict the client's."""
    return not facts.milestones or facts.milestones.get(phrase, 0) > 0


def _answered(conn: ServerConnection) -> bool:
    """The server sent bytes after the last bytes it received: the last request was answered."""
    if not conn.bytes_sent:
        return False
    return conn.last_send_ms is None or conn.last_receive_ms is None or conn.last_send_ms <= conn.last_receive_ms


def _unanswered(conn: ServerConnection) -> bool:
    """Known to have got no byte back since its last request (not merely unknown)."""
    if conn.bytes_sent is None:
        return False
    if conn.bytes_sent == 0:
        return True
    return (
        conn.last_send_ms is not None and conn.last_receive_ms is not None and conn.last_send_ms > conn.last_receive_ms
    )


def _held_by_idle(conn: ServerConnection, facts: Facts) -> bool:
    return bool(conn.holders) and not set(conn.holders) & set(facts.busy_pids)


def _held_by_idle_acceptor(conn: ServerConnection, facts: Facts) -> bool:
    """Held by the idle acceptor alone, or by no process at all: an fd in flight in an SCM_RIGHTS
    message that no worker received is held by the kernel only."""
    if not conn.holders:
        return True
    return facts.root_pid is not None and set(conn.holders) == {facts.root_pid} and _held_by_idle(conn, facts)


def _milestone_line(facts: Facts) -> List[str]:
    if not facts.milestones:
        return []
    parts = ", ".join("%d %s" % (n, m) for m, n in sorted(facts.milestones.items(), key=lambda kv: -kv[1]))
    return ["client side, hung requests by the last milestone reached: %s" % parts]


def _seen(facts: Facts) -> List[str]:
    states = Counter(c.state for c in facts.connections)
    seen = [
        "%d hang(s); no rule matched" % facts.hangs,
        "server connections: %s; accept queue %s"
        % (
            ", ".join("%d %s" % (n, s) for s, n in states.most_common()) or "none",
            "unknown" if facts.accept_queue is None else facts.accept_queue,
        ),
        "threads: %s"
        % (
            "%d/%d working" % (len(facts.threads) - sum(t.idle for t in facts.threads), len(facts.threads))
            if facts.threads
            else "no stacks captured"
        ),
    ]
    if not facts.connections:
        seen.append(
            "no connection to the server stayed unchanged while the stacks were taken: what hung was answered "
            "late or closed (a slow server rather than a stuck one)"
        )
    if facts.exited:
        seen.append("%d process(es) of the tree exited during the run" % len(facts.exited))
    return seen + _milestone_line(facts)


def _trim(line: str, limit: int = 200) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def threads_from(processes: Sequence[ProcessDump]) -> Tuple[Thread, ...]:
    """The captured threads of a forensics capture's processes, reduced for the rules. A worker
    still starting (a spawned interpreter importing its modules, before its task loop) or exiting
    counts as idle: it serves nothing, and a pool that loses workers keeps starting new ones."""
    stacks = [thread for dump in processes for thread in dump.threads]
    return tuple(
        Thread(pid, call, where, idle or is_starting(stack))
        for (pid, call, where, idle), stack in zip(thread_activity(processes), stacks, strict=True)
    )


def is_starting(thread: ThreadDump) -> bool:
    """In multiprocessing's start-up of a spawned/forkserver child, not yet in its target; or
    running no Python code at all (native frames only: an interpreter starting or exiting)."""
    if thread.frames and all(frame.native for frame in thread.frames):
        return True
    names = {
        (frame.filename.replace("\\", "/").rsplit("/", 1)[-1], frame.function.rsplit(".", 1)[-1])
        for frame in thread.frames
    }
    started = ("process.py", "_bootstrap") in names
    return not started and bool(names & {("spawn.py", "spawn_main"), ("spawn.py", "_main"), ("forkserver.py", "main")})
