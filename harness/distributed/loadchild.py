"""One worker's share of a job, in a fresh interpreter: hangbench's engine, no gevent patches.

Reads a Workload as JSON on stdin, runs it, writes the LoadResult as JSON on stdout. The worker
(which Locust has monkey-patched) runs this as a subprocess so that the engine runs exactly as it
does on a single machine — asyncio/uvloop, real threads, no patched sockets.
"""

from __future__ import annotations

import json
import sys

from ..load import Workload, run_load


def main() -> int:
    try:
        workload = Workload(**json.loads(sys.stdin.read()))
        result = run_load(workload)
    except (ValueError, TypeError) as error:
        sys.stdout.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        return 2
    sys.stdout.write(json.dumps({"result": result.to_dict()}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
