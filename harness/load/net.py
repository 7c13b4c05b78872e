"""Small socket-level helpers shared by the engines.

Resolving the host once per run keeps the resolver off the per-connection path (a numeric
address skips getaddrinfo in both asyncio and blocking connects), and lifting the soft
descriptor limit lets high concurrency be measured instead of failing with EMFILE.
"""

from __future__ import annotations

import resource
import socket

from .errors import HostError


def resolve(host: str, port: int) -> tuple[int, str]:
    """(address family, numeric host) for a TCP connection to host:port.

    Raises HostError, a ValueError (one sentence), when the name does not resolve: a user's mistake.
    """
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise HostError("cannot resolve host %r: %s" % (host, error)) from None
    return family, str(sockaddr[0])


def raise_fd_limit(needed: int) -> None:
    """Lift the soft descriptor limit toward the hard one if `needed` sockets would not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
