"""The hang causes (harness.supervise.causes) on fixed facts, and the connection snapshot they
read (harness.supervise.connections) on real loopback sockets."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace

import pytest

from harness.supervise import causes
from harness.supervise.causes import Facts, Thread, name_cause
from harness.supervise.connections import ServerConnection, describe, parse_ss, snapshot, unread_bytes
from harness.supervise.procfs import TcpEntry

ROOT, WORKER_A, WORKER_B = 100, 101, 102
IDLE = (Thread(ROOT, "accept", "socket.py:294", True), Thread(WORKER_A, "queue.get", "pool.py:114", True))


def conn(**values: object) -> ServerConnection:
    base = dict(
        client_port=40312,
        state="CLOSE_WAIT",
        unread=0,
        unsent=0,
        inode="77",
        holders=(ROOT,),
        client_state="FIN_WAIT2",
        bytes_sent=0,
        bytes_received=116,
        last_send_ms=None,
        last_receive_ms=2500,
    )
    base.update(values)
    return ServerConnection(**base)  # type: ignore[arg-type]


def facts(*connections: ServerConnection, **values: object) -> Facts:
    base: dict = dict(hangs=3, ok=10, connections=connections, accept_queue=0, root_pid=ROOT)
    base.update(pids=(ROOT, WORKER_A, WORKER_B), threads=IDLE)
    base.update(values)
    return Facts(**base)


def test_lost_task_request_unread_held_by_idle_acceptor_alone() -> None:
    found = name_cause(facts(conn(unread=116)))
    assert found is not None and found[0] == causes.LOST_TASK
    assert "client port 40312" in found[1][1] and "116 bytes unread" in found[1][1]
    assert "no worker holds it" in found[1][1]


def test_lost_task_not_when_a_worker_holds_it_or_the_acceptor_works() -> None:
    assert causes.lost_task(facts(conn(unread=116, holders=(ROOT, WORKER_A)))) is None
    busy_root = (Thread(ROOT, "sleep", "app.py:128", False), IDLE[1])
    assert causes.lost_task(facts(conn(unread=116), threads=busy_root)) is None


def test_lost_task_not_for_a_connection_merely_in_flight() -> None:
    fresh = conn(unread=116, state="ESTABLISHED", client_state="ESTABLISHED", last_receive_ms=3)
    assert causes.lost_task(facts(fresh)) is None


def test_lost_task_not_while_any_thread_works() -> None:
    importing = (*IDLE, Thread(WORKER_B, "futex", "base.py:28", False))
    found = name_cause(facts(conn(unread=116), threads=importing))
    assert found is not None and found[0] == causes.OVERLOADED


def test_lost_task_needs_stacks_and_an_idle_worker() -> None:
    assert causes.lost_task(facts(conn(unread=116), threads=())) is None
    every_worker_busy = (
        *IDLE[:1],
        Thread(WORKER_A, "sleep", "x.py:1", False),
        Thread(WORKER_B, "sleep", "x.py:1", False),
    )
    assert causes.lost_task(facts(conn(unread=116), threads=every_worker_busy)) is None


def test_fin_held_response_sent_after_the_request_and_no_fin() -> None:
    held = conn(bytes_sent=204, last_send_ms=2400, last_receive_ms=2410)
    found = name_cause(facts(held))
    assert found is not None and found[0] == causes.FIN_HELD
    assert "204 bytes sent back" in found[1][1]


def test_fin_held_not_once_the_server_closed() -> None:
    closed = conn(state="LAST_ACK", bytes_sent=204, last_send_ms=2400, last_receive_ms=2410)
    assert causes.fin_held(facts(closed)) is None


def test_worker_died_request_read_nothing_back_and_a_process_exited() -> None:
    dropped = conn(holders=(ROOT, WORKER_A))
    found = name_cause(facts(dropped, exited=(555,)))
    assert found is not None and found[0] == causes.WORKER_DIED
    assert "555" in found[1][0]
    assert name_cause(facts(dropped))[0] == causes.UNKNOWN  # type: ignore[index]


def test_worker_died_counts_a_keep_alive_connection_whose_last_request_got_nothing() -> None:
    # Earlier responses on the connection, then a request received after the last send.
    later = conn(bytes_sent=408, last_send_ms=3000, last_receive_ms=2990)
    found = name_cause(facts(later, exited=(555,)))
    assert found is not None and found[0] == causes.WORKER_DIED


def test_fd_not_open_in_worker_from_the_log_wins_over_the_rest() -> None:
    lines = (
        "03:40:48 | WARNING | pid 25172 | worker 25172: fd 44 from the parent names nothing here: "
        "[Errno 9] Bad file descriptor",
        "03:40:48 | WARNING | pid 25173 | worker 25173: fd 41 ... [Errno 88] Socket operation on non-socket",
        "03:40:48 | WARNING | pid 25170 | pool task failed: OSError: [Errno 9] Bad file descriptor",
        "an unrelated line",
    )
    found = name_cause(facts(conn(unread=116), log_lines=lines))
    assert found is not None and found[0] == causes.FD_NOT_OPEN
    assert "1 EBADF" in found[1][0] and "1 ENOTSOCK" in found[1][0]  # the parent's echo is not counted again
    assert found[1][1].startswith("e.g. 03:40:48 | WARNING | pid 25172 | worker 25172: fd 44")


def test_overloaded_requests_wait_behind_busy_threads() -> None:
    busy = (
        Thread(ROOT, "select", "reactor.py:1", True),
        Thread(ROOT, "sleep", "app.py:128", False),
        Thread(ROOT, "sleep", "app.py:128", False),
    )
    waiting = [conn(client_port=40000 + i, unread=116) for i in range(5)]
    found = name_cause(facts(*waiting, pids=(ROOT,), threads=busy, accept_queue=3))
    assert found is not None and found[0] == causes.OVERLOADED
    assert "2/3 threads working" in found[1][0] and "in sleep (app.py:128)" in found[1][0]
    assert "8 request(s) waiting" in found[1][1]


def test_unknown_says_what_was_seen_and_nothing_without_a_hang() -> None:
    found = name_cause(facts(conn(state="ESTABLISHED", last_receive_ms=5)))
    assert found is not None and found[0] == causes.UNKNOWN
    assert "1 ESTABLISHED" in found[1][1]
    assert name_cause(facts(hangs=0)) is None


def test_milestones_are_quoted_in_the_evidence() -> None:
    found = name_cause(facts(conn(unread=116), milestones={"request written": 7}))
    assert found is not None and found[1][-1].endswith("7 request written")


def test_unread_bytes_leaves_out_the_peers_fin() -> None:
    entry = TcpEntry("1", "tcp", "a", 1, "b", 2, "CLOSE_WAIT", 0, 117)
    assert unread_bytes(entry) == 116
    assert unread_bytes(replace(entry, state="ESTABLISHED")) == 117
    assert unread_bytes(replace(entry, rx_queue=1)) == 0


def test_parse_ss_reads_sockets_and_counters_by_inode() -> None:
    text = (
        "ESTAB 18 0 127.0.0.1:40419 127.0.0.1:42656 ino:4384162 sk:3 cgroup:/ <->\n"
        "\t ts sack cubic bytes_sent:100 bytes_acked:100 bytes_received:18 lastsnd:160 lastrcv:150 lastack:160\n"
        "LISTEN 0 128 127.0.0.1:40419 0.0.0.0:* ino:4384160 sk:1 <->\n"
        "\t cubic cwnd:10\n"
    )
    entries, parsed = parse_ss(text)
    assert parsed["4384162"] == {"bytes_sent": 100, "bytes_received": 18, "lastsnd": 160, "lastrcv": 150}
    assert parsed["4384160"] == {}
    assert entries == [
        TcpEntry("4384162", "tcp", "127.0.0.1:40419", 40419, "127.0.0.1:42656", 42656, "ESTABLISHED", 0, 18),
        TcpEntry("4384160", "tcp", "127.0.0.1:40419", 40419, "0.0.0.0:*", 0, "LISTEN", 128, 0),
    ]


def test_describe_names_the_acceptor_and_the_missing_worker() -> None:
    line = describe(conn(unread=116), ROOT)
    assert line.startswith("client port 40312: server side CLOSE_WAIT, client side FIN_WAIT2, 116 bytes unread")
    assert "nothing sent back" in line and "held by pid 100 (the acceptor) only; no worker holds it" in line


@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="needs Linux /proc")
def test_snapshot_joins_the_kernel_table_to_the_holding_process() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as client,
            socket.create_connection(("127.0.0.1", port), timeout=5) as queued,
        ):
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            server_side, _ = listener.accept()
            with server_side:
                for _ in range(50):  # the request reaches the server's receive queue within a moment
                    taken = snapshot(port, [os.getpid()], os.getpid())
                    mine = [c for c in taken.connections if c.client_port == client.getsockname()[1]]
                    if mine and mine[0].unread:
                        break
                    time.sleep(0.02)
                assert mine[0].unread == len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert mine[0].holders == (os.getpid(),) and mine[0].client_state == "ESTABLISHED"
                assert taken.accept_queue == 1  # `queued` was never accepted
                waiting = [c for c in taken.connections if c.client_port == queued.getsockname()[1]]
                assert waiting and waiting[0].holders == ()


def test_lost_task_with_the_fd_in_flight_held_by_no_process() -> None:
    found = name_cause(facts(conn(unread=116, holders=())))
    assert found is not None and found[0] == causes.LOST_TASK
    assert "held by no process of the server" in found[1][1]


def test_the_table_note_and_compare_show_the_cause() -> None:
    from harness.results.analysis import analysed
    from harness.results.compare import compare_runs
    from harness.results.records import RunRecord, StrategyRecord
    from harness.results.table import notes

    hung = StrategyRecord(
        "pool-socket",
        "completed",
        requests={"ok": 100, "hang": 14},
        hang_rate=0.12,
        cause="lost-task",
        hang_milestones={"request sent, no byte back": 14},
    )
    assert "cause: lost-task (hung: 14 request sent, no byte back)" in notes(hung)
    fixed = StrategyRecord("pool-socket", "completed", requests={"ok": 114, "hang": 0})
    config = {"workloads": {"hello": "cpu 0 µs"}, "deadline_s": 2.0}
    before, after = (analysed(RunRecord("20261130T000000Z", "x", {}, config, [r])) for r in (hung, fixed))
    row = next(line for line in compare_runs(before, after).splitlines() if line.startswith("pool-socket"))
    assert "14 (12.3%) lost-task -> 0" in row


def test_a_worker_starting_or_exiting_serves_nothing() -> None:
    from harness.supervise.causes import is_starting
    from harness.supervise.dumps import Frame, ThreadDump

    spawn = (Frame("spawn_main", "/usr/lib/python3.12/multiprocessing/spawn.py", 122),)
    importing = ThreadDump(1, "MainThread", (Frame("_find_and_load", "<frozen importlib._bootstrap>", 1), *spawn))
    serving = ThreadDump(
        1, "MainThread", (Frame("_bootstrap", "/usr/lib/python3.12/multiprocessing/process.py", 314), *spawn)
    )
    exiting = ThreadDump(1, "MainThread", (Frame("gc_collect_main", "libpython3.12.so", 0, native=True),))
    assert is_starting(importing) and is_starting(exiting)
    assert not is_starting(serving)


def test_evidence_joins_the_clients_view_of_the_same_connection_by_port() -> None:
    other, joined = conn(client_port=40000, unread=116), conn(client_port=40312, unread=116)
    view = {40312: "hang: request sent, no byte back (request_written at 0.1 ms)"}
    found = name_cause(facts(other, joined, client_view=view))
    assert found is not None and found[0] == causes.LOST_TASK
    assert found[1][1].startswith("client port 40312:")  # the joined connection is quoted first
    assert found[1][1].endswith("; the client's view: hang: request sent, no byte back (request_written at 0.1 ms)")
