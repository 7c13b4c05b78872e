"""Fixtures shared by the test modules; the helpers themselves live in `tests/helpers.py`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import ServerProcess, start_server


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """`server_factory(strategy, *args, **kw)` starts a server that is stopped (SIGTERM, then
    SIGKILL of its process group) when the test ends, whatever happens in the test."""
    started: List[ServerProcess] = []

    def start(strategy: str, *args: str, **kwargs: object) -> ServerProcess:
        server = start_server(strategy, *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
