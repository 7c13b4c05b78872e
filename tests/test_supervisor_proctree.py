"""harness.supervise.proctree: the subreaper, finding escaped processes, killing trees, reaping safely.

Process trees here are small Python scripts started with Popen in a new session (as the
supervisor starts servers). Every script is bounded (it exits by itself within 60 s), and every
test kills what it started by pid, in a finally block.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Dict, Iterator, List

import psutil
import pytest
from misbehaving._launch import snapshot, still_there, wait_for

from harness.supervise.proctree import (
    RUN_ID_ENV,
    ProcessTree,
    ProcTreeError,
    enable_subreaper,
    is_subreaper,
    reap_orphans,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and subreaper"),
]

DOUBLE_FORK = textwrap.dedent(
    """
    import os, sys, time
    out = sys.argv[1]
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            with open(out + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(out + ".tmp", out)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.2)
        os._exit(0)
    os.waitpid(child, 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
    """
)

ORPHANING_ROOT = textwrap.dedent(
    """
    import os, sys, time
    for _ in range(2):
        if os.fork() == 0:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.2)
            os._exit(0)
    time.sleep(float(sys.argv[1]))
    os._exit(3)
    """
)


@pytest.fixture(autouse=True)
def subreaper() -> None:
    assert enable_subreaper()


@pytest.fixture
def started() -> Iterator[List[subprocess.Popen]]:
    """Popen objects to clean up: SIGKILL the session they lead, then wait (bounded)."""
    procs: List[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait(10)


def spawn(started: List[subprocess.Popen], script: str, *args: str, run_id: str = "") -> subprocess.Popen:
    env: Dict[str, str] = dict(os.environ)
    if run_id:
        env[RUN_ID_ENV] = run_id
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env, start_new_session=True)
    started.append(proc)
    return proc


@pytest.mark.slow
def test_subreaper_is_on() -> None:
    assert is_subreaper()


@pytest.mark.slow
def test_refuses_to_manage_the_harness_itself() -> None:
    with pytest.raises(ProcTreeError):
        ProcessTree(os.getpid())


@pytest.mark.slow
def test_escaped_daemon_found_by_run_id_only(started: List[subprocess.Popen], tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex
    out = tmp_path / "grandchild.pid"
    root = spawn(started, DOUBLE_FORK, str(out), run_id=run_id)
    assert wait_for(out.exists, 20)
    grandchild = int(out.read_text())
    assert wait_for(lambda: psutil.Process(grandchild).ppid() == os.getpid(), 10), "reparented to the subreaper"
    # The trees are created only now: the daemon was never seen below the root. With two live
    # trees a reparented orphan cannot be attributed by elimination: only the marker tells.
    other = ProcessTree(root.pid, run_id="someone-else")
    tree = ProcessTree(root.pid, run_id=run_id)
    assert grandchild not in other.refresh(thorough=True)
    assert grandchild in tree.refresh()
    del other
    victims = snapshot(tree.refresh())
    report = tree.kill(grace_s=2)
    assert set(report.terminated) == {root.pid, grandchild}
    assert report.leftover == ()
    assert root.wait(5) == -15
    assert still_there(victims) == []
    assert grandchild not in {c.pid for c in psutil.Process().children()}, "reaped, not left a zombie"


@pytest.mark.slow
def test_reparented_daemon_without_marker_is_claimed_by_the_only_tree(
    started: List[subprocess.Popen], tmp_path: Path
) -> None:
    """A double-forked daemon is in a session it does not lead, and a child of the harness: the
    harness cannot have started it, so it was reparented; with one live tree, it is that tree's."""
    out = tmp_path / "grandchild.pid"
    root = spawn(started, DOUBLE_FORK, str(out))  # no run id: only the orphan rule can find it
    assert wait_for(out.exists, 20)
    grandchild = int(out.read_text())
    assert wait_for(lambda: psutil.Process(grandchild).ppid() == os.getpid(), 10)
    tree = ProcessTree(root.pid)
    assert grandchild in tree.refresh()
    report = tree.kill(grace_s=2)
    assert grandchild in report.members and report.leftover == ()
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_workers_orphaned_by_a_dying_root_are_killed(started: List[subprocess.Popen]) -> None:
    root = spawn(started, ORPHANING_ROOT, "1.0")
    tree = ProcessTree(root.pid)
    assert wait_for(lambda: len(tree.refresh()) == 3, 10)
    workers = [pid for pid in tree.refresh() if pid != root.pid]
    assert wait_for(
        lambda: not psutil.Process(root.pid).is_running() or psutil.Process(root.pid).status() == "zombie", 20
    )
    assert sorted(tree.refresh()) == sorted(workers), "orphans are still members"
    report = tree.kill(grace_s=2)
    assert root.wait(5) == 3
    assert set(workers) <= set(report.terminated) and report.killed == () and report.leftover == ()
    assert not set(workers) & {c.pid for c in psutil.Process().children()}


@pytest.mark.slow
def test_reaping_never_steals_a_popen_exit_status(started: List[subprocess.Popen]) -> None:
    proc = spawn(started, "import sys; sys.exit(7)")
    assert wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 20)
    assert proc.pid not in reap_orphans()
    assert proc.wait(5) == 7


@pytest.mark.slow
def test_unrelated_children_are_not_members(started: List[subprocess.Popen]) -> None:
    bystander = spawn(started, "import time; time.sleep(30)")
    root = spawn(started, ORPHANING_ROOT, "30", run_id=uuid.uuid4().hex)
    tree = ProcessTree(root.pid, run_id="not-the-bystander")
    assert wait_for(lambda: len(tree.refresh(thorough=True)) == 3, 10)
    assert bystander.pid not in tree.refresh(thorough=True)
    report = tree.kill(grace_s=2)
    assert bystander.poll() is None, "a process outside the tree was touched"
    assert report.leftover == ()


@pytest.mark.slow
def test_usage_sums_the_tree(started: List[subprocess.Popen]) -> None:
    root = spawn(started, ORPHANING_ROOT, "30")
    tree = ProcessTree(root.pid)
    assert wait_for(lambda: tree.usage().n_processes == 3, 10)
    usage = tree.usage()
    rss = sum(psutil.Process(pid).memory_info().rss for pid in tree.refresh())
    assert usage.rss_bytes > 0 and abs(usage.rss_bytes - rss) < rss // 2
    tree.kill(grace_s=2)
