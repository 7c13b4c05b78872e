"""The master of a distributed run: a Locust `MasterRunner` in its own process, fed by the harness.

    python -m harness.distributed.master --bind HOST --port PORT --expect-workers N

It waits (bounded) for N workers, prints `{"event": "ready", ...}`, then reads one job per line
on stdin, splits the workload among the workers (`Workload.share`), sends each its share, waits
(bounded) for every answer and prints the merged LoadResult. The merge is exact: hangbench's
`LoadResult.merge` adds the workers' HdrHistograms bucket by bucket. A worker that does not
answer in time makes the result `partial`, and its absence is listed, never hidden. EOF on stdin
ends the run: the master tells the workers to quit and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .protocol import JOB, RESULT

WORKER_WAIT_S = 120.0
POLL_S = 0.2


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.distributed.master")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5557)
    parser.add_argument("--expect-workers", type=int, default=1)
    parser.add_argument("--wait", type=float, default=WORKER_WAIT_S, help="seconds to wait for the workers")
    args = parser.parse_args(argv)

    # Locust monkey-patches this process on import: this process is the master and nothing else.
    import gevent
    from gevent.event import Event
    from gevent.fileobject import FileObjectPosix
    from locust import User, constant, task
    from locust.env import Environment

    from ..load.metrics import LoadResult
    from ..load.workload import Workload

    class Idle(User):
        wait_time = constant(1)

        @task
        def idle(self) -> None:
            """Never runs."""

    environment = Environment(user_classes=[Idle])
    runner = environment.create_master_runner(args.bind, args.port)
    answers: dict[int, dict[str, dict[str, Any]]] = {}
    arrived: dict[int, Event] = {}

    def on_result(environment: Any, msg: Any, **_kw: Any) -> None:
        data = dict(msg.data)
        job = data.get("job")
        if isinstance(job, int) and job in answers:
            answers[job][str(data.get("worker"))] = data
            arrived[job].set()

    runner.register_message(RESULT, on_result)
    deadline = time.monotonic() + args.wait
    while len(runner.clients.ready) < args.expect_workers and time.monotonic() < deadline:
        gevent.sleep(POLL_S)
    workers = [node.id for node in runner.clients.ready][: args.expect_workers]
    if len(workers) < args.expect_workers:
        _emit(
            {
                "event": "error",
                "message": f"{len(workers)} of {args.expect_workers} workers connected in {args.wait:g} s",
            }
        )
        runner.quit()
        return 1
    _emit({"event": "ready", "workers": workers})

    stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    for raw in iter(stdin.readline, b""):
        request = json.loads(raw)
        job, timeout_s = int(request["job"]), float(request["timeout_s"])
        shares = Workload(**request["workload"]).share(len(workers))
        answers[job], arrived[job] = {}, Event()
        for worker, share in zip(workers, shares, strict=True):
            runner.send_message(JOB, {"job": job, "workload": _fields(share), "timeout_s": timeout_s}, worker)
        end = time.monotonic() + timeout_s + 10.0
        while len(answers[job]) < len(workers) and time.monotonic() < end:
            arrived[job].wait(timeout=max(0.0, end - time.monotonic()))
            arrived[job].clear()
        got = answers.pop(job)
        arrived.pop(job)
        results = [LoadResult.from_dict(a["result"]) for a in got.values() if "result" in a]
        report = [_worker_report(w, got.get(w)) for w in workers]
        merged = LoadResult.merge(results).to_dict() if results else None
        if merged is not None and len(results) < len(workers):
            merged["partial"] = True
        _emit({"job": job, "result": merged, "workers": report})
    runner.quit()
    return 0


def _worker_report(worker: str, answer: dict[str, Any] | None) -> dict[str, Any]:
    """One worker's answer as the harness gets it: its id, and its own result or its error."""
    if answer is None:
        return {"worker": worker, "error": "no answer in time"}
    return {"worker": worker, **{k: v for k, v in answer.items() if k in ("result", "error")}}


def _fields(share: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(share)


if __name__ == "__main__":
    raise SystemExit(main())
