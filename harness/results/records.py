"""Result records, environment capture, and JSON read/write (atomic, versioned).

A run is one `RunRecord`: the environment it ran in, its whole configuration and one
`StrategyRecord` per (strategy, start method, interpreter) case. Records are frozen and
round-trip through JSON unchanged, so `compare` works on files written by any earlier run of
the same schema version. The format is documented in `results/README.md`.

Files are written atomically (a temporary file in the same folder, then `os.replace`): a
Ctrl-C or a crash leaves the previous file or the new one, never half a JSON document.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

SCHEMA_VERSION = 1
PACKAGES = ("hangbench", "gevent", "loguru", "tabulate", "hdrhistogram", "psutil", "uvloop", "py-spy", "pytest-benchmark")

# Statuses of a StrategyRecord.
COMPLETED = "completed"  # measured to the end (hangs and errors are findings, not failures)
FAILED_TO_START = "failed-to-start"
CRASHED = "crashed"
NOT_READY = "not-ready"
TIMED_OUT = "timed-out"
INTERRUPTED = "interrupted"


class ResultsError(Exception):
    """A results file cannot be read or written; the message says which and why."""


@dataclass(frozen=True)
class StrategyRecord:
    strategy: str
    status: str
    start_method: Optional[str] = None
    python: str = ""  # the server side's interpreter version
    broken: Optional[str] = None  # the strategy's own statement of how it misbehaves
    requests: Dict[str, int] = field(default_factory=dict)  # counts by outcome
    throughput_rps: float = 0.0
    hang_rate: float = 0.0
    error_rate: float = 0.0
    latency_us: Dict[str, int] = field(default_factory=dict)  # p50 p90 p99 p999 max
    histogram: str = ""  # HdrHistogram, standard compressed base64 encoding, microseconds
    elapsed_s: float = 0.0
    client_cpu_util: float = 0.0  # busiest client process: CPU seconds / wall seconds
    client_cpu_s: float = 0.0  # all client processes, during measurement
    server_cpu_util: float = 0.0  # server tree CPU seconds / wall seconds (cores), during measurement
    machine_cpu_busy: float = 0.0  # share of all the machine's cores busy during measurement
    client_bound: bool = False
    server_cpu_s_per_1k: Optional[float] = None
    server_peak_rss_mb: Optional[float] = None
    error_detail: Dict[str, int] = field(default_factory=dict)
    stuck: Optional[str] = None  # one phrase from the forensics: where the server was stuck
    forensics: Optional[Dict[str, Any]] = None
    stop: Optional[Dict[str, Any]] = None  # how the server stopped: exit code, SIGKILLs, leaks
    server_fds: List[int] = field(default_factory=list)  # open fds of the server tree: [before warm-up, end]
    leaks: List[str] = field(default_factory=list)
    message: Optional[str] = None  # why it failed, with the tail of the server's stderr
    partial: bool = False
    wall_s: float = 0.0  # the whole case: start, warm-up, measurement, stop

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StrategyRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class RunRecord:
    created: str
    label: str
    environment: Dict[str, Any]
    config: Dict[str, Any]
    strategies: List[StrategyRecord]
    partial: bool = False
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunRecord":
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ResultsError("results schema version %r is not supported (this hangbench reads %d)" % (version, SCHEMA_VERSION))
        return cls(
            created=data["created"],
            label=data["label"],
            environment=dict(data["environment"]),
            config=dict(data["config"]),
            strategies=[StrategyRecord.from_dict(item) for item in data["strategies"]],
            partial=bool(data.get("partial", False)),
        )


def utc_stamp(now: Optional[_dt.datetime] = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def default_path(label: str, results_dir: Path = Path("results")) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:60] or "run"
    return results_dir / ("%s-%s.json" % (utc_stamp(), safe))


def check_writable(path: Path) -> None:
    """Fail before a run, not after it: the folder must exist (or be creatable) and be writable."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ResultsError("cannot create the output folder %s: %s" % (folder, error.strerror or error))
    if path.is_dir():
        raise ResultsError("output path %s is a folder; give a file name ending in .json" % path)
    # Try it: os.access says yes to root everywhere, even on /proc or a read-only mount.
    try:
        handle, probe = tempfile.mkstemp(prefix=".%s." % path.name, suffix=".probe", dir=str(folder))
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ResultsError("output folder %s is not writable: %s" % (folder, error.strerror or error))


def write_text_atomic(path: Path, text: str) -> None:
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


def read_run(path: str) -> RunRecord:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError:
        raise ResultsError("results file %s does not exist" % path)
    except (OSError, ValueError) as error:
        raise ResultsError("cannot read results file %s: %s" % (path, error))
    if not isinstance(data, dict):
        raise ResultsError("%s is not a hangbench results file (it holds a JSON %s, not an object)" % (path, type(data).__name__))
    try:
        return RunRecord.from_dict(data)
    except ResultsError as error:  # which of the files given: say it
        raise ResultsError("%s: %s" % (path, error))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ResultsError("%s is not a hangbench results file (missing or bad field %s)" % (path, error))


def capture_environment() -> Dict[str, Any]:
    """Where the numbers came from: interpreter, OS, kernel, CPU, packages, git commit, load."""
    uname = platform.uname()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": os.path.realpath(os.sys.executable),
        "os": platform.platform(),
        "kernel": uname.release,
        "machine": uname.machine,
        "hostname": uname.node,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": _package_versions(),
        "git_commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    versions: Dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git_commit() -> Optional[str]:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
