"""What the supervisor hands back: the startup failure, resource samples, the stop report.

Records only (frozen dataclasses and the exceptions), so that the modules that fill them in
(lifecycle, ready-line reader, probes, fd audit) and the orchestration that reads them share one
definition. Status words come from `harness.errors`, the single source of the vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..errors import CRASHED, FAILED_TO_START, NOT_READY, describe_exit

STARTUP_STATUSES = (FAILED_TO_START, CRASHED, NOT_READY)
__all__ = ["STARTUP_STATUSES", "ResourceSample", "StartupFailure", "StopReport", "SupervisorError", "describe_exit"]


class SupervisorError(Exception):
    """The supervisor was used wrongly (e.g. started twice); the message says how to fix it."""


@dataclass(frozen=True)
class ResourceSample:
    at_s: float  # seconds since the server was started
    cpu_s: float  # user+system CPU of every process of the tree so far, exited ones included
    rss_bytes: int  # resident memory summed over the live processes of the tree
    peak_rss_bytes: int  # the largest rss_bytes seen so far
    n_processes: int
    mem_bytes: int = 0  # memory of the live processes as `mem_kind`: PSS counts shared pages once
    peak_mem_bytes: int = 0  # the largest mem_bytes seen so far
    mem_kind: str = "rss"  # "pss", "uss" or "rss"


@dataclass(frozen=True)
class StopReport:
    exit_code: Optional[int]  # of the server process; negative = killed by that signal
    ignored_sigterm: bool  # the server process was still alive when the grace period ran out
    killed_pids: Tuple[int, ...]  # processes that needed SIGKILL
    leftover_pids: Tuple[int, ...]  # processes still alive afterwards: should be empty
    port_free: Optional[bool]  # the port can be bound again; None if no port was ever reported
    fd_leak: int  # fds of the harness opened since start that still refer to this server
    #              (its pipe, its log files, a connection to its port); should be 0
    terminated_pids: Tuple[int, ...] = ()  # processes of the tree that ended without SIGKILL
    tree_pids: Tuple[int, ...] = ()  # every process ever seen in the tree
    duration_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0  # summed RSS: counts a page shared by N forked copies N times
    fd_delta: int = 0  # all of the harness's open fds after stop minus before start: other
    #                    components (a load generator's event loop) may move this one
    leaked_fds: Tuple[str, ...] = ()  # what the fd_leak fds point to, e.g. "pipe:[123]"
    peak_mem_bytes: int = 0  # peak memory of the tree as `mem_kind`
    mem_kind: str = "rss"  # "pss" (proportional: shared pages split), "uss" or "rss"
    sample_interval_s: float = 0.0  # the largest gap between two samples: shorter peaks may be missed
    containment: str = ""  # "cgroup" or "subreaper+poll": how the tree's members were found
    containment_note: str = ""  # why the cgroup was not used, when it was not
    output_bytes: Tuple[int, int] = (0, 0)  # bytes the server wrote to (stdout, stderr)
    output_dropped_bytes: int = 0  # of those, kept neither in the logs' heads nor their tails
    log_errors: Tuple[str, ...] = ()  # log or forensics writes that failed (the run went on)

    @property
    def clean(self) -> bool:
        """Nothing left behind: no process, the port is free, no fd leaked."""
        return not self.leaks()

    def leaks(self) -> List[str]:
        """One sentence per thing left behind (empty when clean)."""
        found = []
        if self.leftover_pids:
            found.append(
                "%d process(es) survived SIGKILL: %s"
                % (len(self.leftover_pids), ", ".join(map(str, self.leftover_pids)))
            )
        if self.port_free is False:
            found.append("the server's port is still bound after stop")
        if self.fd_leak > 0:
            found.append(
                "the harness still holds %d fd(s) of the server: %s" % (self.fd_leak, ", ".join(self.leaked_fds))
            )
        return found

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class StartupFailure(Exception):
    """The server did not become ready. `status` is one of FAILED_TO_START, CRASHED, NOT_READY.

    By the time this is raised the server tree has been stopped; `stop_report` says how.
    """

    def __init__(
        self,
        status: str,
        message: str,
        stderr_tail: str,
        exit_code: Optional[int] = None,
        stop_report: Optional[StopReport] = None,
        stuck: Optional[str] = None,
    ) -> None:
        super().__init__("%s: %s" % (status, message))
        self.status = status
        self.message = message
        self.stderr_tail = stderr_tail
        self.exit_code = exit_code
        self.stop_report = stop_report
        self.stuck = stuck  # forensics summary for a not-ready server that was alive, if captured
