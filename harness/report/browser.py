"""Open a report in headless Chromium: its screenshot, its DOM and its console errors.

The report is checked in a real browser (the tests) and its screenshots in docs/ are made the
same way (`python -m harness.report.browser REPORT.html OUT.png`). Chromium runs with
everything that could reach the network switched off, a throw-away profile, and a time bound;
a run that exceeds it is killed with its process group.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
QUIET = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
# Chromium logs page console messages as `CONSOLE(line)] "text"` or `Uncaught ...` at --v=0.
CONSOLE_ERROR = re.compile(r"(Uncaught|CONSOLE\(\d+\)\]|:CONSOLE:|console.*error)", re.IGNORECASE)


class BrowserError(Exception):
    """Chromium is missing, failed, or took too long; the message says which."""


@dataclass(frozen=True)
class PageCheck:
    dom: str
    console_errors: tuple[str, ...]


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    chromium = find_chromium()
    if chromium is None:
        raise BrowserError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="hangbench-chromium-") as profile:
        command = [chromium, *QUIET, "--user-data-dir=" + profile, *args]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise BrowserError("chromium did not finish within %g s" % timeout_s) from None
    if process.returncode != 0:
        raise BrowserError("chromium failed (exit %d): %s" % (process.returncode, err.strip()[-300:]))
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def check_page(html_path: Path, timeout_s: float = 60.0) -> PageCheck:
    """The DOM after the page loaded, and any console error it logged."""
    done = _run(["--enable-logging=stderr", "--v=0", "--dump-dom", Path(html_path).resolve().as_uri()], timeout_s)
    errors = tuple(line for line in done.stderr.splitlines() if CONSOLE_ERROR.search(line))
    return PageCheck(done.stdout, errors)


def screenshot(html_path: Path, png_path: Path, width: int = 1280, height: int = 2000, timeout_s: float = 60.0) -> Path:
    png_path = Path(png_path).resolve()
    size = "--window-size=%d,%d" % (width, height)
    _run(["--screenshot=" + str(png_path), size, Path(html_path).resolve().as_uri()], timeout_s)
    if not png_path.exists():
        raise BrowserError("chromium wrote no screenshot to %s" % png_path)
    return png_path


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m harness.report.browser REPORT.html OUT.png [WIDTHxHEIGHT]", file=sys.stderr)
        return 2
    width, height = (int(v) for v in argv[2].split("x")) if len(argv) == 3 else (1280, 2000)
    try:
        screenshot(Path(argv[0]), Path(argv[1]), width, height)
    except BrowserError as error:
        print("hangbench: %s" % error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
