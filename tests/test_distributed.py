"""The distributed load path (Locust master/worker): exact merging, and three real "hosts".

Local: a master and two worker processes on 127.0.0.1 against a real server: the merged
counts and histogram equal the sum of the workers' own. Network namespaces (root only, as CI
is): one "server host" and two "load hosts" joined by veth pairs over a bridge, addresses in
198.18.0.0/15 (RFC 2544's benchmarking range) that exist only inside namespaces this test
makes and removes. The server host runs `harness serve` and the run itself through the command
line (`--url ... --engine distributed --master-bind ... --expect-workers 2`, which starts the
master there); each load host runs `python -m harness worker`. The record must carry each
worker's counts and histogram, and they must add up exactly to the merged ones.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import pytest

# Only *find* locust: importing it monkey-patches the whole interpreter with gevent (threads become
# greenlets), which would break every test that runs after this module is collected.
if importlib.util.find_spec("locust") is None:
    pytest.skip("needs the distributed extra (locust)", allow_module_level=True)

from harness.distributed.client import DistributedLoad
from harness.load import Workload
from harness.load.metrics import LatencyHistogram, LoadResult

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def start_serve(
    strategy: str, prefix: list[str] | None = None, host: str = "127.0.0.1"
) -> tuple[subprocess.Popen, int]:
    argv = [*(prefix or []), sys.executable, "-m", "harness", "serve", "--strategy", strategy, "--host", host]
    server = subprocess.Popen(
        [*argv, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True, cwd=REPO
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    assert line, "the server printed no ready line"
    return server, int(json.loads(line)["port"])


def stop(process: Popen) -> None:
    """End a process group this test started; it may have ended by itself (a worker after quit)."""
    for signum in (15, 9):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signum)
            process.wait(10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def check_exact_merge(merged, workers) -> None:
    results = [w["result"] for w in workers]
    assert len(results) == 2
    for kind, count in merged.counts.items():
        assert count == sum(r["counts"][kind] for r in results)
    total = LatencyHistogram.decode(results[0]["histogram"])
    total.merge(LatencyHistogram.decode(results[1]["histogram"]))
    assert merged.latency_histogram() == total


def test_local_workers_merge_exactly() -> None:
    server, port = start_serve("threads")
    try:
        with DistributedLoad(expect_workers=2, local_workers=2, wait_s=60) as load:
            merged, workers = load.run(Workload(host="127.0.0.1", port=port, concurrency=8, duration_s=2, warmup_s=0.5))
    finally:
        stop(server)
    assert merged.counts["ok"] > 0
    assert merged.client_procs == 2
    check_exact_merge(merged, workers)


# --------------------------------------------------------------------------- namespaces

NETNS_SKIP = "needs root and iproute2 (`ip netns`)"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def hosts() -> Iterator[dict[str, list[str]]]:
    """Three namespaces on a bridge: {"srv": prefix, "l1": prefix, "l2": prefix}; removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip(NETNS_SKIP)
    tag = uuid.uuid4().hex[:6]
    names = {role: f"hb{role}{tag}" for role in ("br", "srv", "l1", "l2")}
    made: list[str] = []
    try:
        for name in names.values():
            _ip("netns", "add", name)
            made.append(name)
        br = names["br"]
        _ip("-n", br, "link", "add", "br0", "type", "bridge")
        _ip("-n", br, "link", "set", "br0", "up")
        for index, role in enumerate(("srv", "l1", "l2"), start=1):
            ns, peer = names[role], f"v{role}{tag}"
            _ip("link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", peer, "netns", br)
            _ip("-n", br, "link", "set", peer, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"198.18.0.{index}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        pytest.skip(f"cannot make network namespaces here: {error}")
    try:
        yield {role: ["ip", "netns", "exec", names[role]] for role in ("srv", "l1", "l2")}
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def run_three_hosts(hosts: dict[str, list[str]], strategy: str, read: str, tmp_path: Path):
    """The server on one host, a worker on each of two others, and the run itself -- through the
    command line, as a user types it -- on the server's host, where the master listens."""
    server, port = start_serve(strategy, hosts["srv"], host="198.18.0.1")
    workers = [
        subprocess.Popen(
            [*hosts[h], sys.executable, "-m", "harness", "worker", "--master", "198.18.0.1:5557"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO,
        )
        for h in ("l1", "l2")
    ]
    out = tmp_path / "out.json"
    argv = ["--url", f"http://198.18.0.1:{port}/", "--engine", "distributed", "--master-bind", "198.18.0.1:5557"]
    argv += ["--expect-workers", "2", "-c", "2", "-d", "3", "-w", "0.5", "--read", read, "--deadline", "1"]
    try:
        done = subprocess.run(
            [*hosts["srv"], sys.executable, "-m", "harness", *argv, "-q", "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
    finally:
        for process in [server, *workers]:
            stop(process)
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = json.loads(out.read_text(encoding="utf-8"))["strategies"]
    assert record["server"] == "external"
    merged = LoadResult.from_dict(
        {k: record[k] for k in ("histogram", "elapsed_s", "throughput_rps", "hang_rate", "error_rate")}
        | {"counts": record["requests"], "latency_us": record["latency_us"], "client_cpu_s": 0.0}
        | {"client_cpu_util": 0.0, "partial": record["partial"], "engine": "asyncio", "client_procs": 2}
    )
    return merged, [{"worker": w["worker"], "result": w} for w in record["workers"]]


def test_three_hosts_merge_exactly(hosts, tmp_path) -> None:
    merged, workers = run_three_hosts(hosts, "threads", "content-length", tmp_path)
    assert merged.counts["ok"] > 0
    assert all("result" in w for w in workers), workers
    check_exact_merge(merged, workers)


def test_three_hosts_show_hangs(hosts, tmp_path) -> None:
    """pool-socket's lingering reference: a read-until-close client hangs, on any host."""
    merged, workers = run_three_hosts(hosts, "pool-socket", "eof", tmp_path)
    assert merged.counts["hang"] > 0
    check_exact_merge(merged, workers)
