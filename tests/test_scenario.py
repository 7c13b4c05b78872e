"""Scenario files (harness.scenario, `run FILE.toml`, `replay RESULT.json`).

A scenario is translated into the run's own options (so it is checked as typed ones are), and
every result turns back into a scenario that re-runs the same cases. In-process checks of the
translation; one real round trip (slow): run, replay, run the scenario, same `config.cases`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_run import FAST, REPO, assert_one_sentence_error, run_harness

from harness import scenario
from harness.errors import UsageError
from harness.run_options import add_run_options
from harness.subcommands import SCENARIO_SUFFIX


def parser():
    import argparse

    return add_run_options(argparse.ArgumentParser(add_help=False))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ("s" + SCENARIO_SUFFIX)
    path.write_text(text, encoding="utf-8")
    return path


def test_keys_become_the_runs_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'strategy = ["threads", "gevent"]\nduration = 2.5\nfail_if = ["hang_rate>0", "p99_ms>50"]\n'
        "quiet = true\nallow-failures = false\n",
    )
    argv = scenario.scenario_argv(path, parser())
    fail_ifs = ["--fail-if", "hang_rate>0", "--fail-if", "p99_ms>50"]
    assert argv == ["--strategy", "threads,gevent", "--duration", "2.5", *fail_ifs, "--quiet"]
    parsed = parser().parse_args(argv)
    assert (parsed.strategy, parsed.duration, parsed.fail_if) == ("threads,gevent", 2.5, ["hang_rate>0", "p99_ms>50"])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("durration = 2\n", "did you mean 'duration'"),
        ("quiet = 1\n", "is a flag"),
        ("duration = nan\n", "finite"),
        ("duration = [\n", "not valid TOML"),
    ],
)
def test_bad_scenarios_are_one_sentence(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        scenario.scenario_argv(write(tmp_path, text), parser())
    assert fragment in str(info.value)


def test_replay_pins_the_cases_and_skips_defaults_and_outputs() -> None:
    config = {"strategy": "all", "cases": ["threads", "asyncio-executor/fork"], "duration": 10.0}
    config.update({"concurrency": 8, "output": "x.json", "port": 0, "fail_if": ["hangs>0"], "quiet": True})
    text = scenario.replay_toml(config, parser(), source="x.json")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    # duration's default is "none" (10 s unless --requests): the recorded 10.0 is written out.
    expected = ['strategy = ["threads", "asyncio-executor"]', "duration = 10.0", "concurrency = 8"]
    assert lines == [*expected, 'fail-if = ["hangs>0"]']


def test_replay_of_every_reference_file_parses() -> None:
    for path in sorted((REPO / "results" / "reference").glob("*.json")):
        config = json.loads(path.read_text(encoding="utf-8"))["config"]
        text = scenario.replay_toml(config, parser(), source=path.name)
        scenario_file = Path(path.stem + ".toml")
        try:
            scenario_file.write_text(text, encoding="utf-8")
            parser().parse_args(scenario.scenario_argv(scenario_file, parser()))
        finally:
            scenario_file.unlink()


@pytest.mark.slow
def test_run_refuses_a_bare_word(tmp_path: Path) -> None:
    assert_one_sentence_error(run_harness("threads", cwd=tmp_path), "scenario file ending in .toml")


@pytest.mark.slow
def test_replay_then_run_the_same_cases(tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    done = run_harness("--strategy", "threads,gevent", *FAST, "-q", "-o", str(first), cwd=tmp_path)
    assert done.returncode == 0, done.describe()
    toml = tmp_path / "again.toml"
    replayed = run_harness("replay", str(first), "-o", str(toml), cwd=tmp_path)
    assert replayed.returncode == 0, replayed.describe()
    again = tmp_path / "again.json"
    rerun = run_harness("run", str(toml), "--duration", "0.5", "-q", "-o", str(again), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.describe()
    before = json.loads(first.read_text(encoding="utf-8"))["config"]
    after = json.loads(again.read_text(encoding="utf-8"))["config"]
    assert after["cases"] == before["cases"] == ["threads", "gevent"]
    assert (after["duration"], after["concurrency"], after["scenario"]) == (0.5, before["concurrency"], str(toml))


def test_replay_turns_the_recorded_sweep_back_into_the_option() -> None:
    config = {"strategy": "threads", "cases": ["threads"], "sweep": "rate 500, 1000, 2000", "repeat": 2}
    text = scenario.replay_toml(config, parser())
    assert 'sweep = "rate=500,1000,2000"' in text.splitlines()
    assert "repeat = 2" in text.splitlines()
