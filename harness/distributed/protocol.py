"""The messages of the distributed load path, as plain JSON-able dicts (no Locust import here).

Master <-> harness (JSON lines over the master's stdin/stdout):
    -> {"job": N, "workload": {...Workload fields...}, "timeout_s": T}
    <- {"event": "ready", "workers": [ids]}      once the expected workers are connected
    <- {"event": "error", "message": "..."}      the master cannot go on (e.g. too few workers)
    <- {"job": N, "result": {...LoadResult...}, "workers": [{"worker": id, "result" | "error"}]}

Master <-> worker (Locust custom messages):
    "hangbench_job"     {"job": N, "workload": {...share...}, "timeout_s": T}
    "hangbench_result"  {"job": N, "worker": id, "result": {...}} or {"job": N, "worker": id, "error": "..."}
"""

from __future__ import annotations

import dataclasses
from typing import Any

JOB = "hangbench_job"
RESULT = "hangbench_result"
DEFAULT_PORT = 5557  # Locust's own default master port
JOB_SLACK_S = 30.0  # start-up of a fresh interpreter on the worker, and the trip back


def job_timeout(workload: Any) -> float:
    """How long the master waits for a worker's share: the run's own bound plus slack."""
    length = workload.duration_s if workload.duration_s is not None else 300.0
    return float(workload.warmup_s + length + workload.deadline_s + JOB_SLACK_S)


def workload_dict(workload: Any) -> dict[str, Any]:
    return dataclasses.asdict(workload)


def parse_master(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `HOST` (Locust's default port) -> (host, port); ValueError in one sentence."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(DEFAULT_PORT)
    host = host.strip("[]")
    if not host:
        raise ValueError(f"--master {text!r} names no host; write HOST:PORT")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--master {text!r}: the port must be a number from 1 to 65535")
    return host, int(port)
