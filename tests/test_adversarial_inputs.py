"""Hostile input found by an adversarial pass after the reliability fixes: each case once ended in
a traceback, a hang, a replaced special file or a forged address, and must now end in one
sentence (exit status 2) or a correct answer.

- writers other than the run (`report -o`, `replay -o`) replaced whatever the path named: as
  root, `report -o /dev/full` turned the device into a regular file;
- readers of results files read /dev/zero or a FIFO forever, and crashed on JSON nested deeply,
  on NaN/Infinity/1e400 and on a histogram that is not one;
- a plugin calling sys.exit() at import ended the harness with exit status 0, a CI pass;
- a plugin printing at import wrote before the ready line, on the server's stdout, and forged
  the address the harness probes;
- `serve --host ''` listened on every interface;
- a request head with bare-LF line ends got no answer until the header-read deadline (a hang).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

from harness import cli
from harness.results import jsonio
from harness.results.records import ResultsError
from harness.server.protocol import ProtocolError, RequestParser
from harness.server.registry import load_spec
from harness.server.strategy import StrategyError

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "results" / "reference" / "all-default.json"
PREFIX = "hangbench: error: "


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX), err
    return lines[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.json"
    os.mkfifo(path)
    return path


def _with_first_record(tmp_path: Path, name: str, **changes: object) -> Path:
    """The reference results file with fields of its first record changed (json.dumps writes
    float("inf") as Infinity, as a careless writer would)."""
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    data["strategies"][0].update(changes)
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# -- writers: only a new path or a regular file is replaced ------------------------------------


def test_atomic_write_refuses_a_fifo_and_keeps_it(fifo: Path) -> None:
    with pytest.raises(jsonio.OutputError, match="FIFO"):
        jsonio.write_text_atomic(fifo, "x")
    assert fifo.is_fifo()


def test_atomic_write_refuses_a_symlink_to_a_fifo(fifo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    with pytest.raises(jsonio.OutputError, match="FIFO"):
        jsonio.write_text_atomic(link, "x")
    assert link.is_symlink() and fifo.is_fifo()


def test_atomic_write_refuses_a_folder_and_an_empty_name(tmp_path: Path) -> None:
    with pytest.raises(jsonio.OutputError, match="folder"):
        jsonio.write_text_atomic(tmp_path, "x")
    with pytest.raises(jsonio.OutputError, match="names no file"):
        jsonio.write_text_atomic(Path(""), "x")


def test_atomic_write_still_replaces_a_regular_file_through_its_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    jsonio.write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


@pytest.mark.parametrize("command", ["report", "replay"])
def test_report_and_replay_refuse_a_fifo_output(command: str, fifo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([command, str(REFERENCE), "-o", str(fifo)]) == 2
    assert "FIFO" in one_error_line(capsys)
    assert fifo.is_fifo()


def test_replay_refuses_a_folder_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", str(REFERENCE), "-o", str(tmp_path)]) == 2
    assert "folder" in one_error_line(capsys)


def test_report_refuses_an_empty_output_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(REFERENCE), "--format", "csv", "-o", ""]) == 2
    assert "--output is empty" in one_error_line(capsys)
    assert not REFERENCE.with_suffix(".csv").exists()


# -- readers: a regular file of bounded size holding finite numbers ----------------------------


def test_reading_a_fifo_is_refused_without_waiting_for_a_writer(fifo: Path) -> None:
    with pytest.raises(ResultsError, match="FIFO"):
        jsonio.read_json_file(str(fifo))


def test_reading_a_character_device_is_refused() -> None:
    with pytest.raises(ResultsError, match="character device"):
        jsonio.read_json_file("/dev/zero")


def test_reading_a_file_over_the_size_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"strategies": ["x" * 100]}))
    monkeypatch.setattr(jsonio, "MAX_INPUT_BYTES", 64)
    with pytest.raises(ResultsError, match="larger than"):
        jsonio.read_json_file(str(path))


@pytest.mark.parametrize(
    "text, fragment",
    [("[" * 100000 + "]" * 100000, "nested too deeply"), ('{"a": NaN}', "NaN"), ('{"a": 1e400}', "1e400")],
    ids=["deep", "nan", "1e400"],
)
def test_reading_json_that_python_would_choke_on_later_is_refused(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(ResultsError, match=fragment):
        jsonio.read_json_file(str(path))


@pytest.mark.parametrize("command", ["compare", "verdict", "report", "replay"])
def test_every_reader_refuses_a_fifo_in_one_sentence(
    command: str, fifo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [command, str(REFERENCE), str(fifo)] if command == "compare" else [command, str(fifo)]
    assert cli.main(args) == 2
    assert "FIFO" in one_error_line(capsys)


@pytest.mark.parametrize("command", ["compare", "verdict", "report"])
def test_every_reader_refuses_an_infinite_throughput(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _with_first_record(tmp_path, "inf.json", throughput_rps=float("inf"))
    args = [command, str(REFERENCE), str(bad)] if command == "compare" else [command, str(bad)]
    if command == "report":
        args += ["-o", str(tmp_path / "out.html")]
    assert cli.main(args) == 2
    assert "Infinity" in one_error_line(capsys)


def test_report_on_a_histogram_that_is_not_one_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    bad = _with_first_record(tmp_path, "hist.json", histogram="!!!notbase64")
    assert cli.main(["report", str(bad), "-o", str(tmp_path / "out.html")]) == 2
    assert "HdrHistogram" in one_error_line(capsys)


# -- plugins and the server process ---------------------------------------------------------------


def test_a_plugin_calling_sys_exit_at_import_is_a_strategy_error(tmp_path: Path) -> None:
    plugin = tmp_path / "quitter.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(StrategyError, match="SystemExit"):
        load_spec(str(plugin))


def test_a_plugin_path_that_is_a_folder_is_not_called_missing(tmp_path: Path) -> None:
    folder = tmp_path / "plugin.py"
    folder.mkdir()
    with pytest.raises(StrategyError, match="is not a file"):
        load_spec(str(folder))


def test_serve_refuses_an_empty_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--strategy", "threads", "--host", ""]) == 2
    assert "--host is empty" in one_error_line(capsys)


@pytest.mark.timeout(60)
def test_a_plugin_printing_at_import_cannot_forge_the_ready_line(tmp_path: Path) -> None:
    plugin = tmp_path / "printer.py"
    plugin.write_text(
        textwrap.dedent(
            """
            print('{"event": "listening", "host": "127.0.0.1", "port": 1, "pid": 1}', flush=True)
            from harness.server.strategy import Strategy

            class Printer(Strategy):
                name = "printer"
                summary = "prints a forged ready line when imported"

                def serve(self, listener, app, options):
                    self.wait_for_stop(None)
            """
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.server", "--strategy", str(plugin), "--port", "0"],
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["pid"] == process.pid and first["port"] != 1
    finally:
        process.terminate()
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: it and only what it started
            process.communicate(timeout=10)
            raise
    assert b'"port": 1' in err  # the plugin's print went to stderr, where logs go


# -- the HTTP parser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [[b"GET / HTTP/1.1\nHost: x\n\n"], [b"GET / HTTP/1.1\r\nHost: x\n"], [b"GET / HTTP/1.1\r\n", b"Host: x\n"]],
    ids=["all-lf", "one-lf", "lf-in-a-later-read"],
)
def test_a_head_with_bare_lf_is_answered_400_before_it_is_complete(chunks: List[bytes]) -> None:
    parser = RequestParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    assert len(events) == 1 and isinstance(events[0], ProtocolError) and events[0].status == 400


def test_a_crlf_split_between_reads_is_not_a_bare_lf() -> None:
    parser = RequestParser()
    assert parser.feed(b"GET / HTTP/1.1\r") == []
    (request,) = parser.feed(b"\nHost: x\r\n\r\n")
    assert not isinstance(request, ProtocolError) and request.target == "/"


@pytest.mark.parametrize(
    "summary",
    ["\x1b[31mred\x1b[0m", "two\nlines", "A" * 10000],
    ids=["ansi-escape", "newline", "10-kB"],
)
def test_a_summary_that_would_rewrite_the_terminal_or_bury_the_list_is_refused(tmp_path: Path, summary: str) -> None:
    plugin = tmp_path / "loud.py"
    plugin.write_text(
        "from harness.server.strategy import Strategy\n"
        "class Loud(Strategy):\n"
        "    name = 'loud'\n"
        "    summary = %r\n"
        "    def serve(self, listener, app, options):\n"
        "        self.wait_for_stop(None)\n" % summary
    )
    with pytest.raises(StrategyError, match="summary"):
        load_spec(str(plugin))


def test_a_scenario_that_is_a_fifo_is_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "s.toml"
    os.mkfifo(scenario)
    assert cli.main(["run", str(scenario)]) == 2
    assert "not a regular file" in one_error_line(capsys)


def test_a_scenario_that_is_not_utf8_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_bytes(b"\xff\xfe strategy = 1")
    assert cli.main(["run", str(scenario)]) == 2
    assert "not UTF-8" in one_error_line(capsys)


def test_an_empty_run_output_is_refused_before_anything_starts() -> None:
    with pytest.raises(ResultsError, match="--output is empty"):
        jsonio.plan_outputs("", "threads")
