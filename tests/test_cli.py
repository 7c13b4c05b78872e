"""Mistakes a user makes on the command line: each ends at once with exit status 2 and one line on
stderr, `hangbench: error: ...` -- never a traceback, never a server started, never a file
written. Plus what `--help` promises: every option with its default, the run's options under
`python -m harness --help`, and the command named as it was typed.

The table of bad command lines runs in-process through `harness.cli.main` (quick, and a stand-in
`ServerProcess` proves that no server is started); a handful run as real subprocesses, as a
user types them, including the installed `hangbench` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from test_run import REPO, assert_nothing_left, assert_one_sentence_error, run_harness

from harness import cli

ERROR_TIMEOUT_S = 60.0  # an error must come before any server starts: far less than this
PREFIX = "hangbench: error: "

T = ("--strategy", "threads")
RUN_ERRORS: List[Tuple[Tuple[str, ...], Tuple[str, ...]]] = [
    # (arguments, fragments the one line must contain)
    (("--strategy", "thread"), ("unknown strategy 'thread'", "Did you mean 'threads'")),
    (("--strategy", "gevnet"), ("unknown strategy 'gevnet'", "'gevent'")),
    (("--strategy", "threads,no-such-strategy"), ("unknown strategy 'no-such-strategy'", "harness list")),
    (("--strategy", ","), ("--strategy",)),
    (("--strategy", "threads,threads"), ("--strategy", "'threads' twice")),
    (("--strategy", "gevent,threads,gevent"), ("'gevent' twice",)),
    ((*T, "--concurrency", "0"), ("--concurrency", "got 0")),
    ((*T, "--concurrency", "1000000"), ("--concurrency", "got 1000000")),
    ((*T, "--concurrency", "many"), ("argument --concurrency/-c: invalid int value: 'many'",)),
    ((*T, "--duration", "-1"), ("--duration", "got -1")),
    ((*T, "--duration", "inf"), ("--duration", "got inf")),
    ((*T, "--deadline", "0"), ("--deadline", "got 0")),
    ((*T, "--deadline", "1000"), ("--deadline", "at most 60")),
    ((*T, "--requests", "0"), ("--requests", "got 0")),
    ((*T, "--duration", "1", "--requests", "10"), ("--duration", "--requests", "not both")),
    ((*T, "--warmup", "-1"), ("--warmup",)),
    ((*T, "--ready-timeout", "0"), ("--ready-timeout",)),
    ((*T, "--stop-grace", "nan"), ("--stop-grace",)),
    ((*T, "--client-procs", "0"), ("--client-procs", "got 0")),
    ((*T, "--client-procs", "2", "--engine", "threads"), ("--client-procs", "--engine asyncio")),
    ((*T, "--client-procs", "8", "--concurrency", "4"), ("--concurrency (4)", "--client-procs (8)")),
    ((*T, "--engine", "bogus"), ("--engine", "invalid choice: 'bogus'")),
    ((*T, "--connection", "keep-alive", "--read", "eof"), ("--connection keep-alive", "--read eof")),
    ((*T, "--workers", "0"), ("--workers", "got 0")),
    ((*T, "--workers", "100000"), ("--workers", "1024", "got 100000")),
    ((*T, "--backlog", "0"), ("--backlog", "got 0")),
    ((*T, "--backlog", "99999999999"), ("--backlog", "got 99999999999")),
    ((*T, "--emulate", "bogus"), ("--emulate", "unknown emulation 'bogus'")),
    ((*T, "--host", "999.1.1.1"), ("--host '999.1.1.1'", "not an IPv4 or IPv6 address")),
    ((*T, "--host", "example.com"), ("--host 'example.com'",)),
    ((*T, "--idle-timeout", "0"), ("--idle-timeout", "got 0")),
    ((*T, "--idle-timeout", "-1"), ("--idle-timeout", "got -1")),
    ((*T, "--port", "1"), ("--port", "serve --port")),
    ((*T, "--plugin", "/nonexistent.py"), ("--plugin /nonexistent.py", "no such file")),
    ((*T, "--cpu-us", "-1"), ("--cpu-us", "got -1")),
    ((*T, "--sleep-ms", "-5"), ("--sleep-ms", "got -5")),
    ((*T, "--bytes", "-1"), ("--bytes", "got -1")),
    ((*T, "--executor", "fiber"), ("--executor", "invalid choice: 'fiber'")),
    (("--strategy", "pool-socket", "--start-method", "vfork"), ("--start-method", "fork|spawn|forkserver", "vfork")),
    ((*T, "--python", "/nonexistent/python3"), ("--python /nonexistent/python3", "not an executable")),
    ((*T, "--python", "/bin/true"), ("--python /bin/true", "not a Python interpreter")),
    ((*T, "--output", "/proc/x.json"), ("/proc", "not writable")),
    ((*T, "--output", "/dev/null"), ("/dev/null", "character device", "not a regular file")),
    ((*T, "--output", "x.md"), ("x.md", "ends in .md")),
    ((*T, "--report", "--output", "x.html"), ("x.html", "ends in .html")),
    ((*T, "--no-such-option"), ("unrecognized arguments: --no-such-option",)),
    (("compare", "only-one.json"), ("the following arguments are required: candidate",)),
]


class NoServer:
    """Stands in for ServerProcess: a refused command line must never get as far as a server."""

    started: List[Any] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        NoServer.started.append(args)
        raise AssertionError("a server was started for a command line that should have been refused")


@pytest.fixture
def in_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working folder, and no way to start a server."""
    import harness.case

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(harness.case, "ServerProcess", NoServer)
    NoServer.started = []
    yield tmp_path
    assert NoServer.started == []
    assert list(tmp_path.iterdir()) == []  # no results/ folder, no file


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX), err
    return lines[0]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("args, fragments", RUN_ERRORS, ids=[" ".join(a) for a, _ in RUN_ERRORS])
def test_bad_command_line_is_one_line_and_exit_2(
    args: Tuple[str, ...], fragments: Tuple[str, ...], in_scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(list(args)) == 2
    line = one_error_line(capsys)
    for fragment in fragments:
        assert fragment in line, line


def test_the_table_of_bad_command_lines_is_long_enough() -> None:
    assert len(RUN_ERRORS) >= 30


def _results_file(path: Path, **changes: Any) -> Path:
    from harness.results.jsonio import write_run
    from harness.results.records import RunRecord, StrategyRecord

    write_run(
        RunRecord("20260101T000000Z", path.stem, {"cpu_model": "x"}, {}, [StrategyRecord("threads", "completed")]), path
    )
    if changes:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["strategies"][0].update(changes)
        path.write_text(json.dumps(data), encoding="utf-8")
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
def test_compare_bad_file_is_one_line_and_exit_2(
    name: str, content: str, fragments: Tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _results_file(tmp_path / "good.json")
    bad = tmp_path / ("%s.json" % name)
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    for args in ((str(good), str(bad)), (str(bad), str(good))):
        assert cli.main(["compare", *args]) == 2
        line = one_error_line(capsys)
        for fragment in (str(bad), *fragments):
            assert fragment in line, line


@pytest.mark.parametrize(
    "field, value",
    [("throughput_rps", "fast"), ("latency_us", {"p99": "slow"}), ("requests", [1]), ("hang_rate", None)],
)
def test_compare_a_wrongly_typed_field_is_one_line_naming_it(
    field: str, value: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _results_file(tmp_path / "good.json")
    bad = _results_file(tmp_path / "bad.json", **{field: value})
    assert cli.main(["compare", str(good), str(bad)]) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and repr(field) in line


def test_compare_runs_of_different_workloads_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _results_file(tmp_path / "good.json")
    other = _results_file(tmp_path / "other.json")
    for path, read in ((good, "content-length"), (other, "eof")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["config"]["read"] = read
        path.write_text(json.dumps(data), encoding="utf-8")
    assert cli.main(["compare", str(good), str(other)]) == 2
    line = one_error_line(capsys)
    assert "different workloads" in line and "read 'content-length'" in line


def test_compare_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _results_file(tmp_path / "good.json")
    assert cli.main(["compare", str(good), str(tmp_path)]) == 2
    assert "cannot read results file" in one_error_line(capsys)


def test_compare_a_file_with_itself_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _results_file(tmp_path / "good.json")
    assert cli.main(["compare", str(good), str(good)]) == 0
    out, err = capsys.readouterr()
    assert "threads" in out and err == ""


# --------------------------------------------------------------------------- help


def test_help_lists_the_run_options_with_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as leaving:
        cli.main(["--help"])
    assert leaving.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    for group in ("load:", "server (passed to every strategy's server):", "output and bounds:"):
        assert group in text
    for option, default in [
        ("--concurrency", "(default: 32)"),
        ("--warmup", "(default: 1.0)"),
        ("--deadline", "(default: 2.0)"),
        ("--engine", "(default: asyncio)"),
        ("--cpu-us", "(default: 0)"),
        ("--sleep-ms", "(default: 0.0)"),
        ("--bytes", "(default: 64)"),
        ("--idle-timeout", "(default: 30.0)"),
        ("--stop-grace", "(default: 3.0)"),
        ("--requests", "(default: none)"),
    ]:
        body = text[text.index("what to run:") :]  # past the usage lines
        after = body[body.index(option + " ") :]
        assert default in after[:400], (option, after[:400])
    assert "serve, list, compare" in text


def test_every_run_option_says_its_default() -> None:
    import argparse

    [commands] = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    run = commands.choices["run"]
    formatter = run._get_formatter()
    for action in run._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        if isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction)):
            continue
        assert "default" in formatter._get_help_string(action), action.option_strings


# --------------------------------------------------------------------------- as a user types it


@pytest.mark.slow
def test_the_run_sub_command_is_optional_and_explicit_run_says_the_same(tmp_path: Path) -> None:
    implicit = run_harness("--strategy", "thread", cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    explicit = run_harness("run", "--strategy", "thread", cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert_one_sentence_error(implicit, "Did you mean 'threads'")
    assert explicit.returncode == 2 and explicit.stderr == implicit.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--strategy", "threads", "--workers", "100000"), "--workers"),
        (("--strategy", "threads", "--concurrency", "many"), "invalid int value: 'many'"),
        (("--strategy", "threads", "--connection", "keep-alive", "--read", "eof"), "--read eof"),
    ],
)
def test_subprocess_errors_are_one_line_and_start_nothing(args: Tuple[str, ...], fragment: str, tmp_path: Path) -> None:
    result = run_harness(*args, cwd=tmp_path, timeout=ERROR_TIMEOUT_S)
    assert_one_sentence_error(result, fragment)
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []
    assert_nothing_left(result.token)


def test_output_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain-file").write_text("x")
    assert cli.main(["--strategy", "threads", "--output", str(tmp_path / "plain-file" / "x.json")]) == 2
    assert "cannot create the output folder" in one_error_line(capsys)


def test_output_that_is_a_folder_or_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--strategy", "threads", "--output", str(tmp_path)]) == 2
    assert "is a folder" in one_error_line(capsys)
    os.mkfifo(tmp_path / "fifo.json")
    assert cli.main(["--strategy", "threads", "--output", str(tmp_path / "fifo.json")]) == 2
    assert "is a FIFO" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.json"]


@pytest.mark.slow
def test_the_installed_command_names_itself_hangbench(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "hangbench"
    if not command.exists():
        pytest.skip("the hangbench console script is not installed in this environment")
    result = subprocess.run(
        [str(command), "--strategy", "threads", "--concurrency", "many"],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=ERROR_TIMEOUT_S,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(PREFIX) and "`hangbench run --help`" in result.stderr
    usage = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=ERROR_TIMEOUT_S)
    assert usage.stdout.startswith("usage: hangbench run")
    module = subprocess.run(
        [sys.executable, "-m", "harness", "--help"], cwd=str(REPO), capture_output=True, text=True, timeout=60
    )
    assert module.stdout.startswith("usage: python -m harness run")
