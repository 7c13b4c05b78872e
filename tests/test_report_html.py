"""The HTML report: self-contained, escaped, one figure per planned plot, and tables without matplotlib."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.report import ReportError, data, plots, write_html, write_pngs
from harness.report.html import render

ROOT = Path(__file__).resolve().parent.parent
ALL_DEFAULT = ROOT / "tests" / "fixtures" / "all-default.json"  # a schema-1 run (the first reference run)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPEAT = FIXTURES / "report-repeat.json"
INJECTION = "<script>alert('x')</script>"


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "available", lambda: False)


def test_without_matplotlib_the_tables_render_with_one_note(no_matplotlib: None) -> None:
    page = render(data.load_runs([ALL_DEFAULT]))
    assert "<svg" not in page and "<img" not in page
    assert page.count(plots.INSTALL_HINT.replace("'", "&#x27;")) == 1
    table = page[page.index('<table class="summary">') : page.index("</table>")]
    for name in ("asyncio-executor", "gevent", "pool-fromfd", "pool-socket", "scm-rights", "threads"):
        assert ">%s<" % name in table
    assert "15033" in table  # threads' ok/s, as the terminal table prints it


def test_text_from_the_json_is_escaped(no_matplotlib: None) -> None:
    page = render(data.load_runs([REPEAT]))
    assert INJECTION not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the page's own (open notes when printing)


def test_notes_leave_the_table_for_the_details_section(no_matplotlib: None) -> None:
    page = render(data.load_runs([ALL_DEFAULT]))
    table = page[page.index('<table class="summary">') : page.index("</table>")]
    stuck = json.loads(ALL_DEFAULT.read_text())["strategies"][2]["stuck"]
    assert stuck not in table and stuck in page
    link = re.search(r'<a href="#(rec-[^"]+)">stuck</a>', table)
    assert link and 'id="%s"' % link.group(1) in page


def test_verdict_forensics_and_repetitions_are_shown(no_matplotlib: None) -> None:
    page = render(data.load_runs([REPEAT]))
    assert '<section id="verdict">' in page and "hung in 1 of 5 repetitions" in page
    assert "Connection._recv (multiprocessing/connection.py:88)" in page  # a forensics frame
    assert "tcp 127.0.0.1:8080 &lt;- 127.0.0.1:50 ESTABLISHED" in page
    assert re.search(r"<td class=\"num\">5</td>", page)  # the n column


def test_compare_mode_has_deltas(no_matplotlib: None) -> None:
    page = render(data.load_runs([ALL_DEFAULT, REPEAT]))
    assert '<section id="compare">' in page and "Baseline: <b>all-default</b>" in page
    deltas = page[page.index('<table class="deltas">') :]
    assert "threads" in deltas and "one repetition" in deltas


@pytest.mark.slow
def test_page_is_self_contained_with_one_svg_per_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.html"
    write_html([ALL_DEFAULT], out)
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg") == len(plots.plan(data.load_runs([ALL_DEFAULT]))) == 1
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from the network
    assert "@media print" in page


@pytest.mark.slow
def test_pngs_are_written_one_per_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    written = write_pngs([ALL_DEFAULT], tmp_path / "png")
    assert [p.name for p in written] == ["spectrum-hello.png"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pngs_need_matplotlib(tmp_path: Path, no_matplotlib: None) -> None:
    with pytest.raises(ReportError, match="pip install"):
        write_pngs([ALL_DEFAULT], tmp_path / "png")


def test_bad_input_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        write_html([tmp_path / "missing.json"], tmp_path / "out.html")
    assert not (tmp_path / "out.html").exists()


def test_forensics_are_bounded_and_escaped() -> None:
    from harness.report.forensics import MAX_FRAMES, MAX_PROCESSES, forensics_html

    frames = [{"function": "f<%d>" % i, "filename": "a.py", "line": i, "native": False} for i in range(MAX_FRAMES + 5)]
    process = {
        "pid": 1,
        "state": "S",
        "wchan": "ep_poll",
        "threads": [{"tid": 1, "name": "Main<Thread>", "frames": frames}],
    }
    text = forensics_html({"summary": "x", "processes": [process] * (MAX_PROCESSES + 6)})
    assert "6 more processes" in text and "... 5 outer frames" in text
    assert text.count("<details>") == MAX_PROCESSES
    assert "Main&lt;Thread&gt;" in text and "f&lt;0&gt; (a.py)" in text and "f&lt;1&gt; (a.py:1)" in text


def test_a_run_without_any_ok_response_plans_no_plot() -> None:
    runs = data.load_runs([ROOT / "results" / "reference" / "fromfd-matrix.json"])
    assert plots.plan(runs) == []


def test_report_command_writes_next_to_the_input_and_fails_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_matplotlib: None
) -> None:
    from harness.cli import main
    from harness.report import report_command

    source = tmp_path / "run.json"
    source.write_text(ALL_DEFAULT.read_text(encoding="utf-8"), encoding="utf-8")
    assert report_command([str(source)]) == 0
    assert (tmp_path / "run.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert report_command([str(source)], fmt="csv") == 0
    assert (tmp_path / "run.csv").read_text(encoding="utf-8").startswith("file,created,case")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nope.json")]) == 2
    assert main(["report", str(source), "--png", str(tmp_path / "png")]) == 2  # no matplotlib
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "does not exist" in errors[0] and "pip install" in errors[1]
    assert all(line.startswith("hangbench: error: ") for line in errors)


@pytest.mark.slow
def test_run_with_report_writes_the_page_beside_the_json(tmp_path: Path) -> None:
    """`--report` on a run: `<stem>.html` next to the JSON, rendered from that JSON."""
    import subprocess
    import sys

    out = tmp_path / "run.json"
    argv = [sys.executable, "-m", "harness", "--strategy", "threads", "-d", "1", "--warmup", "0.5"]
    done = subprocess.run([*argv, "-o", str(out), "--report", "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "run.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "threads" in page
    assert "report: " in done.stdout
