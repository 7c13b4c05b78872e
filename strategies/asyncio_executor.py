"""asyncio-executor: an asyncio streams server; the handler runs via `loop.run_in_executor`.

The event loop owns all the I/O; the synchronous handler runs in a process pool by default
(`--executor process`, so CPU work scales past the GIL, at the price of pickling each request
and response) or a thread pool (`--executor thread`). The executor has `--workers` slots.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import socket
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Set

from harness.server.app import App, handle
from harness.server.connection import serve_asyncio
from harness.server.protocol import Request, Response
from harness.server.strategy import ServeOptions, Strategy
from harness.server.worker import init_worker


def make_executor(options: ServeOptions) -> Executor:
    if options.executor == "thread":
        return ThreadPoolExecutor(options.workers, "hangbench-executor")
    context = multiprocessing.get_context(options.start_method)
    return ProcessPoolExecutor(options.workers, mp_context=context, initializer=init_worker)


def _ready() -> None:
    """A no-op task: submitting `workers` of them starts the executor's workers."""


class AsyncioExecutor(Strategy):
    name = "asyncio-executor"
    summary = "asyncio streams server; handler via run_in_executor (process pool by default, --executor thread)"
    uses_multiprocessing = True
    default_workers = 8

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        asyncio.run(self._serve(listener, app, options))

    async def _serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        executor = make_executor(options)
        # ProcessPoolExecutor starts its workers at the first submit. Started after clients
        # connect, forked workers would inherit those clients' sockets, and the parent's
        # close() would then send no FIN. Start them now, before the first accept.
        await asyncio.gather(*(loop.run_in_executor(executor, _ready) for _ in range(options.workers)))

        writers: Set[asyncio.StreamWriter] = set()

        async def run(app: App, request: Request) -> Response:
            return await loop.run_in_executor(executor, handle, app, request)

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            try:
                await serve_asyncio(reader, writer, app, run, options.idle_timeout_s)
            finally:
                writers.discard(writer)

        try:
            server = await asyncio.start_server(connected, sock=listener, backlog=options.backlog)
            async with server:
                await stop.wait()
                # Since 3.12.1 leaving `async with server` waits for every connection to
                # close; idle keep-alive clients would hold the stop for --idle-timeout.
                for writer in list(writers):
                    writer.close()
        finally:
            try:
                executor.shutdown(wait=False, cancel_futures=True)
            except TypeError:  # pragma: no cover - Python 3.8
                executor.shutdown(wait=False)
