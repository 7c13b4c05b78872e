"""Each hang cause (harness.supervise.causes) named for the strategy that exhibits it, in a real
run: the rules are unit-tested on fixed facts in test_causes.py; here the facts come from a
real server, its kernel TCP state and its stacks.

The emulated macOS case (gh-101225) needs CPython 3.12.x and 3.13.0 under pyenv and is skipped
without them; docs/why-it-hangs.md gives its 5-run figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from test_run import REPO, assert_nothing_left, load_json, run_harness

pytestmark = pytest.mark.slow

SHORT = ("--duration", "3", "--warmup", "1", "--quiet", "--allow-failures")  # hangs are the point


def run_case(tmp_path: Path, name: str, *args: str) -> Dict[str, Any]:
    out = tmp_path / (name + ".json")
    done = run_harness(*args, *SHORT, "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.describe()
    assert_nothing_left(done.token)
    record: Dict[str, Any] = load_json(out)["strategies"][0]
    return record


def test_read_eof_against_pool_socket_is_fin_held(tmp_path: Path) -> None:
    record = run_case(tmp_path, "eof", "--strategy", "pool-socket", "--engine", "threads", "-c", "4", "--read", "eof")
    assert record["requests"]["hang"] > 0
    assert record["cause"] == "fin-held", record["cause_evidence"]
    assert "bytes sent back" in record["cause_evidence"][1]
    held = [c for c in record["cause_facts"]["connections"] if c["unread"] == 0 and c["bytes_sent"]]
    assert held and record["cause_facts"]["root_pid"] in held[0]["holders"]


def test_pool_fromfd_is_fd_not_open_in_worker(tmp_path: Path) -> None:
    record = run_case(tmp_path, "fromfd", "--strategy", "pool-fromfd", "--engine", "threads", "-c", "4")
    assert record["cause"] == "fd-not-open-in-worker", record["cause_evidence"]
    assert "Errno" in record["cause_evidence"][1]


def test_a_worker_that_exits_mid_request_is_worker_died(tmp_path: Path) -> None:
    plugin = str(REPO / "tests" / "misbehaving" / "worker_exits.py")
    record = run_case(tmp_path, "died", "--plugin", plugin, "--strategy", "mis-worker-exits", "--engine", "threads")
    assert record["requests"]["hang"] > 0
    assert record["cause"] == "worker-died", record["cause_evidence"]
    assert record["cause_facts"]["exited"]


def test_a_saturated_thread_pool_is_overloaded_not_a_bug(tmp_path: Path) -> None:
    record = run_case(
        tmp_path,
        "overloaded",
        *("--strategy", "threads", "--workers", "2", "-c", "64", "--sleep-ms", "1500", "--deadline", "2"),
    )
    assert record["requests"]["hang"] > 0
    assert record["cause"] == "overloaded", record["cause_evidence"]
    assert "in sleep" in record["cause_evidence"][0]


def _pyenv_python(prefix: str) -> Optional[str]:
    """The newest pyenv interpreter whose version starts with `prefix` ("3.12."), or None."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    try:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        names = sorted(v for v in os.listdir(os.path.join(root, "versions")) if v.startswith(prefix))
    except (OSError, subprocess.SubprocessError):
        return None
    path = os.path.join(root, "versions", names[-1], "bin", "python") if names else ""
    return path if names and os.path.exists(path) else None


EMULATED = ("--strategy", "pool-socket", "--engine", "threads", "-c", "8", "--emulate", "macos-unix-refusal")


@pytest.mark.skipif(_pyenv_python("3.12.") is None, reason="needs a CPython 3.12.x under pyenv")
def test_emulated_macos_refusal_on_3_12_is_lost_task(tmp_path: Path) -> None:
    python = _pyenv_python("3.12.")
    assert python is not None
    record = run_case(tmp_path, "mac312", *EMULATED, "--python", python, "--start-method", "spawn")
    assert record["requests"]["hang"] > 0
    assert record["cause"] == "lost-task", record["cause_evidence"]
    lost = [c for c in record["cause_facts"]["connections"] if c["unread"] > 0]
    assert lost and lost[0]["holders"] == [record["cause_facts"]["root_pid"]]


@pytest.mark.skipif(_pyenv_python("3.13.0") is None, reason="needs CPython 3.13.0 under pyenv")
def test_emulated_macos_refusal_on_3_13_does_not_hang(tmp_path: Path) -> None:
    python = _pyenv_python("3.13.0")
    assert python is not None
    record = run_case(tmp_path, "mac313", *EMULATED, "--python", python, "--start-method", "spawn")
    assert record["requests"]["ok"] > 0
    assert record["requests"]["hang"] == 0 and record["cause"] is None
