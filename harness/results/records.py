"""Result records: one `RunRecord` per run, one `StrategyRecord` per case.

A run is the environment it ran in, its whole configuration and one `StrategyRecord` per
(strategy, start method, interpreter) case. Records are frozen and round-trip through JSON
unchanged, so `compare` works on files written by any earlier run of the same schema version.
The format is documented in `results/README.md`; the JSON file itself is read and written by
`jsonio`, and the numbers are derived from the measurements by `derive`.

Reading checks each field's type against the record's annotations, so a hand-edited file with
`"throughput_rps": "fast"` is refused in one sentence instead of failing later in a table.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional

from ..errors import COMPLETED, CRASHED, FAILED_TO_START, INTERRUPTED, NO_RESPONSE, NOT_READY, TIMED_OUT

SCHEMA_VERSION = 1

__all__ = [
    "COMPLETED",
    "CRASHED",
    "FAILED_TO_START",
    "INTERRUPTED",
    "NOT_READY",
    "NO_RESPONSE",
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

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ResultsError(
                "results schema version %r is not supported (this hangbench reads %d)" % (version, SCHEMA_VERSION)
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
