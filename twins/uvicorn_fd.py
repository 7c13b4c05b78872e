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
from operator import index
from typing import SupportsIndex


def _fromfd(
    fd: SupportsIndex,
    family: socket.AddressFamily | int,
    type: socket.SocketKind | int,
    proto: int = 0,
) -> socket.socket:
    # socket.fromfd's signature (a duplicate the caller owns), but the family, type and
    # protocol are read from the descriptor itself rather than taken from the caller.
    return socket.socket(fileno=os.dup(index(fd)))


def main() -> None:
    socket.fromfd = _fromfd
    from uvicorn.main import main as uvicorn_main

    sys.argv[0] = "uvicorn"
    uvicorn_main()


if __name__ == "__main__":
    main()
