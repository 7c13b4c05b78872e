"""The run's exit status as a CI gate (harness.gates): --fail-if, --baseline/--fail-if-slower,
--allow-failures, and the exit codes 0 / 1 / 2.

Pure checks over records run in-process; a handful of real runs (slow) check the whole path:
a violated threshold exits 1 naming it after the table, a generous one exits 0, a sound
strategy that fails to start exits 1 unless --allow-failures, a broken one is exempt unless named.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from test_run import FAST, REPO, assert_one_sentence_error, run_harness

from harness import gates
from harness.errors import UsageError
from harness.results.records import StrategyRecord

SOUND_BUT_EXITS = '''
from harness.server.strategy import Strategy


class SoundButExits(Strategy):
    """Declares itself sound, then returns from serve at once: the run must not pass."""

    name = "sound-but-exits"
    summary = "returns from serve at once, without saying it is broken"

    def serve(self, listener, app, options):
        return None
'''


def args(**given) -> argparse.Namespace:
    values: dict[str, object] = {
        "fail_if": [],
        "baseline": None,
        "fail_if_slower": None,
        "allow_failures": False,
        "strategy": "all",
    }
    values.update(given)
    return argparse.Namespace(**values)


def record(strategy: str = "threads", status: str = "completed", **fields) -> StrategyRecord:
    return StrategyRecord(strategy=strategy, status=status, **fields)


def messages(found) -> list[str]:
    return [violation.message for violation in found]


def test_a_sound_case_that_failed_is_a_violation() -> None:
    found = gates.violations(gates.gates_from(args()), [record(), record("gevent", "failed-to-start")])
    assert messages(found) == ["gevent: status failed-to-start"]


@pytest.mark.parametrize("status", ["completed", "no-response"])
def test_measured_statuses_are_not_failures(status: str) -> None:
    # A no-response case is a finding when another case measured something (see below).
    measured = [record("gevent"), record(status=status)]
    assert gates.violations(gates.gates_from(args()), measured) == []


def test_a_run_in_which_every_case_is_no_response_fails() -> None:
    silent = [record(status="no-response"), record("gevent", "no-response")]
    assert messages(gates.violations(gates.gates_from(args()), silent)) == [
        "every case was no-response: not one request got a response, so nothing was measured"
    ]
    assert gates.violations(gates.gates_from(args(allow_failures=True)), silent) == []


def test_a_broken_strategy_that_answers_nothing_is_exempt_even_when_named() -> None:
    silent = [record("pool-fromfd", "no-response", broken="loses connections on purpose")]
    assert gates.violations(gates.gates_from(args(strategy="pool-fromfd")), silent) == []


def test_allow_failures() -> None:
    failed = [record("gevent", "crashed"), record("threads", "timed-out"), record("x", "not-ready")]
    assert len(gates.violations(gates.gates_from(args()), failed)) == 3
    assert gates.violations(gates.gates_from(args(allow_failures=True)), failed) == []


def test_broken_strategy_exempt_unless_named_in_strategy_or_a_threshold() -> None:
    broken = record("pool-fromfd", "crashed", broken="by design", hang_rate=0.5, requests={"hang": 3})
    assert gates.violations(gates.gates_from(args(fail_if=["hang_rate>0"])), [broken]) == []
    named = gates.violations(gates.gates_from(args(strategy="pool-fromfd", fail_if=["hang_rate>0"])), [broken])
    assert messages(named) == ["pool-fromfd: status crashed", "pool-fromfd: hang_rate>0 (measured 50 %)"]
    scoped = gates.violations(gates.gates_from(args(fail_if=["pool-fromfd:hangs>2"])), [broken])
    assert messages(scoped) == ["pool-fromfd: status crashed", "pool-fromfd: pool-fromfd:hangs>2 (measured 3)"]


def test_violations_name_the_case_as_the_table_does() -> None:
    """One start method in the run: the table says `asyncio-executor`, and so must the gate."""
    rows = [record("asyncio-executor", start_method="fork", latency_us={"p99": 90_000})]
    found = gates.violations(gates.gates_from(args(fail_if=["p99_ms>50"])), rows)
    assert messages(found) == ["asyncio-executor: p99_ms>50 (measured 90)"]
    both = [*rows, record("asyncio-executor", start_method="spawn", latency_us={"p99": 10_000})]
    found = gates.violations(gates.gates_from(args(fail_if=["asyncio-executor/spawn:p99_ms>5"])), both)
    assert messages(found) == ["asyncio-executor/spawn: asyncio-executor/spawn:p99_ms>5 (measured 10)"]


def test_baseline_gate(tmp_path: Path) -> None:
    base = tmp_path / "old.json"
    data = json.loads((REPO / "results" / "reference" / "handoff.json").read_text(encoding="utf-8"))
    base.write_text(json.dumps(data), encoding="utf-8")
    first = data["strategies"][0]
    slower = record(first["strategy"], start_method=first["start_method"], throughput_rps=first["throughput_rps"] / 2)
    found = gates.violations(gates.gates_from(args(baseline=str(base), fail_if_slower="10%")), [slower])
    assert len(found) == 1 and "-50.0 %" in found[0].message


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ({"fail_if": ["p99>5"]}, "did you mean 'p99_ms'"),
        ({"fail_if_slower": "10%"}, "--fail-if-slower needs --baseline"),
        ({"baseline": "old.json"}, "--baseline needs --fail-if-slower"),
        ({"baseline": "/no/such/file.json", "fail_if_slower": "10%"}, "does not exist"),
        ({"baseline": __file__, "fail_if_slower": "10%"}, "--baseline"),
    ],
)
def test_bad_gates_are_usage_errors(given, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        gates.gates_from(args(**given))
    assert fragment in str(info.value)


@pytest.mark.slow
def test_bad_threshold_refused_before_anything_starts(tmp_path: Path) -> None:
    done = run_harness("--strategy", "threads", "--fail-if", "p99_ms>>5", *FAST, cwd=tmp_path)
    assert_one_sentence_error(done, "--fail-if", "not of the form")
    assert not list(tmp_path.iterdir())  # nothing written


def fail_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(gates.FAIL_PREFIX)]


@pytest.mark.slow
def test_threshold_violated_exits_1_and_generous_one_exits_0(tmp_path: Path) -> None:
    out = str(tmp_path / "r.json")
    tight = run_harness("--strategy", "threads", "--fail-if", "throughput_rps<1e9", *FAST, "-o", out, cwd=tmp_path)
    assert tight.returncode == 1, tight.describe()
    assert fail_lines(tight.stderr) and "threads: throughput_rps<1e9 (measured" in fail_lines(tight.stderr)[0]
    assert tight.stdout.index("results:") >= 0  # the table and the results line came first
    generous = run_harness("--strategy", "threads", "--fail-if", "p99_ms>100000", *FAST, "-o", out, cwd=tmp_path)
    assert generous.returncode == 0, generous.describe()
    assert fail_lines(generous.stderr) == []


@pytest.mark.slow
def test_a_sound_strategy_that_fails_to_start_exits_1(tmp_path: Path) -> None:
    plugin = tmp_path / "sound_but_exits.py"
    plugin.write_text(SOUND_BUT_EXITS, encoding="utf-8")
    common = ("--plugin", str(plugin), "--strategy", "sound-but-exits", *FAST, "-o", str(tmp_path / "r.json"))
    failed = run_harness(*common, cwd=tmp_path)
    assert failed.returncode == 1, failed.describe()
    assert [line.split(": status ")[0] for line in fail_lines(failed.stderr)] == ["hangbench: fail: sound-but-exits"]
    allowed = run_harness(*common, "--allow-failures", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.describe()


@pytest.mark.slow
def test_a_broken_strategy_that_fails_counts_only_when_named(tmp_path: Path) -> None:
    plugin = str(REPO / "tests" / "misbehaving" / "exits_at_once.py")
    named = run_harness("--plugin", plugin, "--strategy", "mis-exits-at-once", *FAST, cwd=tmp_path)
    assert named.returncode == 1, named.describe()
    assert fail_lines(named.stderr)[0].startswith("hangbench: fail: mis-exits-at-once: status ")
