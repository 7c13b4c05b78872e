"""`python -m harness worker --master HOST:PORT`: a load host, driven by the master over Locust.

The worker is a Locust `WorkerRunner` that never spawns Locust users: it answers the master's
`hangbench_job` messages by running hangbench's own engine on its share of the workload, in a
fresh interpreter (`loadchild.py`, so that Locust's gevent patches stay out of the engine), and
sends the LoadResult back as `hangbench_result`. It ends when the master quits, when the master
has been silent for Locust's heartbeat timeout, or on SIGTERM/SIGINT.

Locust is imported only inside `run_worker`, because importing it monkey-patches the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .protocol import JOB, RESULT, parse_master

MAX_RESULT_BYTES = 64 * 1024 * 1024  # a LoadResult is kilobytes; anything near this is not one


def run_share(job: dict[str, Any]) -> dict[str, Any]:
    """Run one share in a fresh interpreter; `{"result": ...}` or `{"error": "one sentence"}`."""
    timeout_s = float(job.get("timeout_s", 120.0))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harness.distributed.loadchild"],
            input=json.dumps(job["workload"]),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the load share did not finish within {timeout_s:.0f} s"}
    except OSError as error:
        return {"error": f"cannot start the load engine: {error}"}
    lines = done.stdout.strip().splitlines()
    if not lines or len(done.stdout) > MAX_RESULT_BYTES:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"the load engine exited with code {done.returncode}: {tail}"}
    try:
        answer = json.loads(lines[-1])
    except ValueError:
        return {"error": "the load engine wrote something that is not JSON"}
    return answer if isinstance(answer, dict) else {"error": "the load engine wrote no result object"}


def run_worker(master: str) -> int:
    """Connect to the master and serve jobs until it quits. Exit status 0, or 2 on bad input."""
    try:
        host, port = parse_master(master)
    except ValueError as error:
        sys.stderr.write(f"hangbench: error: {error}\n")
        return 2
    # Locust monkey-patches this process on import: the engine runs in a fresh interpreter instead.
    import gevent
    from locust import User, constant, task
    from locust.env import Environment

    class Idle(User):  # Locust wants a user class; hangbench never spawns one
        wait_time = constant(1)

        @task
        def idle(self) -> None:
            """Never runs: the master sends jobs, not spawn requests."""

    environment = Environment(user_classes=[Idle])
    runner = environment.create_worker_runner(host, port)

    def on_job(environment: Any, msg: Any, **_kw: Any) -> None:
        job = dict(msg.data)
        answer = run_share(job)
        answer.update({"job": job.get("job"), "worker": runner.client_id})
        runner.send_message(RESULT, answer)

    runner.register_message(JOB, on_job, concurrent=True)
    for signum in (2, 15):  # SIGINT, SIGTERM: leave like a quit from the master
        gevent.signal_handler(signum, runner.quit)
    sys.stderr.write(f"hangbench worker {runner.client_id}: connected to {host}:{port}\n")
    runner.greenlet.join()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m harness worker", description="Serve as a load host for a master.")
    parser.add_argument("--master", required=True, metavar="HOST[:PORT]", help="the master's address (port 5557)")
    return run_worker(parser.parse_args(argv).master)


if __name__ == "__main__":
    raise SystemExit(main())
