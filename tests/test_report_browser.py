"""The report opens in headless Chromium: no console error, one figure per plot, a screenshot that is not blank."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report import data, plots, write_html
from harness.report.browser import check_page, find_chromium, screenshot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed"),
]
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPORTS = {
    "all-default": [ROOT / "results" / "reference" / "all-default.json"],
    "sweep": [FIXTURES / "report-sweep.json"],
    "repeat": [FIXTURES / "report-repeat.json"],
    "compare": [FIXTURES / "report-repeat.json", ROOT / "results" / "reference" / "all-default.json"],
}


@pytest.mark.parametrize("name", list(REPORTS))
def test_report_opens_cleanly_in_chromium(tmp_path: Path, name: str) -> None:
    from PIL import Image, ImageStat

    page = tmp_path / ("%s.html" % name)
    write_html(REPORTS[name], page)
    expected = len(plots.plan(data.load_runs(REPORTS[name])))
    assert expected >= 1

    checked = check_page(page)
    assert checked.console_errors == ()
    assert checked.dom.count("<svg") == expected  # one inline SVG per plot, none lost or doubled
    assert 'id="summary"' in checked.dom

    shot = screenshot(page, tmp_path / ("%s.png" % name), 1280, 2000)
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        grey = image.convert("L")
        spread = ImageStat.Stat(grey).stddev[0]
        levels = grey.histogram()
    assert spread > 10  # text, tables and plots: a blank or single-colour page has about 0
    assert sum(levels[:250]) > 0.03 * sum(levels)  # at least 3 % of the pixels are ink
