"""Result records: one `RunRecord` per run, one `StrategyRecord` per case.

A run is the environment it ran in, its whole configuration and one `StrategyRecord` per
(strategy, start method, interpreter) case x workload x level x repetition, plus what is computed
from the records: the `summaries` over repetitions, the `knees` of sweeps and the `verdict`.
Records are frozen and round-trip through JSON unchanged, so `compare` works on files written
by any earlier run of a readable schema version.
The format is documented in `results/README.md`; the JSON file itself is read and written by
`jsonio`, and the numbers are derived from the measurements by `derive`.

Schema version 2 added fields to both records; a version 1 file still reads, each missing field
taking its default (workload "hello", level {}, repetition 0, no summaries, knees or verdict).

Reading checks each field's type against the record's annotations, so a hand-edited file with
`"throughput_rps": "fast"` is refused in one sentence instead of failing later in a table.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional

from ..errors import COMPLETED, CRASHED, FAILED_TO_START, INTERRUPTED, NO_RESPONSE, NOT_READY, TIMED_OUT

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # a version 1 file lacks only fields that have defaults

__all__ = [
    "COMPLETED",
    "CRASHED",
    "FAILED_TO_START",
    "INTERRUPTED",
    "NOT_READY",
    "NO_RESPONSE",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "TIMED_OUT",
    "ResultsError",
    "RunRecord",
    "StrategyRecord",
]


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
    server_cpu_util: Optional[float] = 0.0  # server tree CPU s / wall s (cores), during measurement; None: external
    machine_cpu_busy: float = 0.0  # share of all the machine's cores busy during measurement
    client_bound: bool = False
    server_cpu_s_per_1k: Optional[float] = None
    server_peak_rss_mb: Optional[float] = None  # peak memory of the server tree, MiB, as server_mem_kind
    server_mem_kind: Optional[str] = None  # "pss" (shared pages counted once), "uss", or "rss" (summed)
    error_detail: Dict[str, int] = field(default_factory=dict)
    stuck: Optional[str] = None  # one phrase from the forensics: where the server was stuck
    forensics: Optional[Dict[str, Any]] = None
    stop: Optional[Dict[str, Any]] = None  # how the server stopped: exit code, SIGKILLs, leaks
    server_fds: List[int] = field(default_factory=list)  # open fds of the server tree: [before warm-up, end]
    leaks: List[str] = field(default_factory=list)
    message: Optional[str] = None  # why it failed, with the tail of the server's stderr
    partial: bool = False
    wall_s: float = 0.0  # the whole case: start, warm-up, measurement, stop
    # Schema 2: which run of the matrix this record is, and the load model's own figures.
    workload: str = "hello"  # the named workload (harness.workloads)
    level: Dict[str, Any] = field(default_factory=dict)  # {} or a sweep's {"concurrency": 32} / {"rate": 2000.0}
    repetition: int = 0  # 0-based, of --repeat
    load_model: str = "closed"  # "closed" or "open" (--rate)
    intended_rate_rps: Optional[float] = None  # open loop: the rate asked for
    achieved_rate_rps: Optional[float] = None  # measured requests actually sent per second
    service_histogram: str = ""  # open loop: uncorrected (from the actual send) HdrHistogram, encoded
    service_latency_us: Dict[str, int] = field(default_factory=dict)  # its p50 p90 p99 p999 max
    intervals: List[Dict[str, Any]] = field(default_factory=list)  # one per second of measurement
    schedule_lag_us: Dict[str, int] = field(default_factory=dict)  # open loop: send minus intended time
    # Issue 15: a server the harness did not start (--url), and per-worker results of --engine distributed.
    server: str = "harness"  # "harness" (started and watched by the run) or "external" (no server metrics)
    url: Optional[str] = None  # --url: the target as given
    workers: List[Dict[str, Any]] = field(default_factory=list)  # [{worker, counts, histogram, ...}]
    # Issue 16: why requests hung (harness.supervise.causes) and where each one stopped (client side).
    cause: Optional[str] = None  # lost-task, fin-held, fd-not-open-in-worker, worker-died, overloaded, unknown
    cause_evidence: List[str] = field(default_factory=list)  # the facts the cause was named from, one per line
    cause_facts: Optional[Dict[str, Any]] = None  # the connection snapshot: accept queue, connections, holders
    timelines: List[Dict[str, Any]] = field(default_factory=list)  # first N hung/failed requests' milestones
    hang_milestones: Dict[str, int] = field(default_factory=dict)  # hung requests by the last milestone reached
    # Issue 14: where the load generator ran (harness.placement).
    client_procs: int = 1  # client processes the load ran in
    client_procs_why: str = ""  # how that number was chosen (--client-procs auto: from the cores and the strategy)
    pinned: Dict[str, List[int]] = field(default_factory=dict)  # --pin: {"server": [CPUs], "client": [CPUs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StrategyRecord:
        """Known fields only (a later harness may add some), each of its annotated type."""
        if not isinstance(data, Mapping):
            raise ResultsError("a strategy record is a JSON %s, not an object" % type(data).__name__)
        hints = typing.get_type_hints(cls)
        values = {}
        for item in fields(cls):
            if item.name in data:
                values[item.name] = _checked(item.name, data[item.name], hints[item.name])
        missing = [item.name for item in fields(cls)[:2] if item.name not in values]
        if missing:
            raise ResultsError("a strategy record has no %r field" % missing[0])
        return cls(**values)


@dataclass(frozen=True)
class RunRecord:
    created: str
    label: str
    environment: Dict[str, Any]
    config: Dict[str, Any]
    strategies: List[StrategyRecord]
    partial: bool = False
    schema_version: int = SCHEMA_VERSION
    summaries: List[Dict[str, Any]] = field(default_factory=list)  # stats.summarize(strategies)
    knees: List[Dict[str, Any]] = field(default_factory=list)  # results.knee, one per swept case x workload
    verdict: Optional[Dict[str, Any]] = None  # results.verdict

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise ResultsError(
                "results schema version %r is not supported (this hangbench reads %s)"
                % (version, " and ".join(str(v) for v in READABLE_VERSIONS))
            )
        for name in ("created", "label", "environment", "config", "strategies"):
            if name not in data:
                raise ResultsError("it has no %r field" % name)
        strategies = data["strategies"]
        if not isinstance(strategies, list):
            raise ResultsError("field 'strategies' is a JSON %s, not a list" % _json_type(strategies))
        return cls(
            created=_checked("created", data["created"], str),
            label=_checked("label", data["label"], str),
            environment=dict(_checked("environment", data["environment"], Dict[str, Any])),
            config=dict(_checked("config", data["config"], Dict[str, Any])),
            strategies=[StrategyRecord.from_dict(item) for item in strategies],
            partial=_checked("partial", data.get("partial", False), bool),
            schema_version=version,
            summaries=list(_checked("summaries", data.get("summaries") or [], List[Dict[str, Any]])),
            knees=list(_checked("knees", data.get("knees") or [], List[Dict[str, Any]])),
            verdict=_checked("verdict", data.get("verdict"), Optional[Dict[str, Any]]),
        )


def _checked(name: str, value: Any, hint: Any) -> Any:
    """`value` if it is of the annotated type (ints pass for floats), else ResultsError."""
    if not _is_instance(value, hint):
        raise ResultsError("field %r is a JSON %s, which is not of the right type" % (name, _json_type(value)))
    return value


def _is_instance(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is typing.Union:
        return any(_is_instance(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (dict, Dict):
        _key, item = typing.get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(_is_instance(v, item) for v in value.values())
    if origin in (list, List):
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_is_instance(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
