"""Reports of results files: a self-contained HTML page, a CSV table, and PNGs of the plots.

The entry points the CLI calls (each reads one or more results files of schema version 1 or 2;
with several, the first is the baseline of a comparison):

- `write_html(paths, out)`: one HTML file, no network needed to view it, printable;
- `write_csv(paths, out)`: one row per record, columns documented in `csv_export`;
- `write_pngs(paths, out_dir)`: each plot of the page as a PNG, for READMEs; needs matplotlib;
- `report_command(...)`: all three behind one call for the CLI, with its exit status.

They raise `ReportError` (a `ResultsError`) with a one-sentence message for a file that cannot be
read, and `write_pngs` raises it when matplotlib is missing. Plotting needs the optional extra
`hangbench[report]` (matplotlib); the HTML renders its tables without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from . import plots
from .csv_export import write_csv
from .data import ReportError, load_runs
from .html import write_html


def write_pngs(paths: Sequence[str | Path], out_dir: Path, dpi: int = 150) -> list[Path]:
    """Write every plot of the report as `out_dir/<slug>.png`; returns the files written."""
    runs = load_runs(paths)
    if not plots.available():
        raise ReportError(plots.INSTALL_HINT)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError("cannot create the PNG folder %s: %s" % (out_dir, error.strerror or error)) from None
    written = []
    for spec in plots.plan(runs):
        path = out_dir / (spec.slug + ".png")
        path.write_bytes(plots.to_png(spec.build(), dpi=dpi))
        written.append(path)
    return written


def report_command(
    paths: Sequence[str], output: str | None = None, fmt: str = "html", png_dir: str | None = None
) -> int:
    """`python -m harness report A.json [B.json ...] [-o OUT] [--format html|csv] [--png DIR]`.

    The output defaults to the first file with the format's suffix. Returns the exit status:
    0; input the user can fix (a missing or foreign file, PNGs without matplotlib) raises
    UsageError, which the command line reports in one sentence with exit status 2."""
    if fmt not in ("html", "csv"):
        raise UsageError("--format must be html or csv (got %r)" % fmt)
    if not paths:
        raise UsageError("report needs at least one results file")
    if output is not None and not output.strip():
        raise UsageError("--output is empty; give a file name or leave it out")
    out = Path(output) if output is not None else Path(paths[0]).with_suffix("." + fmt)
    try:
        (write_html if fmt == "html" else write_csv)(paths, out)
        written = write_pngs(paths, Path(png_dir)) if png_dir else []
    except (ReportError, OSError) as error:
        raise UsageError(str(error)) from None
    print("hangbench: wrote %s%s" % (out, " and %d PNG file(s) in %s" % (len(written), png_dir) if png_dir else ""))
    return 0


__all__ = ["ReportError", "report_command", "write_csv", "write_html", "write_pngs"]
