"""The engine registry, the load-model checks of a workload, and the one shared hard limit."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.load import HostError, UnsupportedLoadModel, Workload, WorkloadError, engines, run_load
from harness.load.workload import ENGINES


def make(**changes: Any) -> Workload:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 8080}
    values.update(changes)
    return Workload(**values)


def test_the_registry_is_the_one_list_of_engines() -> None:
    assert ENGINES == engines.ENGINE_NAMES == ("asyncio", "threads")
    assert engines.get("asyncio").supports(engines.OPEN) and engines.get("asyncio").multi_process
    threads = engines.get("threads")
    assert threads.models == (engines.CLOSED,) and not threads.multi_process
    for engine in engines.ENGINES:
        assert callable(engine.runner().run), engine.name
        assert engine.summary
        if set(engines.LOAD_MODELS) - set(engine.models):
            assert engine.refusal and "\n" not in engine.refusal  # said when the model is refused
    with pytest.raises(KeyError):
        engines.get("gevent")


def test_a_rate_for_the_threads_engine_is_refused_with_one_sentence() -> None:
    with pytest.raises(UnsupportedLoadModel, match="closed-loop client") as caught:
        make(engine="threads", rate=100.0).check()
    assert isinstance(caught.value, WorkloadError) and isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)
    with pytest.raises(UnsupportedLoadModel):
        run_load(make(engine="threads", rate=100.0))  # before any socket: port 8080 is never tried


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"rate": 0.0}, "rate"),
        ({"rate": -5.0}, "rate"),
        ({"rate": math.inf}, "rate"),
        ({"rate": math.nan}, "rate"),
        ({"rate": 2e6}, "rate"),
        ({"rate": 10.0, "arrival": "bursty"}, "arrival"),
        ({"rate": 10.0, "seed": 1.5}, "seed"),
        ({"rate": 10.0, "stream": 2, "streams": 2}, "stream"),
    ],
)
def test_impossible_open_loop_numbers_are_one_sentence(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(WorkloadError, match=words):
        make(**changes).check()


def test_load_model_follows_the_rate() -> None:
    assert make().load_model == "closed"
    assert make(rate=50.0).check().load_model == "open"
    with pytest.raises(WorkloadError):
        make().share_rate()


def test_share_splits_the_schedule_and_keeps_the_total_rate() -> None:
    parts = make(rate=900.0, concurrency=10, client_procs=3).check().share(3)
    assert [(p.stream, p.streams, p.rate) for p in parts] == [(0, 3, 900.0), (1, 3, 900.0), (2, 3, 900.0)]
    assert sum(p.share_rate() for p in parts) == pytest.approx(900.0)
    assert sum(p.concurrency for p in parts) == 10
    assert all(p.check().client_procs == 1 for p in parts)


def test_an_unresolvable_host_is_a_host_error() -> None:
    with pytest.raises(HostError, match="cannot resolve host"):
        run_load(make(host="no-such-host.invalid", duration_s=0.1))


@pytest.mark.parametrize(
    "changes, bound",
    [
        ({"duration_s": 10.0, "warmup_s": 2.0, "deadline_s": 2.0}, 14.0),
        ({"duration_s": None, "requests": 100, "concurrency": 10, "warmup_s": 0.0, "deadline_s": 1.0}, 10 * 1.1 + 1.0),
        ({"duration_s": None, "requests": 100, "rate": 50.0, "warmup_s": 1.0, "deadline_s": 1.0}, 1.0 + 2.0 + 1.0),
    ],
)
def test_run_bound_is_one_calculation(changes: dict[str, Any], bound: float) -> None:
    workload = make(**changes).check()
    assert engines.run_bound_s(workload) == pytest.approx(bound)
    assert engines.hard_limit(workload, 100.0) == pytest.approx(100.0 + bound + engines.ENGINE_SLACK_S)
    assert engines.hard_limit(workload, 100.0, slack_s=6.0) == pytest.approx(100.0 + bound + 6.0)


def test_each_share_has_the_bound_of_the_whole_run() -> None:
    whole = make(duration_s=None, requests=90, rate=30.0, concurrency=6, client_procs=3).check()
    bound = engines.run_bound_s(whole)
    assert [engines.run_bound_s(part) for part in whole.share(3)] == pytest.approx([bound] * 3)
