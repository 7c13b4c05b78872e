"""External targets (`--url`) and the distributed engine through the command line (harness.remote).

In-process: which URLs and option combinations are refused, in one sentence, before anything
starts. Real runs (slow): `--url` against a `harness serve` records an external server (nulls,
not zeros) with the usual hang accounting; `--engine distributed --load-workers 2` keeps each
worker's counts and histogram in the record, and they add up exactly to the merged ones.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
from test_run import FAST, assert_one_sentence_error, run_harness

from harness import placement, remote
from harness.errors import UsageError
from harness.load.metrics import LatencyHistogram


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("http://127.0.0.1:8080/", "127.0.0.1", 8080, "/"),
        ("http://127.0.0.1:8080", "127.0.0.1", 8080, "/"),
        ("http://example.test/a/b?x=1", "example.test", 80, "/a/b?x=1"),
        ("http://[::1]:9000/work", "::1", 9000, "/work"),
    ],
)
def test_parse_url(url: str, host: str, port: int, path: str) -> None:
    target = remote.parse_url(url)
    assert (target.host, target.port, target.path) == (host, port, path)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://127.0.0.1:8443/", "only http://"),
        ("ftp://127.0.0.1:21/", "only http://"),
        ("127.0.0.1:8080", "only http://"),
        ("http://:8080/", "names no host"),
        ("http://127.0.0.1:99999/", "port"),
        ("http://127.0.0.1:80/a b", "no spaces"),
        ("http://u:p@127.0.0.1:80/", "credentials"),
    ],
)
def test_bad_urls_are_one_sentence(url: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        remote.parse_url(url)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def options(**given) -> argparse.Namespace:
    values = {"url": None, "strategy": "all", "engine": "asyncio", "client_procs": 1, "concurrency": 32}
    values["host"] = "127.0.0.1"
    values.update({"load_workers": None, "master_bind": None, "expect_workers": None})
    values.update(given)
    return argparse.Namespace(**values)


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ({"url": "http://127.0.0.1:1/", "strategy": "threads"}, "not both"),
        ({"load_workers": 2}, "--load-workers needs --engine distributed"),
        ({"engine": "distributed"}, "needs --load-workers N, or --master-bind"),
        ({"engine": "distributed", "load_workers": 0}, "--load-workers must be between"),
        ({"engine": "distributed", "load_workers": 2, "client_procs": 2}, "--client-procs"),
        ({"engine": "distributed", "load_workers": 2, "expect_workers": 2}, "either --load-workers"),
        ({"engine": "distributed", "master_bind": "10.0.0.1:5557"}, "--expect-workers"),
        ({"engine": "distributed", "master_bind": "10.0.0.1:x", "expect_workers": 2}, "--master-bind"),
        ({"engine": "distributed", "load_workers": 64, "concurrency": 8}, "--concurrency (8)"),
        ({"engine": "distributed", "master_bind": "10.0.0.1:5557", "expect_workers": 2}, "--host 127.0.0.1"),
        (
            {
                "engine": "distributed",
                "master_bind": "10.0.0.1:5557",
                "expect_workers": 2,
                "url": "http://127.0.0.1:8/",
            },
            "cannot reach --url",
        ),
    ],
)
def test_bad_remote_options(given, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        remote.remote_from(options(**given))
    assert fragment in str(info.value)


def test_distributed_checks_its_load_as_asyncio() -> None:
    checked = remote.remote_from(options(engine="distributed", load_workers=2))
    assert (checked.distributed, checked.local_workers, checked.expect_workers) == (True, 2, 2)
    assert checked.load_args(options(engine="distributed")).engine == "asyncio"


@pytest.mark.slow
def test_url_and_strategy_refused_from_the_command_line(tmp_path: Path) -> None:
    done = run_harness("--url", "http://127.0.0.1:9/", "--strategy", "threads", cwd=tmp_path)
    assert_one_sentence_error(done, "--url", "--strategy")


@pytest.fixture
def served(tmp_path: Path):
    from test_distributed import start_serve, stop

    server, port = start_serve("threads")
    try:
        yield port
    finally:
        stop(server)


@pytest.mark.slow
def test_url_records_an_external_server(served: int, tmp_path: Path) -> None:
    out = tmp_path / "url.json"
    done = run_harness("--url", "http://127.0.0.1:%d/" % served, *FAST, "-q", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.describe()
    data = json.loads(out.read_text(encoding="utf-8"))
    (record,) = data["strategies"]
    assert data["config"]["cases"] == ["http://127.0.0.1:%d/" % served]
    assert (record["server"], record["url"], record["status"]) == (
        "external",
        "http://127.0.0.1:%d/" % served,
        "completed",
    )
    assert record["requests"]["ok"] > 0 and record["requests"]["hang"] == 0
    assert record["server_cpu_util"] is None and record["server_cpu_s_per_1k"] is None
    assert (record["server_peak_rss_mb"], record["server_fds"], record["stop"]) == (None, [], None)
    # --client-procs auto against a server the harness did not start: one process per CPU (FAST: -c 4)
    assert record["client_procs"] == min(4, len(placement.available_cpus())), record
    assert "did not start" in record["client_procs_why"]


@pytest.mark.slow
def test_url_nothing_listening_is_no_response_and_exit_1(tmp_path: Path) -> None:
    from harness.distributed.client import free_port

    out = tmp_path / "none.json"
    done = run_harness("--url", "http://127.0.0.1:%d/" % free_port(), *FAST, "-q", "-o", str(out), cwd=tmp_path)
    # Every case (the only one) got no response: the run measured nothing, which is not a pass.
    assert done.returncode == 1, done.describe()
    assert "every case was no-response" in done.stderr, done.describe()
    (record,) = json.loads(out.read_text(encoding="utf-8"))["strategies"]
    assert record["status"] == "no-response" and record["requests"]["refused"] > 0, done.describe()


def check_record_merges_exactly(record: dict, workers: int) -> None:
    assert len(record["workers"]) == workers, record["workers"]
    for kind, count in record["requests"].items():
        assert count == sum(w["counts"][kind] for w in record["workers"])
    total = LatencyHistogram()
    for worker in record["workers"]:
        total.merge(LatencyHistogram.decode(worker["histogram"]))
    assert LatencyHistogram.decode(record["histogram"]) == total


@pytest.mark.slow
def test_distributed_local_workers_through_the_command_line(served: int, tmp_path: Path) -> None:
    if importlib.util.find_spec("locust") is None:  # find, never import: locust patches the interpreter
        pytest.skip("needs the distributed extra (locust)")
    out = tmp_path / "dist.json"
    url = "http://127.0.0.1:%d/" % served
    done = run_harness(
        "--url", url, "--engine", "distributed", "--load-workers", "2", *FAST, "-o", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.describe()
    (record,) = json.loads(out.read_text(encoding="utf-8"))["strategies"]
    assert record["requests"]["ok"] > 0
    check_record_merges_exactly(record, 2)
