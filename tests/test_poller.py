"""The reactor's pollers, on socketpairs: a connection is reported once per arm, re-armed from
any thread, disarmed and forgotten for good; listeners stay level-triggered. Each test runs
against the epoll poller (where there is one) and the portable `selectors` one.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Iterator, List, Tuple

import pytest

from harness.server.connection import send_parts_now
from harness.server.poller import EpollPoller, Poller, SelectorPoller, Waiter, make_poller

TIMEOUT_S = 10.0
SHORT_S = 0.05  # a poll that is expected to return nothing waits this long
KINDS = ["epoll", "portable"] if hasattr(select, "epoll") else ["portable"]


@pytest.fixture(params=KINDS)
def poller(request: pytest.FixtureRequest) -> Iterator[Poller]:
    made = make_poller(portable=request.param == "portable")
    assert isinstance(made, EpollPoller if request.param == "epoll" else SelectorPoller)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def pair() -> Iterator[Tuple[Waiter, socket.socket]]:
    """A connection as the reactor holds it (non-blocking) and the client's end."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(TIMEOUT_S)
    with ours, theirs:
        yield Waiter(ours), theirs


def poll_until(poller: Poller, count: int = 1) -> List[object]:
    """What `count` polls return (each bounded), flattened; the first must not be empty."""
    ready: List[object] = []
    for _ in range(count):
        ready += poller.poll(TIMEOUT_S if not ready else SHORT_S)
    return ready


def rearm_from_another_thread(poller: Poller, conn: Waiter) -> None:
    thread = threading.Thread(target=poller.arm, args=(conn,))
    thread.start()
    thread.join(TIMEOUT_S)


def test_an_armed_connection_is_reported_once_until_armed_again(
    poller: Poller, pair: Tuple[Waiter, socket.socket]
) -> None:
    conn, client = pair
    assert poller.arm(conn, in_selector_thread=True) and conn.waiting
    assert poller.poll(SHORT_S) == []
    client.sendall(b"x")
    assert poll_until(poller) == [conn]
    assert not conn.waiting
    client.sendall(b"y")  # more bytes, unread: not reported while nobody has re-armed it
    assert poller.poll(SHORT_S) == []
    rearm_from_another_thread(poller, conn)
    assert [d for d in poll_until(poller, 2) if d is conn] == [conn]  # the portable one first re-registers
    assert conn.sock.recv(10) == b"xy"


def test_a_disarmed_connection_is_never_reported(poller: Poller, pair: Tuple[Waiter, socket.socket]) -> None:
    conn, client = pair
    poller.arm(conn, in_selector_thread=True)
    with conn.lock:
        poller.disarm(conn)
    assert not conn.waiting and not conn.registered
    client.sendall(b"x")
    assert poller.poll(SHORT_S) == []
    poller.forget(conn)  # again, as closing does: harmless


def test_a_connection_forgotten_while_unarmed_is_out_of_the_poller(
    poller: Poller, pair: Tuple[Waiter, socket.socket]
) -> None:
    conn, client = pair
    poller.arm(conn, in_selector_thread=True)
    client.sendall(b"x")
    assert poll_until(poller) == [conn]
    poller.forget(conn)  # a pool thread closing it
    assert not conn.registered
    client.sendall(b"y")
    assert poller.poll(SHORT_S) == []


def test_a_watched_fd_is_reported_while_readable_and_wake_returns_nothing(poller: Poller) -> None:
    r, w = socket.socketpair()
    with r, w:
        poller.add(r.fileno(), "source")
        w.sendall(b"x")
        assert poll_until(poller) == ["source"]
        assert poller.poll(SHORT_S) == ["source"]  # level-triggered: still readable
        poller.remove(r.fileno())
        assert poller.poll(SHORT_S) == []
    poller.wake()
    assert poller.poll(TIMEOUT_S) == []  # woken, nothing to report
    assert poller.poll(SHORT_S) == []  # and the wake-up was drained


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="no epoll here")
def test_arming_after_the_epoll_poller_closed_says_so() -> None:
    poller = EpollPoller()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        poller.close()
        conn = Waiter(ours)
        assert not poller.arm(conn)  # the pool thread then closes the connection
        assert not conn.waiting


# --------------------------------------------------------------------------- send_parts_now


def test_send_parts_now_sends_a_response_larger_than_the_buffers_and_leaves_the_socket_non_blocking() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        theirs.settimeout(TIMEOUT_S)
        body = bytes(range(256)) * (4 * 4096)  # 4 MiB: far past what one send takes
        received = bytearray()

        def read() -> None:
            while len(received) < 5 + len(body):  # bounded by the socket timeout
                chunk = theirs.recv(1 << 16)
                if not chunk:
                    return
                received.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        send_parts_now(ours, (b"head:", body), TIMEOUT_S)
        reader.join(TIMEOUT_S)
        assert bytes(received) == b"head:" + body
        assert ours.gettimeout() == 0.0
        send_parts_now(ours, (b"small:", b"body"), TIMEOUT_S)  # one send, nothing waits
        assert theirs.recv(100) == b"small:body"
