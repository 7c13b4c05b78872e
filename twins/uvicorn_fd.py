"""`python -m twins.uvicorn_fd ARGS...`: uvicorn's own command line, with `--fd` made a TCP socket.

uvicorn opens `--fd N` with `socket.fromfd(N, AF_UNIX, SOCK_STREAM)` whatever the socket really
is. On an inherited TCP listener that label costs the twin dearly: asyncio then sets no
TCP_NODELAY on accepted connections and uvloop serves them as pipes, so every keep-alive
response (head and body written separately) can wait on Nagle and delayed ACKs. This launcher
makes `fromfd` ask the kernel for the family instead, then runs uvicorn's unchanged CLI. With
`--workers` > 1 the socket reaches the spawned workers pickled with its (now right) family.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any


def _fromfd(fd: int, family: Any = -1, type: Any = -1, proto: int = -1) -> socket.socket:
    # Like socket.fromfd (a duplicate the caller owns), with the family, type and protocol
    # read from the descriptor itself rather than taken from the caller.
    return socket.socket(fileno=os.dup(fd))


def main() -> None:
    socket.fromfd = _fromfd  # type: ignore[assignment]
    from uvicorn.main import main as uvicorn_main

    sys.argv[0] = "uvicorn"
    uvicorn_main()


if __name__ == "__main__":
    main()
