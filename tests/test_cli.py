"""Mistakes a new user makes on the command line: each ends at once with exit status 2 and one
sentence on stderr -- never a traceback, never a server started, never a file written.

Every case runs `python -m harness ...` as a subprocess in an empty scratch folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

import pytest
from test_run import assert_nothing_left, assert_one_sentence_error, run_harness

ERROR_TIMEOUT_S = 60.0  # an error must come before any server starts: far less than this

RUN_ERRORS = [
    # (arguments, fragments the one sentence must contain)
    (("--strategy", "thread"), ("unknown strategy 'thread'", "Did you mean 'threads'")),
    (("--strategy", "gevnet"), ("unknown strategy 'gevnet'", "'gevent'")),
    (("--strategy", "threads,no-such-strategy"), ("unknown strategy 'no-such-strategy'", "harness list")),
    (("--strategy", ","), ("--strategy",)),
    (("--strategy", "threads", "--concurrency", "0"), ("--concurrency", "got 0")),
    (("--strategy", "threads", "--duration", "-1"), ("--duration", "got -1")),
    (("--strategy", "threads", "--deadline", "0"), ("--deadline", "got 0")),
    (("--strategy", "threads", "--requests", "0"), ("--requests", "got 0")),
    (("--strategy", "threads", "--duration", "1", "--requests", "10"), ("--duration", "--requests", "not both")),
    (("--strategy", "threads", "--warmup", "-1"), ("--warmup",)),
    (("--strategy", "threads", "--ready-timeout", "0"), ("--ready-timeout",)),
    (("--strategy", "threads", "--stop-grace", "nan"), ("--stop-grace",)),
    (("--strategy", "pool-socket", "--start-method", "vfork"), ("--start-method", "fork|spawn|forkserver", "vfork")),
    (
        ("--strategy", "threads", "--python", "/nonexistent/python3"),
        ("--python /nonexistent/python3", "not an executable"),
    ),
    (("--strategy", "threads", "--output", "/proc/x.json"), ("/proc", "not writable")),
]


@pytest.mark.parametrize("args, fragments", RUN_ERRORS, ids=[" ".join(a) for a, _ in RUN_ERRORS])
def test_run_error_is_one_sentence_and_exit_2(
    args: Tuple[str, ...], fragments: Tuple[str, ...], tmp_path: Path
) -> None:
    result = run_harness(*args, cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert_one_sentence_error(result, *fragments)
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no results/ folder, no file
    assert_nothing_left(result.token)


def test_the_run_sub_command_is_optional_and_explicit_run_says_the_same(tmp_path: Path) -> None:
    implicit = run_harness("--strategy", "thread", cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    explicit = run_harness("run", "--strategy", "thread", cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert_one_sentence_error(implicit, "Did you mean 'threads'")
    assert explicit.returncode == 2 and explicit.stderr == implicit.stderr


def test_output_that_is_a_folder(tmp_path: Path) -> None:
    result = run_harness("--strategy", "threads", "--output", str(tmp_path), cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert_one_sentence_error(result, "is a folder")
    assert list(tmp_path.iterdir()) == []


def test_output_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    result = run_harness(
        "--strategy",
        "threads",
        "--output",
        str(tmp_path / "plain-file" / "x.json"),
        cwd=tmp_path,
        timeout=ERROR_TIMEOUT_S,
    )
    assert_one_sentence_error(result, "cannot create the output folder")


def test_python_that_is_not_python(tmp_path: Path) -> None:
    result = run_harness("--strategy", "threads", "--python", "/bin/true", cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert_one_sentence_error(result, "--python /bin/true", "not a Python interpreter")


def test_malformed_number_is_argparse_usage_error_without_traceback(tmp_path: Path) -> None:
    result = run_harness("--strategy", "threads", "--concurrency", "many", cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("argument --concurrency/-c: invalid int value: 'many'")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- compare


def _valid_results(path: Path) -> Path:
    from harness.results.records import RunRecord, StrategyRecord, write_run

    write_run(
        RunRecord("20260101T000000Z", path.stem, {"cpu_model": "x"}, {}, [StrategyRecord("threads", "completed")]), path
    )
    return path


COMPARE_ERRORS = [
    # (name, content of the candidate file or None for missing, fragments)
    ("missing", None, ("does not exist",)),
    ("garbage", "this is { not json", ("cannot read results file",)),
    ("empty", "", ("cannot read results file",)),
    ("json-list", "[1, 2, 3]", ("is not a hangbench results file",)),
    ("wrong-version", json.dumps({"schema_version": 99}), ("schema version 99",)),
    ("missing-fields", json.dumps({"schema_version": 1, "created": "x"}), ("is not a hangbench results file",)),
    (
        "bad-record",
        json.dumps(
            {"schema_version": 1, "created": "x", "label": "y", "environment": {}, "config": {}, "strategies": [7]}
        ),
        ("is not a hangbench results file",),
    ),
]


@pytest.mark.parametrize("name, content, fragments", COMPARE_ERRORS, ids=[c[0] for c in COMPARE_ERRORS])
def test_compare_bad_file_is_one_sentence_and_exit_2(
    name: str, content: str, fragments: Tuple[str, ...], tmp_path: Path
) -> None:
    good = _valid_results(tmp_path / "good.json")
    bad = tmp_path / ("%s.json" % name)
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    for args in ((str(good), str(bad)), (str(bad), str(good))):
        result = run_harness("compare", *args, cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
        assert_one_sentence_error(result, str(bad), *fragments)
        assert result.stdout == ""


def test_compare_a_folder(tmp_path: Path) -> None:
    good = _valid_results(tmp_path / "good.json")
    result = run_harness("compare", str(good), str(tmp_path), cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert_one_sentence_error(result, "cannot read results file")


def test_compare_needs_two_files(tmp_path: Path) -> None:
    result = run_harness("compare", str(_valid_results(tmp_path / "good.json")), cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "candidate" in result.stderr


def test_compare_a_file_with_itself_is_fine(tmp_path: Path) -> None:
    good = _valid_results(tmp_path / "good.json")
    result = run_harness("compare", str(good), str(good), cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert result.returncode == 0, result.describe()
    assert "threads" in result.stdout and result.stderr == ""
