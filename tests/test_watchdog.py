"""harness.server.watchdog: a server whose harness is gone (its pipe closed) ends its whole tree.

Servers here are started by hand, as the supervisor would, with the read end of a pipe; closing
the write end plays the harness's death (SIGKILL closes it the same way). A forked worker holds
a copy of the read end, which must not matter, and the server's whole tree must go.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Iterator, List, Tuple

import psutil
import pytest
from misbehaving._launch import REPO, wait_for

from harness.server import watchdog

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")]


@pytest.fixture
def servers() -> Iterator[List[subprocess.Popen]]:
    started: List[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def start(servers: List[subprocess.Popen], strategy: str, *args: str) -> Tuple[subprocess.Popen, int]:
    read_end, write_end = os.pipe()
    env = dict(os.environ, **{watchdog.WATCHDOG_FD_ENV: str(read_end)})
    argv = [sys.executable, "-m", "harness.server", "--strategy", strategy, "--port", "0", "--log-level", "WARNING"]
    proc = subprocess.Popen(
        [*argv, *args],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        pass_fds=(read_end,),
        start_new_session=True,
    )
    servers.append(proc)
    os.close(read_end)
    assert proc.stdout is not None and json.loads(proc.stdout.readline())["event"] == "listening"
    return proc, write_end


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy, args", [("threads", ()), ("pool-socket", ("--workers", "3", "--start-method", "fork"))]
)
def test_closing_the_pipe_ends_the_whole_tree(servers: List[subprocess.Popen], strategy: str, args: tuple) -> None:
    proc, write_end = start(servers, strategy, *args)
    want = 1 + (3 if args else 0)
    assert wait_for(lambda: len(psutil.Process(proc.pid).children(recursive=True)) + 1 >= want, 10)
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert proc.poll() is None
    os.close(write_end)  # the harness is gone
    assert proc.wait(10) in (70, -9)  # the watchdog's exit, or its own group kill
    assert wait_for(lambda: not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], 10)


@pytest.mark.slow
def test_the_pipe_held_open_keeps_the_server_alive(servers: List[subprocess.Popen]) -> None:
    proc, write_end = start(servers, "threads")
    try:
        assert not wait_for(lambda: proc.poll() is not None, 1.0)
    finally:
        os.close(write_end)
    assert proc.wait(10) is not None


def test_without_the_variable_nothing_is_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(watchdog.WATCHDOG_FD_ENV, raising=False)
    assert watchdog.start_from_env() is None
    monkeypatch.setenv(watchdog.WATCHDOG_FD_ENV, "not-a-number")
    assert watchdog.start_from_env() is None
    assert watchdog.WATCHDOG_FD_ENV not in os.environ, "consumed, so children do not try"
