"""Signals to the harness itself: whatever ends it, no process of its run may outlive it.

SIGHUP (the terminal closed) and SIGQUIT (Ctrl-\\) are handled like Ctrl-C: the server tree is
stopped and partial results are saved. SIGKILL cannot be handled: the server's watchdog sees its
pipe from the harness close and ends the tree by itself. In every case, 10 s later no process
carrying the run's marker is alive and the server's port is closed.

These run `python -m harness` as a user would (see test_run.py for the helpers) and are slow.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Set

import psutil
import pytest
from misbehaving._launch import wait_for
from test_run import Running, is_measure_line, load_json, marked

from harness.supervise.cleanup import cleanup_main, find_leftovers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc"),
]

GONE_WITHIN_S = 10.0
ARGS = ("--strategy", "threads", "-d", "30", "--warmup", "0.3", "--concurrency", "4")


def listening_ports(procs: List[psutil.Process]) -> Set[int]:
    ports = set()
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    ports.add(conn.laddr.port)
        except psutil.Error:
            continue
    return ports


def port_closed(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def start_measuring(tmp_path: Path) -> Running:
    run = Running([*ARGS, "--output", str(tmp_path / "out.json")], tmp_path)
    run.wait_for_line(is_measure_line, 60)
    return run


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
def test_hangup_or_quit_stops_the_tree_like_sigterm(signum: int, tmp_path: Path) -> None:
    run = start_measuring(tmp_path)
    try:
        servers = [p for p in marked(run.token) if p.pid != run.proc.pid]
        ports = listening_ports(servers)
        assert servers and ports, "a server of this run listens"
        run.interrupt(signum)
        code = run.wait(30)
        assert wait_for(lambda: marked(run.token) == [], GONE_WITHIN_S), marked(run.token)
    finally:
        run.close()
    assert code == 128 + signum, run.stderr
    assert "interrupted by %s" % signal.Signals(signum).name in run.stderr
    assert "Traceback" not in run.stderr
    assert all(port_closed(port) for port in ports)
    data = load_json(tmp_path / "out.json")
    assert data["partial"] is True and data["strategies"][0]["status"] == "interrupted"


def test_sigkill_of_the_harness_is_noticed_by_the_server_watchdog(tmp_path: Path) -> None:
    run = start_measuring(tmp_path)
    try:
        servers = [p for p in marked(run.token) if p.pid != run.proc.pid]
        ports = listening_ports(servers)
        assert servers and ports, "a server of this run listens"
        run.interrupt(signal.SIGKILL)
        assert run.wait(10) == -signal.SIGKILL
        started = time.monotonic()
        gone = wait_for(lambda: marked(run.token) == [], GONE_WITHIN_S)
        took = time.monotonic() - started
        left = marked(run.token)
    finally:
        run.close()
    assert gone, "still alive %.1f s after the harness died: %s" % (took, left)
    # Bounded retry: a probe from an ephemeral port can, rarely, connect to itself when the
    # closed port is in the ephemeral range too; a listener that is really left keeps failing.
    closed = wait_for(lambda: all(port_closed(port) for port in ports), 5.0)
    assert closed, "still accepting: %s" % [port for port in ports if not port_closed(port)]
    assert [item for item in find_leftovers() if item.pid in {p.pid for p in servers}] == []


def test_cleanup_finds_and_kills_a_dead_runs_leftover(tmp_path: Path) -> None:
    """A process with the markers of a harness that no longer exists (a pid that cannot be
    running with that start time) is listed, left alone without --kill, and killed with it."""
    env = {"HANGBENCH_RUN_ID": "cleanuptest", "HANGBENCH_HARNESS": "1:0", "PATH": "/usr/bin:/bin"}
    code = "import time\nfor _ in range(120):\n    time.sleep(0.5)\n"
    orphan = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        assert wait_for(lambda: [i.pid for i in find_leftovers("cleanuptest")] == [orphan.pid], 10)
        assert cleanup_main(kill=False, only_run="cleanuptest") == 1
        assert orphan.poll() is None, "listing does not kill"
        assert cleanup_main(kill=True, only_run="cleanuptest") == 0
        assert orphan.wait(10) == -signal.SIGKILL
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(10)
