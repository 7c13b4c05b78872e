"""Results files read for the report: schema version 1 or 2, every field defaulted.

The report reads the JSON itself rather than through `harness.results` so that it never depends
on how far the writer's schema has got: a version 1 record is one repetition of the "hello"
workload at the run's only level, with no intervals; a version 2 record brings its workload,
level, repetition and time series, and the run its summaries, knees and verdict. Records are
frozen; their case names follow the table's rule (the start method and the server's Python
appear only where they vary within the file).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.results.jsonio import read_json_file
from harness.results.records import ResultsError

DEFAULT_WORKLOAD = "hello"
OUTCOME_KINDS = ("ok", "hang", "refused", "reset", "closed", "malformed", "http_error")

Level = tuple[tuple[str, float], ...]  # a record's `level` dict, hashable and ordered


class ReportError(ResultsError):
    """A results file cannot be reported on; the message says which file and why."""


@dataclass(frozen=True, eq=False)
class Record:
    """One measured case x workload x level x repetition, with every field defaulted."""

    source: str  # the file's label in a compare report
    index: int  # position in its file's `strategies` list
    case: str  # the table's case name ("threads", "asyncio-executor/spawn")
    strategy: str
    start_method: str | None
    python: str
    workload: str
    level: Level
    repetition: int
    status: str
    requests: dict[str, int]
    throughput_rps: float
    hang_rate: float
    error_rate: float
    latency_us: dict[str, int]
    histogram: str
    service_latency_us: dict[str, int]
    intervals: list[dict[str, Any]]
    load_model: str
    intended_rate_rps: float | None
    achieved_rate_rps: float | None
    elapsed_s: float
    client_bound: bool
    server_cpu_s_per_1k: float | None
    server_peak_rss_mb: float | None
    broken: str | None
    stuck: str | None
    forensics: dict[str, Any] | None
    message: str | None
    leaks: list[str]
    partial: bool
    ignored_sigterm: bool
    cause: str | None = None  # why requests hung (harness.supervise.causes)
    cause_evidence: tuple[str, ...] = ()
    timelines: tuple[dict[str, Any], ...] = ()  # first N hung/failed requests' milestones

    @property
    def measured(self) -> bool:
        """Measured to the end (`no-response` too: its hangs and errors are the finding), or partly."""
        return self.status in ("completed", "no-response") or self.partial


@dataclass(frozen=True, eq=False)
class Run:
    """One results file, read tolerantly (schema version 1 or 2)."""

    path: str
    source: str  # short label: the file's stem
    created: str
    schema_version: int
    environment: dict[str, Any]
    config: dict[str, Any]
    records: tuple[Record, ...]
    summaries: tuple[dict[str, Any], ...] = ()
    knees: tuple[dict[str, Any], ...] = ()
    verdict: dict[str, Any] | None = None
    partial: bool = False


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    if not paths:
        raise ReportError("the report needs at least one results file")
    runs = [load_run(path) for path in paths]
    sources = [run.source for run in runs]
    if len(set(sources)) < len(sources):  # same stem from two folders: label by position too
        runs = [_relabel(run, "%d:%s" % (i + 1, run.source)) for i, run in enumerate(runs)]
    return runs


def load_run(path: str | Path) -> Run:
    try:
        data = read_json_file(str(path))  # a regular file of bounded size, finite numbers only
    except ResultsError as error:
        raise ReportError(str(error)) from None
    if not isinstance(data, dict) or not isinstance(data.get("strategies"), list):
        raise ReportError("%s is not a hangbench results file (no list of strategy records)" % path)
    version = data.get("schema_version")
    if version not in (1, 2):
        raise ReportError("%s: results schema version %r is not supported (the report reads 1 and 2)" % (path, version))
    source = Path(path).stem
    try:
        records = _records(data["strategies"], source)
    except (TypeError, ValueError, AttributeError) as error:
        raise ReportError("%s has a malformed strategy record (%s)" % (path, error)) from None
    return Run(
        path=str(path),
        source=source,
        created=str(data.get("created", "")),
        schema_version=int(version),
        environment=_dict(data.get("environment")),
        config=_dict(data.get("config")),
        records=records,
        summaries=tuple(item for item in data.get("summaries") or () if isinstance(item, dict)),
        knees=tuple(item for item in data.get("knees") or () if isinstance(item, dict)),
        verdict=data.get("verdict") if isinstance(data.get("verdict"), dict) else None,
        partial=bool(data.get("partial", False)),
    )


def _relabel(run: Run, source: str) -> Run:
    records = tuple(dataclasses.replace(record, source=source) for record in run.records)
    return dataclasses.replace(run, source=source, records=records)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _records(items: Iterable[Any], source: str) -> tuple[Record, ...]:
    raw = [item for item in items if isinstance(item, dict)]
    vary_method = len({item.get("start_method") for item in raw if item.get("start_method")}) > 1
    vary_python = len({item.get("python", "") for item in raw}) > 1
    records = []
    seen: dict[tuple[str, str, Level, int], int] = {}
    for index, item in enumerate(raw):
        parts = [str(item.get("strategy", "?"))]
        if vary_method and item.get("start_method"):
            parts.append(str(item["start_method"]))
        if vary_python and item.get("python"):
            parts.append("py" + str(item["python"]))
        case = "/".join(parts)
        workload = str(item.get("workload") or DEFAULT_WORKLOAD)
        level = normal_level(item.get("level"))
        repetition = int(item.get("repetition") or 0)
        # A v1 file may hold the same case twice (runs with different options): keep both apart.
        key = (case, workload, level, repetition)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            case = "%s #%d" % (case, seen[key])
        stop = _dict(item.get("stop"))
        records.append(
            Record(
                source=source,
                index=index,
                case=case,
                strategy=str(item.get("strategy", "?")),
                start_method=item.get("start_method"),
                python=str(item.get("python") or ""),
                workload=workload,
                level=level,
                repetition=repetition,
                status=str(item.get("status", "?")),
                requests={k: int(v) for k, v in _dict(item.get("requests")).items()},
                throughput_rps=float(item.get("throughput_rps") or 0.0),
                hang_rate=float(item.get("hang_rate") or 0.0),
                error_rate=float(item.get("error_rate") or 0.0),
                latency_us={k: int(v) for k, v in _dict(item.get("latency_us")).items()},
                histogram=str(item.get("histogram") or ""),
                service_latency_us={k: int(v) for k, v in _dict(item.get("service_latency_us")).items()},
                intervals=[i for i in item.get("intervals") or () if isinstance(i, dict)],
                load_model=str(item.get("load_model") or "closed"),
                intended_rate_rps=_optional_float(item.get("intended_rate_rps")),
                achieved_rate_rps=_optional_float(item.get("achieved_rate_rps")),
                elapsed_s=float(item.get("elapsed_s") or 0.0),
                client_bound=bool(item.get("client_bound", False)),
                server_cpu_s_per_1k=_optional_float(item.get("server_cpu_s_per_1k")),
                server_peak_rss_mb=_optional_float(item.get("server_peak_rss_mb")),
                broken=item.get("broken"),
                stuck=item.get("stuck"),
                forensics=item.get("forensics") if isinstance(item.get("forensics"), dict) else None,
                message=item.get("message"),
                leaks=[str(leak) for leak in item.get("leaks") or ()],
                partial=bool(item.get("partial", False)),
                ignored_sigterm=bool(stop.get("ignored_sigterm", False)),
                cause=item.get("cause") if isinstance(item.get("cause"), str) else None,
                cause_evidence=tuple(str(line) for line in item.get("cause_evidence") or ()),
                timelines=tuple(t for t in item.get("timelines") or () if isinstance(t, dict)),
            )
        )
    return tuple(records)


def normal_level(value: Any) -> Level:
    return tuple(sorted((str(k), float(v)) for k, v in _dict(value).items()))
