"""asyncio-executor: an asyncio streams server; the handler runs via `loop.run_in_executor`.

The event loop owns all the I/O; the synchronous handler runs in a process pool by default
(`--executor process`, so CPU work scales past the GIL, at the price of pickling each request
and response) or a thread pool (`--executor thread`). The executor has `--workers` slots.
"""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Dict

from harness.server.app import App, handle
from harness.server.connection import serve_asyncio
from harness.server.protocol import Request, Response
from harness.server.strategy import ServeOptions, Strategy, StrategyOption
from harness.server.workers import shutdown_executor

STOP_WAIT_S = 2.0  # for open connections to end once their transports are closed


class AsyncioExecutor(Strategy):
    name = "asyncio-executor"
    summary = "asyncio streams server; handler via run_in_executor (process pool by default, --executor thread)"
    uses_multiprocessing = True
    default_workers = 8
    strategy_options = (StrategyOption("executor", "process", ("process", "thread"), "where the handler runs"),)

    def serve(self, listener: socket.socket, app: App, options: ServeOptions) -> None:
        executor: Executor
        if self.option("executor") == "thread":
            executor = ThreadPoolExecutor(options.workers, "hangbench-executor")
        else:  # all workers started now, before the first accept; shut down by the base
            executor = self.process_pool_executor(options.workers)
        try:
            asyncio.run(self._serve(listener, app, options, executor))
        finally:
            if isinstance(executor, ThreadPoolExecutor):  # the base stops its process pool
                shutdown_executor(executor)

    async def _serve(self, listener: socket.socket, app: App, options: ServeOptions, executor: Executor) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_stop() -> None:
            loop.remove_reader(self.stop_fd)  # level-triggered: once is enough
            stop.set()

        loop.add_reader(self.stop_fd, on_stop)
        tasks: Dict[asyncio.StreamWriter, Any] = {}  # each connection's writer -> its task

        async def run(app: App, request: Request) -> Response:
            return await loop.run_in_executor(executor, handle, app, request)

        slots = asyncio.Semaphore(app.limits.max_connections)  # past the cap: accepted, wait unread

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tasks[writer] = asyncio.current_task()
            try:
                async with slots:
                    await serve_asyncio(reader, writer, app, run, options.idle_timeout_s)
            finally:
                del tasks[writer]

        try:
            server = await asyncio.start_server(connected, sock=listener, backlog=options.backlog)
            async with server:
                await stop.wait()
                # Since 3.12.1 leaving `async with server` waits for every connection to close (idle
                # keep-alive ones: --idle-timeout). Closed, they end by themselves, not cancelled.
                for writer in list(tasks):
                    writer.close()
                if tasks:
                    await asyncio.wait(list(tasks.values()), timeout=STOP_WAIT_S)
        finally:
            loop.remove_reader(self.stop_fd)  # a no-op after on_stop
