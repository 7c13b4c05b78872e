"""Load from several hosts, coordinated by Locust's master/worker runners.

hangbench keeps its own load engine (open/closed loop, outcome classes, `--read eof`, exact
HdrHistograms) and borrows only what Locust is good at and what would otherwise be a home-made
protocol: finding workers on other hosts, knowing which are alive (heartbeats), and carrying
messages between them (ZeroMQ, `runner.send_message` / `register_message`).

    harness run ──stdin/stdout JSON lines──> master.py (Locust MasterRunner, its own process)
                                                │  "hangbench_job" (a share of the workload)
                                                ▼
                          worker.py on each load host (Locust WorkerRunner)
                                                │  runs loadchild.py: hangbench's engine, unpatched
                                                ▼
                          "hangbench_result": the LoadResult, histograms as HdrHistogram encodings

The master merges the workers' results with `LoadResult.merge` — counts summed, histograms added
bucket by bucket — so the merged record is exactly what one client would have measured, not
Locust's rounded percentiles. Locust monkey-patches the whole interpreter with gevent on import,
so it never runs inside the harness process (whose supervisor uses threads, subprocesses and
selectors) nor inside the load engine (asyncio/uvloop): both master and worker are separate
processes, and the worker runs each job in a fresh interpreter (`loadchild.py`).
"""
