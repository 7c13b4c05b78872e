"""Results on disk: where they go, the atomic write, and reading a file back (with one-sentence
errors for anything that is not a results file).

Files are written atomically (a temporary file in the same folder, then `os.replace`): a Ctrl-C
or a crash leaves the previous file or the new one, never half a JSON document. Replacing is
only right for a regular file, so an output path must be a new path or a regular file (or a
symlink to one, which is followed and kept): a folder, a FIFO, a device such as /dev/null or a
socket is refused before the run starts -- renaming onto /dev/null as root would turn it into a
regular file. The Markdown table goes beside the JSON as `<stem>.md`, never to a name the user
did not give, except for the default output path, whose table is `results/latest.md`.

`write_text_atomic` checks the same again at the moment of writing (every writer -- the run, the
report, `replay` -- goes through it, and not all of them plan their outputs first), and reading
(`read_json_file`) takes only a regular file of bounded size: /dev/zero or a FIFO given as a
results file would otherwise be read forever. NaN and Infinity are not JSON, and a results file
holding them is refused rather than crashing the statistics later.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import UsageError
from .records import ResultsError, RunRecord

RESULTS_DIR = Path("results")
LATEST_TABLE = "latest.md"
MAX_INPUT_BYTES = 1 << 30  # a results file larger than this is not one (the biggest sweeps are tens of MB)


class OutputError(ResultsError, UsageError, OSError):
    """An output path cannot be written safely: the user's to fix, so also a UsageError (exit 2);
    an OSError too, as a failed write was before this class, for callers that catch that."""


@dataclass(frozen=True)
class Outputs:
    """Where a run writes: `json` and `table` are the real targets (symlinks followed)."""

    json: Path
    table: Path
    shown: Path  # the JSON path as the user gave it (or the default), for messages and the label


def utc_stamp(now: Optional[_dt.datetime] = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def default_path(label: str, results_dir: Path = RESULTS_DIR) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:60] or "run"
    return results_dir / ("%s-%s.json" % (utc_stamp(), safe))


def plan_outputs(output: Optional[str], label: str) -> Outputs:
    """Check both targets before the run starts; ResultsError (one sentence) if they cannot be written."""
    if output is None:
        shown = default_path(label)
        table = shown.parent / LATEST_TABLE
    else:
        if not output.strip():
            raise ResultsError("--output is empty; give a file name ending in .json or leave it out")
        if output.endswith(os.sep):
            raise ResultsError("output path %s is a folder; give a file name ending in .json" % output)
        shown = Path(output)
        if shown.suffix in (".md", ".html"):  # the names of its table and of its --report page
            raise ResultsError(
                "output path %s ends in %s, a name hangbench writes beside it; give a name ending in .json"
                % (output, shown.suffix)
            )
        table = shown.with_suffix(".md")
    return Outputs(check_writable(shown), check_writable(table), shown)


def check_writable(path: Path) -> Path:
    """The path to write `path` through (its target if it is a symlink), checked: a new name or a
    regular file, in a folder that exists (or can be made) and takes a new file."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    _check_kind(path, target)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ResultsError("cannot create the output folder %s: %s" % (folder, error.strerror or error)) from None
    # Try it: os.access says yes to root everywhere, even on /proc or a read-only mount.
    try:
        handle, probe = tempfile.mkstemp(prefix=".%s." % target.name, suffix=".probe", dir=str(folder))
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ResultsError("output folder %s is not writable: %s" % (folder, error.strerror or error)) from None
    return target


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_kind(path: Path, target: Path) -> None:
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # a new file (the folder is checked next)
        if path.is_symlink():
            raise ResultsError(
                "output path %s is a symlink to nothing (%s); give a file name" % (path, target)
            ) from None
        return
    except OSError as error:
        raise ResultsError("cannot inspect output path %s: %s" % (path, error.strerror or error)) from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    via = " (through a symlink)" if target != path else ""
    if kind == "a folder":
        raise ResultsError("output path %s is a folder%s; give a file name ending in .json" % (path, via))
    raise ResultsError(
        "output path %s is %s%s, not a regular file; results are written by replacing the file, "
        "so give a regular file name" % (path, kind, via)
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` by replacing it: only a new path or a regular file (a symlink's
    target is replaced, the link kept). OutputError (one sentence) for anything else."""
    if not str(path) or path.name in ("", ".", ".."):
        raise OutputError("output path %r names no file; give a file name" % str(path))
    try:
        target = check_writable(path)
    except OutputError:
        raise
    except ResultsError as error:
        raise OutputError(str(error)) from None
    try:
        _replace_with(target, text)
    except OSError as error:
        raise OutputError("cannot write %s: %s" % (path, error.strerror or error)) from None


def _replace_with(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".%s." % path.name, suffix=".tmp", dir=str(path.parent))
    try:
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; a results file is for sharing
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_run(record: RunRecord, path: Path) -> None:
    write_text_atomic(path, json.dumps(record.to_dict(), indent=2, sort_keys=False) + "\n")


def read_json_file(path: str, what: str = "results file") -> Any:
    """The JSON document in `path`, which must be a regular file of at most MAX_INPUT_BYTES
    holding finite numbers only; ResultsError (one sentence, naming `what` and `path`) otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the kind is checked on the open fd.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ResultsError("%s %s does not exist" % (what, path)) from None
    except OSError as error:
        raise ResultsError("cannot read %s %s: %s" % (what, path, _one_line(error))) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ResultsError("cannot read %s %s: it is a folder, not a file" % (what, path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise ResultsError("cannot read %s %s: it is %s, not a regular file" % (what, path, kind))
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as stream:
            raw = stream.read(MAX_INPUT_BYTES + 1)
    except OSError as error:
        raise ResultsError("cannot read %s %s: %s" % (what, path, _one_line(error))) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_INPUT_BYTES:
        raise ResultsError(
            "%s %s is larger than %d MiB; it is not a results file" % (what, path, MAX_INPUT_BYTES >> 20)
        )
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise ResultsError("cannot read %s %s: its JSON is nested too deeply" % (what, path)) from None
    except ValueError as error:  # also UnicodeDecodeError
        raise ResultsError("cannot read %s %s: %s" % (what, path, _one_line(error))) from None


def _not_json(name: str) -> Any:
    raise ValueError("it holds %s, which is not a JSON number" % name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("it holds the number %s, too large for a float" % text[:40])
    return value


def read_run(path: str) -> RunRecord:
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise ResultsError(
            "%s is not a hangbench results file (it holds a JSON %s, not an object)" % (path, type(data).__name__)
        )
    try:
        return RunRecord.from_dict(data)
    except ResultsError as error:  # which of the files given: say it
        if "schema version" in str(error):
            raise ResultsError("%s: %s" % (path, error)) from None
        raise ResultsError("%s is not a hangbench results file: %s" % (path, error)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ResultsError("%s is not a hangbench results file (missing or bad field %s)" % (path, error)) from None


def _one_line(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split())
