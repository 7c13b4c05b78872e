"""The pytest plugin (harness.pytest_plugin): registered under `pytest11`, and a real pytest run
of a test using the `hangbench` fixture records the case in pytest-benchmark's JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from harness import pytest_plugin

REPO = Path(__file__).resolve().parent.parent

TEST_FILE = """
def test_threads(hangbench):
    result = hangbench.run("threads", repeat=2, duration=0.5, warmup=0.2)
    assert result.completed, result.statuses
    assert len(result.records) == 2


def test_plugin_file(hangbench):
    result = hangbench.run(%r, repeat=1, duration=0.5, warmup=0.2)
    assert result.completed, result.statuses
"""


def test_registered_as_a_pytest_plugin() -> None:
    found = [e for e in entry_points(group="pytest11") if e.name == "hangbench"]
    assert [e.value for e in found] == ["harness.pytest_plugin"]


def test_a_plugin_file_is_passed_with_its_registered_name() -> None:
    spec = str(REPO / "tests" / "misbehaving" / "baseline.py")
    assert pytest_plugin._strategy_options(spec) == ["--plugin", spec, "--strategy", "mis-baseline"]
    assert pytest_plugin._strategy_options("threads") == ["--strategy", "threads"]


def test_the_options_it_passes_exist() -> None:
    assert {"--workload", "--repeat", "--allow-failures", "--plugin", "--quiet"} <= pytest_plugin._run_options()


@pytest.mark.slow
def test_a_pytest_run_records_the_cases_as_benchmarks(tmp_path: Path) -> None:
    test = tmp_path / "test_bench.py"
    test.write_text(TEST_FILE % str(REPO / "tests" / "misbehaving" / "baseline.py"), encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test), f"--benchmark-json={report}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    benchmarks = {b["name"]: b for b in json.loads(report.read_text(encoding="utf-8"))["benchmarks"]}
    assert set(benchmarks) == {"test_threads", "test_plugin_file"}
    threads = benchmarks["test_threads"]
    assert threads["stats"]["rounds"] == 2
    assert threads["extra_info"]["hangbench_strategy"] == "threads"
    assert threads["stats"]["mean"] == pytest.approx(
        sum(1.0 / rps for rps in threads["extra_info"]["throughput_rps"]) / 2
    )
    assert benchmarks["test_plugin_file"]["extra_info"]["statuses"] == ["completed"]
