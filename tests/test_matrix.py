"""The run's matrix (harness.matrix): workloads with explicit overrides, repetitions interleaved,
the suite, open loop and sweeps -- decided before any server starts, refused in one sentence."""

from __future__ import annotations

import argparse
from typing import List

import pytest

from harness import plan as planning
from harness.cli import build_parser, main
from harness.errors import UsageError
from harness.matrix import Matrix, build, given, job_names, saturated_below
from harness.settings import settings_from


def parsed(argv: List[str]) -> argparse.Namespace:
    args = build_parser().parse_args(["run", *argv])
    args.argv = ["run", *argv]
    return args


def matrix(argv: List[str]) -> Matrix:
    args = parsed(argv)
    return build(args, settings_from(args), planning.build(args))


def test_the_default_run_is_one_workload_one_repetition() -> None:
    m = matrix(["--strategy", "threads,gevent"])
    assert [(j.case.strategy, j.workload, j.level, j.repetition) for j in m.jobs] == [
        ("threads", "hello", {}, 0),
        ("gevent", "hello", {}, 0),
    ]
    assert m.jobs[0].settings.workload.concurrency == 32 and m.jobs[0].settings.workload.duration_s == 5.0


def test_a_workload_sets_load_and_server_and_explicit_flags_win() -> None:
    (job,) = matrix(["--strategy", "threads", "--workload", "io"]).jobs
    w = job.settings.workload
    assert (w.sleep_ms, w.concurrency, w.connection) == (20.0, 256, "keep-alive")
    assert job.settings.server_args[job.settings.server_args.index("--sleep-ms") + 1] == "20.0"
    # -c 32 is the default value, but typed: it wins over io's 256
    (job,) = matrix(["--strategy", "threads", "--workload", "io", "-c", "32"]).jobs
    assert job.settings.workload.concurrency == 32 and job.settings.workload.sleep_ms == 20.0


def test_given_tells_typed_options_from_defaults() -> None:
    assert given(parsed(["-c", "32", "-d", "2"]), ["concurrency", "duration", "warmup"]) == {
        "concurrency": 32,
        "duration": 2.0,
    }
    args = parsed(["-c", "8"])
    del args.argv  # built without the command line: values that differ from the defaults
    assert given(args, ["concurrency", "warmup"]) == {"concurrency": 8}


def test_repetitions_are_interleaved_and_named() -> None:
    m = matrix(["--strategy", "threads,gevent", "--repeat", "3", "--workload", "cpu,io"])
    order = [(j.repetition, j.workload, j.case.strategy) for j in m.jobs]
    assert order[:4] == [(0, "cpu", "threads"), (0, "cpu", "gevent"), (0, "io", "threads"), (0, "io", "gevent")]
    assert order[4][0] == 1 and len(order) == 12
    assert job_names(m.jobs)[0] == "threads [cpu] #1/3"


def test_the_suite_runs_sound_strategies_on_every_workload_within_its_budget() -> None:
    full = matrix(["--suite"])
    assert {j.workload for j in full.jobs} == {"hello", "keep-alive", "cpu", "io", "mixed", "large"}
    m = matrix(["--suite", "--quick"])
    assert {j.case.broken for j in m.jobs} == {None}
    assert {j.workload for j in m.jobs} == {"hello", "cpu", "io"}  # the quick suite's three
    assert m.suite is not None and m.repeat == m.suite.repeat
    cases = len({j.case.strategy for j in m.jobs})
    assert len(m.jobs) == m.suite.runs == cases * 3 * m.repeat
    w = m.jobs[0].settings.workload
    assert (w.warmup_s, w.duration_s) == (m.suite.warmup_s, m.suite.duration_s)
    # a typed -d wins over the suite's measurement
    assert matrix(["--suite", "--quick", "-d", "2"]).jobs[0].settings.workload.duration_s == 2.0


def test_sweeps_make_one_job_per_level_with_short_defaults() -> None:
    m = matrix(["--strategy", "threads", "--sweep", "rate=500:2000:x2"])
    assert [j.level for j in m.jobs] == [{"rate": 500.0}, {"rate": 1000.0}, {"rate": 2000.0}]
    assert [j.settings.workload.rate for j in m.jobs] == [500.0, 1000.0, 2000.0]
    assert m.jobs[0].settings.workload.duration_s == 2.0
    m = matrix(["--strategy", "threads", "--sweep", "concurrency=1,8", "-d", "1"])
    assert [j.settings.workload.concurrency for j in m.jobs] == [1, 8] and m.jobs[0].settings.workload.duration_s == 1
    assert job_names(m.jobs) == ["threads concurrency=1", "threads concurrency=8"]


def test_open_loop_options_reach_the_workload() -> None:
    (job,) = matrix(["--strategy", "threads", "--rate", "2000", "--arrival", "poisson"]).jobs
    assert job.settings.workload.rate == 2000.0 and job.settings.workload.arrival == "poisson"
    assert job.settings.workload.load_model == "open"


def test_a_closed_load_model_with_a_rate_paces_the_closed_loop() -> None:
    (job,) = matrix(["--strategy", "threads", "--rate", "2000", "--load-model", "closed"]).jobs
    workload = job.settings.workload
    assert workload.rate == 2000.0 and workload.is_paced and workload.load_model == "closed"
    m = matrix(["--strategy", "threads", "--sweep", "rate=500,1000", "--load-model", "closed"])
    assert [(j.settings.workload.rate, j.settings.workload.load_model) for j in m.jobs] == [
        (500.0, "closed"),
        (1000.0, "closed"),
    ]
    (plain,) = matrix(["--strategy", "threads", "--load-model", "closed"]).jobs  # no rate: as before
    assert plain.settings.workload.rate is None and not plain.settings.workload.is_paced
    (opened,) = matrix(["--strategy", "threads", "--rate", "10", "--load-model", "open"]).jobs
    assert opened.settings.workload.load_model == "open"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--load-model", "open"], "--load-model open needs a rate"),
        (["--rate", "100", "--load-model", "closed", "--arrival", "poisson"], "--arrival applies to an open-loop"),
        (["--engine", "threads", "--rate", "100", "--load-model", "closed"], "--rate: the threads engine"),
        (["--engine", "threads", "--rate", "100"], "--rate: the threads engine is the article's closed-loop client"),
        (["--engine", "threads", "--sweep", "rate=100,200"], "--sweep rate=...: the threads engine"),
        (["--quick"], "--quick goes with --suite"),
        (["--rate", "100", "--sweep", "rate=1,2"], "not both"),
        (["--arrival", "poisson"], "--arrival applies to an open-loop run"),
        (["--repeat", "0"], "--repeat must be between 1 and"),
        (["--workload", "nope"], "unknown workload 'nope'"),
        (["--sweep", "rate=x"], "not a number"),
        (["--slo-p99", "0"], "--slo-p99 must be more than 0"),
    ],
)
def test_impossible_matrices_are_refused_before_anything_starts(argv: List[str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(")):
        matrix(["--strategy", "threads", *argv])


def test_workloads_and_verdict_sub_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("hello", "keep-alive", "cpu", "io", "mixed", "large"))
    assert main(["verdict", "/nonexistent/x.json"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_rate_sweep_skips_levels_above_one_that_fell_behind() -> None:
    from dataclasses import replace as with_

    from harness.results.records import StrategyRecord

    jobs = matrix(["--strategy", "threads,gevent", "--sweep", "rate=100,200,400"]).jobs
    kept = StrategyRecord("threads", "completed", level={"rate": 100.0}, intended_rate_rps=100.0)
    kept = with_(kept, achieved_rate_rps=100.0, requests={"ok": 10, "hang": 0})
    behind = with_(kept, level={"rate": 200.0}, intended_rate_rps=200.0, achieved_rate_rps=150.0)
    by_level = {(j.case.strategy, j.level["rate"]): j for j in jobs}
    assert by_level[("threads", 200.0)] is not None
    assert saturated_below(by_level[("threads", 200.0)], [kept]) is None
    assert saturated_below(by_level[("threads", 400.0)], [kept, behind]) is behind
    assert saturated_below(by_level[("gevent", 400.0)], [kept, behind]) is None  # another case
    hung = with_(kept, requests={"ok": 9, "hang": 1})
    assert saturated_below(by_level[("threads", 200.0)], [hung]) is hung
    plain = matrix(["--strategy", "threads"]).jobs[0]
    assert saturated_below(plain, [hung]) is None  # not a sweep


def test_the_config_records_each_workload_as_run_with_its_overrides() -> None:
    m = matrix(["--strategy", "threads", "--workload", "cpu,io", "-c", "8"])
    assert m.describe()["workloads"]["io"].endswith("c=8") and m.describe()["workloads"]["cpu"].endswith("c=8")
