"""The harness's side of a distributed run: start the master, wait for workers, run jobs.

`DistributedLoad` is what the run uses instead of calling `run_load` itself: it starts the
master (and, for a local run, N worker processes on 127.0.0.1, so the distributed path is
exercised on every machine), then `run(workload)` returns the merged LoadResult exactly as
`run_load` would. Every wait is bounded; `close()` ends what it started, by process group.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from typing import IO, Any

from ..load.metrics import LoadResult
from ..load.workload import Workload
from .protocol import job_timeout

STOP_GRACE_S = 5.0


class DistributedError(Exception):
    """The distributed load could not be set up or did not answer; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class DistributedLoad:
    """A master process (and optional local workers) for the length of a run."""

    def __init__(
        self,
        expect_workers: int,
        bind: str = "127.0.0.1",
        port: int | None = None,
        local_workers: int = 0,
        wait_s: float = 120.0,
    ) -> None:
        self.expect_workers = expect_workers
        self.bind = bind
        self.port = port or free_port(bind if bind not in ("*", "0.0.0.0") else "127.0.0.1")
        self.local_workers = local_workers
        self.wait_s = wait_s
        self.workers: list[str] = []
        self._master: subprocess.Popen[bytes] | None = None
        self._locals: list[subprocess.Popen[bytes]] = []
        self._jobs = 0

    def __enter__(self) -> DistributedLoad:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        argv = [sys.executable, "-m", "harness.distributed.master", "--bind", self.bind, "--port", str(self.port)]
        argv += ["--expect-workers", str(self.expect_workers), "--wait", str(self.wait_s)]
        self._master = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
        )
        for _ in range(self.local_workers):
            worker = [sys.executable, "-m", "harness.distributed.worker", "--master", f"127.0.0.1:{self.port}"]
            self._locals.append(
                subprocess.Popen(worker, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            )
        ready = self._read(self.wait_s + 15.0)
        if ready.get("event") != "ready":
            self.close()
            raise DistributedError(str(ready.get("message", "the master did not start")))
        self.workers = list(ready["workers"])

    def run(self, workload: Workload) -> tuple[LoadResult, list[dict[str, Any]]]:
        """The merged result of `workload` spread over the workers, and each worker's report."""
        master = self._require_master()
        self._jobs += 1
        timeout_s = job_timeout(workload)
        request = {"job": self._jobs, "workload": asdict(workload), "timeout_s": timeout_s}
        assert master.stdin is not None
        master.stdin.write((json.dumps(request) + "\n").encode())
        master.stdin.flush()
        answer = self._read(timeout_s + 30.0)
        if answer.get("result") is None:
            errors = "; ".join(str(w.get("error")) for w in answer.get("workers", []) if w.get("error"))
            raise DistributedError(f"no worker returned a result ({errors or 'no reason given'})")
        return LoadResult.from_dict(answer["result"]), list(answer.get("workers", []))

    def _require_master(self) -> subprocess.Popen[bytes]:
        if self._master is None or self._master.poll() is not None:
            raise DistributedError("the distributed master is not running")
        return self._master

    def _read(self, timeout_s: float) -> dict[str, Any]:
        """One JSON line from the master, within `timeout_s`."""
        master = self._require_master()
        stream: IO[bytes] | None = master.stdout
        assert stream is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise DistributedError(f"the distributed master said nothing for {timeout_s:.0f} s")
        line = stream.readline(1 << 26)
        if not line:
            raise DistributedError(f"the distributed master exited (code {master.wait(STOP_GRACE_S)})")
        data = json.loads(line)
        if not isinstance(data, dict):
            raise DistributedError("the distributed master wrote something that is not a JSON object")
        return data

    def close(self) -> None:
        """Close the master's stdin (it tells the workers to quit), then end everything started."""
        if self._master is not None and self._master.stdin is not None:
            try:
                self._master.stdin.close()
            except OSError:
                pass
        for process in [p for p in (self._master, *self._locals) if p is not None]:
            _end(process)
        self._master, self._locals = None, []


def _end(process: subprocess.Popen[bytes]) -> None:
    """Wait briefly, then SIGTERM and SIGKILL the process's group (it was started in its own)."""
    deadline = time.monotonic() + STOP_GRACE_S
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None:
            try:
                os.killpg(process.pid, signum)
            except OSError:
                return
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
            return
        except subprocess.TimeoutExpired:
            deadline = time.monotonic() + STOP_GRACE_S
