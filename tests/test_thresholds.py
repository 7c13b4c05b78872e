"""harness.results.thresholds: the `--fail-if` language, which records a rule applies to, and
the failure and baseline gates. Pure functions over record dicts: no servers."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.results import thresholds as th


def record(strategy="threads", **fields):
    base = {
        "strategy": strategy,
        "status": "completed",
        "start_method": None,
        "broken": None,
        "requests": {"ok": 990, "hang": 0, "reset": 10},
        "throughput_rps": 1000.0,
        "hang_rate": 0.0,
        "error_rate": 0.01,
        "latency_us": {"p50": 1500, "p90": 3000, "p99": 45000, "p999": 60000, "max": 80000},
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("text", "case", "metric", "op", "value"),
    [
        ("hang_rate>0", None, "hang_rate", ">", 0.0),
        ("p99_ms > 50", None, "p99_ms", ">", 50.0),
        ("throughput_rps<1e3", None, "throughput_rps", "<", 1000.0),
        ("threads:p99_ms>=20", "threads", "p99_ms", ">=", 20.0),
        ("asyncio-executor/spawn:hangs!=0", "asyncio-executor/spawn", "hangs", "!=", 0.0),
        ("hang_rate>0.1%", None, "hang_rate", ">", 0.001),
    ],
)
def test_parse(text, case, metric, op, value):
    rule = th.parse(text)
    assert (rule.case, rule.metric, rule.op) == (case, metric, op)
    assert rule.value == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("p99>50", "did you mean 'p99_ms'"),
        ("p99_ms=>50", "not of the form"),
        ("p99_ms>fifty", "not of the form"),
        ("p99_ms>50%", "only hang_rate and error_rate"),
        ("__import__('os')>1", "not of the form"),
        ("", "not of the form"),
    ],
)
def test_parse_errors_are_one_sentence(text, fragment):
    with pytest.raises(UsageError) as info:
        th.parse(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_check_reports_measured_value_and_case():
    rules = th.parse_all(["p99_ms>40", "hang_rate>0", "throughput_rps<500"])
    violations = th.check([record(), record("gevent", latency_us={"p99": 1000})], rules)
    assert [v.message for v in violations] == ["threads: p99_ms>40 (measured 45)"]


def test_broken_strategy_exempt_unless_named():
    rules = th.parse_all(["hang_rate>0"])
    broken = record("pool-fromfd", broken="never answers", hang_rate=0.5, requests={"hang": 1, "reset": 1})
    assert th.check([broken], rules) == []
    assert [v.case for v in th.check([broken], rules, named=["pool-fromfd"])] == ["pool-fromfd"]
    scoped = th.parse_all(["pool-fromfd:hangs>0"])
    assert [v.message for v in th.check([broken], scoped)] == ["pool-fromfd: pool-fromfd:hangs>0 (measured 1)"]


def test_every_repetition_is_checked_not_the_mean():
    rules = th.parse_all(["hangs>0"])
    reps = [record(repetition=0), record(repetition=1, requests={"ok": 5, "hang": 1})]
    assert [v.case for v in th.check(reps, rules)] == ["threads #2"]


def test_missing_metric_never_fails():
    assert th.check([record(latency_us={})], th.parse_all(["p99_ms>1"])) == []


def test_failures_gate_exempts_broken_and_measured():
    records = [
        record(),
        record("gevent", status="failed-to-start"),
        record("pool-fromfd", status="crashed", broken="by design"),
    ]
    found = th.check_failures(records, ok_statuses=("completed",))
    assert [v.message for v in found] == ["gevent: status failed-to-start"]
    found = th.check_failures(records, ok_statuses=("completed",), named=["pool-fromfd"])
    assert [v.case for v in found] == ["gevent", "pool-fromfd"]


def test_slower_than_baseline():
    base = [record(throughput_rps=1000.0), record(throughput_rps=1100.0), record("gevent", throughput_rps=500.0)]
    cand = [record(throughput_rps=900.0), record(throughput_rps=950.0), record("gevent", throughput_rps=480.0)]
    # threads: 1050 -> 925 (-11.9 %): past 10 %; gevent -4 %: within
    found = th.check_slower(base, cand, th.parse_slower("10%"))
    assert [v.case for v in found] == ["threads"]
    assert "-11.9 %" in found[0].message
    assert th.check_slower(base, cand, th.parse_slower("15%")) == []


@pytest.mark.parametrize("text", ["ten", "-5%", "100%"])
def test_parse_slower_refuses(text):
    with pytest.raises(UsageError):
        th.parse_slower(text)
