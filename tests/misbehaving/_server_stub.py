"""A stand-in for `python -m harness.server`, used by the supervisor tests. Not a plugin.

It keeps the server process's contract (harness/server/process.py): arm the faulthandler
hook, load the strategy, bind 127.0.0.1, print ONE JSON ready line on stdout and flush, turn
SIGTERM/SIGINT into `ServerStop` in the main thread, run `serve`, exit 0 when stopped. A
strategy that raises makes it exit 1 with a traceback on stderr, as an uncaught exception
would. The supervisor tests run against this stub so they do not depend on the real server;
they also run against harness.server.process once it exists.

    python tests/misbehaving/_server_stub.py --plugin tests/misbehaving/never_answers.py --port 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from harness.server import faulthandler_hook, watchdog
from harness.server.app import App
from harness.server.strategy import ServeOptions, ServerStop, StrategyError, load_spec


def _raise_stop(signum: int, frame: object) -> None:
    raise ServerStop(signal.Signals(signum).name)


def main() -> int:
    faulthandler_hook.install_from_env()
    watchdog.start_from_env()
    parser = argparse.ArgumentParser()
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--strategy", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    try:
        cls = load_spec(args.plugin)
    except StrategyError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(128)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    host, port = listener.getsockname()[:2]
    print(
        json.dumps(
            {
                "event": "listening",
                "host": host,
                "port": port,
                "pid": os.getpid(),
                "strategy": cls.name,
                "python": platform.python_version(),
            }
        ),
        flush=True,
    )
    try:
        cls().serve(listener, App(), ServeOptions(workers=args.workers))
    except ServerStop:
        pass
    finally:
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
