"""asyncio: one event loop (uvloop when installed), the handler run inline, no executor.

Model: the server process runs one event loop; it accepts, reads, runs the handler and writes,
all in its one thread (`harness/server/inline_loop.py`). It mirrors uvicorn with one worker and
a synchronous app that does not offload (or any single-process asyncio/uvloop server).

When it wins: small, fast requests, many of them on keep-alive connections, and requests that
only wait on I/O inside the loop: there is no hand-off at all, so it is the baseline that
`asyncio-executor` pays its executor against. When it loses: the handler is synchronous, so CPU
work (`/work?cpu_us=...`) and `sleep_ms` block the loop and every other connection waits behind
them; one process uses one core.
"""

from __future__ import annotations

import socket

from harness.server.app import App
from harness.server.inline_loop import serve_inline
from harness.server.strategy import ServeOptions, Strategy


class AsyncioInline(Strategy):
    name = "asyncio"
    summary = "one event loop (uvloop if installed), handler inline; CPU work or a sleep blocks every connection"
    default_workers = 1  # one loop; --workers is not used

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        serve_inline(listener, app, options.idle_timeout_s, options.backlog, self.stop_fd)
