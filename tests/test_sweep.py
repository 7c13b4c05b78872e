"""`--sweep` parsing (harness.sweep) and the knee of a sweep (harness.results.knee) on fixed records."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from harness.errors import UsageError
from harness.results.knee import knee_lines, knees
from harness.results.records import StrategyRecord
from harness.sweep import MAX_LEVELS, SweepError, parse


@pytest.mark.parametrize(
    "text, kind, levels",
    [
        ("concurrency=1,8,32,128,512", "concurrency", [1, 8, 32, 128, 512]),
        ("concurrency=32,8,1", "concurrency", [1, 8, 32]),
        ("rate=250:16000:x2", "rate", [250, 500, 1000, 2000, 4000, 8000, 16000]),
        ("rate=500:20000:x2", "rate", [500, 1000, 2000, 4000, 8000, 16000]),
        ("rate=1000:5000:+1000", "rate", [1000, 2000, 3000, 4000, 5000]),
        ("rate=1500", "rate", [1500]),
        ("concurrency=1:10:x1.5", "concurrency", [1, 2, 3, 5, 8]),
        (" rate = 100 , 200 ", "rate", [100, 200]),
    ],
)
def test_sweeps_parse_to_increasing_levels(text: str, kind: str, levels: List[float]) -> None:
    sweep = parse(text)
    assert sweep.kind == kind and list(sweep.levels) == levels


def test_a_level_is_labelled_by_its_kind() -> None:
    assert parse("concurrency=8").level(8.0) == {"concurrency": 8}
    assert parse("rate=8").level(8.0) == {"rate": 8.0}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("rate", "--sweep takes"),
        ("speed=1,2", "--sweep takes"),
        ("rate=", "--sweep takes"),
        ("rate=a,b", "'a' is not a number"),
        ("concurrency=1.5", "not a whole number"),
        ("concurrency=0,8", "between 1 and"),
        ("rate=-5", "more than 0"),
        ("rate=5:1:x2", "below START"),
        ("rate=1:10:x1", "FACTOR must be more than 1"),
        ("rate=1:10:+0", "STEP must be more than 0"),
        ("rate=1:10:2", "START:STOP:xFACTOR"),
        ("rate=1:10", "START:STOP:xFACTOR"),
        ("rate=100,100", "twice"),
        ("rate=1:1000000:+1", "at most %d" % MAX_LEVELS),
    ],
)
def test_bad_sweeps_are_refused_in_one_sentence(text: str, fragment: str) -> None:
    with pytest.raises(SweepError, match=fragment) as caught:
        parse(text)
    assert isinstance(caught.value, UsageError) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------- knees


def record(
    level: Dict[str, Any],
    p99_ms: float = 5.0,
    rps: float = 1000.0,
    hang: int = 0,
    status: str = "completed",
    achieved: float | None = None,
    strategy: str = "threads",
    repetition: int = 0,
) -> StrategyRecord:
    rate = level.get("rate")
    return StrategyRecord(
        strategy=strategy,
        status=status,
        requests={"ok": 100, "hang": hang},
        throughput_rps=rps,
        latency_us={"p50": 1000, "p99": int(p99_ms * 1000)},
        level=level,
        repetition=repetition,
        load_model="open" if rate else "closed",
        intended_rate_rps=rate,
        achieved_rate_rps=achieved if achieved is not None else rate,
    )


def test_the_rate_knee_is_the_last_level_before_the_first_failure() -> None:
    records = [
        record({"rate": 500.0}, p99_ms=2),
        record({"rate": 1000.0}, p99_ms=8),
        record({"rate": 2000.0}, p99_ms=60),  # over a 50 ms SLO
        record({"rate": 4000.0}, p99_ms=3),  # passes again: a lucky level does not move the knee up
    ]
    (found,) = knees(records, slo_p99_ms=50.0)
    assert found["knee"] == 1000.0 and found["sweep"] == "rate" and found["slo_p99_ms"] == 50.0
    assert "p99 60.0 ms over the 50 ms SLO at 2000/s" in found["reason"]


def test_a_paced_closed_loop_rate_sweep_says_its_knee_hides_stalls() -> None:
    from dataclasses import replace as with_

    records = [with_(record({"rate": r}), load_model="closed") for r in (500.0, 1000.0)]
    (found,) = knees(records, slo_p99_ms=50.0)
    assert found["knee"] == 1000.0 and "paced closed loop" in found["reason"]
    (opened,) = knees([record({"rate": r}) for r in (500.0, 1000.0)], slo_p99_ms=50.0)
    assert "paced" not in opened["reason"]


@pytest.mark.parametrize(
    "failing, why",
    [
        ({"hang": 1}, "1 hang(s) at 2000/s"),
        ({"achieved": 1970.0}, "only 1970 of 2000/s achieved"),  # 98.5 %: under 99 %
        ({"status": "crashed"}, "crashed at 2000/s"),
    ],
)
def test_a_rate_level_fails_on_a_hang_a_missed_rate_or_a_failure(failing: Dict[str, Any], why: str) -> None:
    records = [record({"rate": 1000.0}), record({"rate": 2000.0}, **failing)]
    (found,) = knees(records)
    assert found["knee"] == 1000.0 and why in found["reason"]


def test_a_rate_level_achieved_at_99_percent_passes() -> None:
    (found,) = knees([record({"rate": 1000.0}), record({"rate": 2000.0}, achieved=1980.0)])
    assert found["knee"] == 2000.0 and "every level met the SLO" in found["reason"]


def test_no_knee_when_the_lowest_rate_fails_and_repetitions_must_all_pass() -> None:
    (found,) = knees([record({"rate": 250.0}, p99_ms=500)])
    assert found["knee"] is None and "no level met the SLO" in found["reason"]
    repeated = [
        record({"rate": 250.0}, repetition=0),
        record({"rate": 500.0}, repetition=0),
        record({"rate": 250.0}, repetition=1),
        record({"rate": 500.0}, repetition=1, p99_ms=150),  # the worst repetition's p99 counts
    ]
    (found,) = knees(repeated)
    assert found["knee"] == 250.0


def test_the_concurrency_knee_is_the_peak_throughput_without_hangs() -> None:
    records = [
        record({"concurrency": 1}, rps=900),
        record({"concurrency": 8}, rps=4000),
        record({"concurrency": 32}, rps=5200),
        record({"concurrency": 128}, rps=6000, hang=2),  # higher, but it hung: not counted
        record({"concurrency": 512}, rps=3000),
    ]
    (found,) = knees(records)
    assert found["knee"] == 32.0 and found["sweep"] == "concurrency"
    assert "peak 5200 ok/s at concurrency 32" in found["reason"] and "128" in found["reason"]


def test_knees_are_per_case_and_plain_runs_have_none() -> None:
    records = [
        record({"rate": 100.0}, strategy="threads"),
        record({"rate": 100.0}, strategy="gevent", p99_ms=400),
        record({}, strategy="threads"),
    ]
    found = knees(records)
    assert [(k["case"], k["knee"]) for k in found] == [("threads", 100.0), ("gevent", None)]
    lines = knee_lines(found)
    assert lines[0].startswith("knee threads: 100 req/s") and lines[1].startswith("knee gevent: none")
    assert knees([record({})]) == []
