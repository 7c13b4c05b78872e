"""Where the load generator runs: `--client-procs auto` and the `--pin` CPU split.

The rules are pure functions (harness.placement), tested here for machines of every size; one
slow test runs the harness with `--pin` and reads, from /proc, the CPUs the kernel lets the
server tree and the client processes use while they run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Set

import pytest

from harness import placement
from harness.errors import UsageError
from harness.placement import auto_client_procs, auto_external_procs, place, place_external, split_cpus
from harness.settings import Settings, settings_from

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("cores", "server_cores", "concurrency", "expected"),
    [
        (1, 1, 32, 1),  # one core: nothing to spare
        (2, 1, 32, 1),  # one-process server on 2 cores: the other core, one client process
        (2, 2, 32, 1),  # multi-process server on 2 cores: half the machine is 1 core
        (4, 1, 32, 1),  # a one-process server is matched by one client process
        (4, 4, 32, 2),  # multi-process server on 4 cores: half each
        (8, 8, 32, 4),
        (8, 2, 32, 2),  # a 2-process server: 2 client processes, 6 cores free
        (8, 8, 3, 3),  # never more processes than connections
        (64, 64, 1000, placement.MAX_AUTO_PROCS),
    ],
)
def test_auto_client_procs(cores: int, server_cores: int, concurrency: int, expected: int) -> None:
    procs, why = auto_client_procs(cores, server_cores, concurrency)
    assert procs == expected
    assert "%d CPU" % cores in why


def test_auto_is_one_process_for_a_one_process_engine() -> None:
    assert auto_client_procs(16, 16, 64, multi_process=False) == (1, "the engine runs in one process")


def test_auto_says_when_the_concurrency_bounds_it() -> None:
    assert "concurrency" in auto_client_procs(8, 8, 2)[1]
    assert "concurrency" not in auto_client_procs(8, 8, 32)[1]


@pytest.mark.parametrize(
    ("cpus", "server", "client"),
    [
        ([0, 1], (0,), (1,)),
        ([1, 0], (0,), (1,)),  # in CPU order, whatever order the mask came in
        ([0, 1, 2], (0, 1), (2,)),  # odd: the server gets the larger half
        ([2, 3, 5, 7], (2, 3), (5, 7)),  # a taskset/cpuset mask need not start at 0
        (list(range(8)), (0, 1, 2, 3), (4, 5, 6, 7)),
    ],
)
def test_split_cpus(cpus: list, server: tuple, client: tuple) -> None:
    assert split_cpus(cpus) == (server, client)
    assert not set(server) & set(client)


def test_split_refuses_one_cpu() -> None:
    with pytest.raises(ValueError, match="at least 2 CPUs"):
        split_cpus([3])


def test_given_procs_are_kept_and_said_so() -> None:
    placed = place(3, auto=False, concurrency=32, multi_process_engine=True, server_processes=5)
    assert placed.procs == 3 and "given" in placed.why and placed.server_cpus == ()


def test_auto_follows_the_server_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "available_cpus", lambda: list(range(8)))
    one = place(1, auto=True, concurrency=32, multi_process_engine=True, server_processes=1)
    many = place(1, auto=True, concurrency=32, multi_process_engine=True, server_processes=9)
    assert (one.procs, many.procs) == (1, 4)
    assert "1 process;" in one.why and "9 processes" in many.why
    threads = place(1, auto=True, concurrency=32, multi_process_engine=False, server_processes=9)
    assert threads.procs == 1 and "one process" in threads.why


@pytest.mark.parametrize(
    ("cores", "concurrency", "expected"),
    [
        (1, 32, 1),
        (2, 64, 2),  # as wrk -t2 on 2 cores: the server's CPU use is unknown
        (8, 64, 8),
        (8, 3, 3),  # never more processes than connections
        (64, 1000, placement.MAX_AUTO_PROCS),
    ],
)
def test_auto_external_procs_is_one_per_cpu(cores: int, concurrency: int, expected: int) -> None:
    procs, why = auto_external_procs(cores, concurrency)
    assert procs == expected
    assert "%d CPU" % cores in why and "did not start" in why
    assert ("concurrency" in why) == (concurrency < cores)


def test_place_external_follows_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "available_cpus", lambda: list(range(4)))
    auto = place_external(1, auto=True, concurrency=32, multi_process_engine=True)
    assert auto.procs == 4 and auto.why.startswith("auto: a server the harness did not start")
    assert (auto.server_cpus, auto.client_cpus) == ((), ())
    given = place_external(3, auto=False, concurrency=32, multi_process_engine=True)
    assert given.procs == 3 and "given" in given.why
    threads = place_external(1, auto=True, concurrency=32, multi_process_engine=False)
    assert threads.procs == 1 and "one process" in threads.why


def test_a_url_run_places_its_client_from_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli import build_parser

    monkeypatch.setattr(placement, "available_cpus", lambda: list(range(2)))
    parser = build_parser()
    url = ["run", "--url", "http://127.0.0.1:9/"]
    assert placement.for_external(settings_from(parser.parse_args(url))).procs == 2
    assert placement.for_external(settings_from(parser.parse_args([*url, "-c", "1"]))).procs == 1
    assert placement.for_external(settings_from(parser.parse_args([*url, "--client-procs", "1"]))).procs == 1
    assert placement.for_external(settings_from(parser.parse_args([*url, "--engine", "threads"]))).procs == 1


def test_auto_pinned_uses_the_client_cpus() -> None:
    cpus = ((0, 1, 2, 3), (4, 5, 6, 7))
    assert place(1, True, 32, True, server_processes=1, cpus=cpus).procs == 1
    assert place(1, True, 32, True, server_processes=5, cpus=cpus).procs == 4
    assert place(1, True, 2, True, server_processes=5, cpus=cpus).procs == 2  # bounded by the connections
    assert place(1, True, 32, True, server_processes=5, cpus=((0,), (1,))).why.startswith("auto, pinned")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity")
def test_cpus_for_splits_this_process_cpus() -> None:
    cpus = placement.available_cpus()
    assert placement.cpus_for(False) == ((), ())
    if len(cpus) >= 2:
        assert placement.cpus_for(True) == split_cpus(cpus)


def test_cannot_pin_on_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "available_cpus", lambda: [0])
    assert "at least 2 CPUs" in str(placement.can_pin())


def _cpus_allowed(pid: int) -> Set[int]:
    """Cpus_allowed_list of /proc/PID/status, e.g. "0-2,5", as a set."""
    text = Path("/proc/%d/status" % pid).read_text()
    line = next(line for line in text.splitlines() if line.startswith("Cpus_allowed_list:"))
    cpus: Set[int] = set()
    for part in line.split(":", 1)[1].strip().split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pin_puts_server_and_client_on_disjoint_cpus(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    cpus = placement.available_cpus()
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    server_cpus, client_cpus = (set(half) for half in split_cpus(cpus))
    out = tmp_path / "pin.json"
    argv = [sys.executable, "-m", "harness", "--strategy", "reuseport", "--workers", "2", "--pin"]
    argv += ["--client-procs", "2", "-c", "4", "-d", "3", "-w", "1", "-q", "-o", str(out)]
    harness = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: Dict[str, Dict[int, Set[int]]] = {"server": {}, "client": {}}
    try:
        deadline = time.monotonic() + 60
        while harness.poll() is None and time.monotonic() < deadline:
            for child in psutil.Process(harness.pid).children(recursive=True):
                try:
                    cmdline = " ".join(child.cmdline())
                    role = "server" if "harness.server" in cmdline else "client" if "multiprocessing" in cmdline else ""
                    if role:
                        seen[role][child.pid] = _cpus_allowed(child.pid)
                except (psutil.Error, OSError, StopIteration):
                    pass  # it ended between the listing and the read
            time.sleep(0.2)
        _, stderr = harness.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(timeout=10)
    assert harness.returncode == 0, stderr.decode(errors="replace")
    assert len(seen["server"]) >= 3, seen  # the root and its 2 workers
    assert all(allowed == server_cpus for allowed in seen["server"].values()), seen
    assert len(seen["client"]) >= 2, seen  # the 2 client processes (and multiprocessing's helper, if any)
    assert all(allowed == client_cpus for allowed in seen["client"].values()), seen
    record = json.loads(out.read_text())["strategies"][0]
    assert record["pinned"] == {"server": sorted(server_cpus), "client": sorted(client_cpus)}
    assert record["client_procs"] == 2 and "given" in record["client_procs_why"]


def _settings(*argv: str) -> Settings:
    from harness.cli import build_parser

    return settings_from(build_parser().parse_args(["run", "--strategy", "threads", *argv]))


def test_client_procs_defaults_to_auto_and_takes_a_number() -> None:
    auto = _settings()
    assert auto.client_procs_auto and auto.workload.client_procs == 1 and not auto.pin
    given = _settings("--client-procs", "3")
    assert not given.client_procs_auto and given.workload.client_procs == 3


def test_client_procs_refuses_a_word() -> None:
    with pytest.raises(UsageError, match="--client-procs: expected a whole number or auto, got 'many'"):
        _settings("--client-procs", "many")


def test_pin_is_refused_on_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "available_cpus", lambda: [0])
    with pytest.raises(UsageError, match="--pin needs at least 2 CPUs"):
        _settings("--pin")
