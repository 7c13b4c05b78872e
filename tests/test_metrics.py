"""Histograms and load results: exact merging (also across real processes) and JSON records."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import random

import pytest

from harness.load.metrics import (
    HANG,
    HTTP_ERROR,
    OK,
    OUTCOMES,
    RESET,
    LatencyHistogram,
    LoadResult,
    merge,
    zero_counts,
)

pytestmark = pytest.mark.timeout(120)


def latencies(seed: int, count: int = 5000) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.lognormvariate(7, 1.2)) + 1 for _ in range(count)]


def histogram_of(values: list[int]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def encoded_histogram_of(values: list[int]) -> str:
    """Runs in a client process: what a child would send back."""
    return histogram_of(values).encode()


def test_summary_has_the_percentiles_in_microseconds() -> None:
    summary = histogram_of(list(range(1, 1001))).summary()
    assert list(summary) == ["p50", "p90", "p99", "p999", "max"]
    assert summary["p50"] == pytest.approx(500, rel=0.002)
    assert summary["p99"] == pytest.approx(990, rel=0.002)
    assert summary["max"] == pytest.approx(1000, rel=0.002)
    assert all(isinstance(v, int) for v in summary.values())


def test_empty_histogram_summarises_to_zeros_and_round_trips() -> None:
    empty = LatencyHistogram()
    assert empty.summary() == {"p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0}
    assert LatencyHistogram.decode(empty.encode()).total_count == 0


def test_out_of_range_values_are_clamped_not_lost() -> None:
    histogram = histogram_of([0, -5, 120_000_000])
    assert histogram.total_count == 3
    assert histogram.summary()["max"] >= 59_000_000


def test_encode_decode_is_lossless() -> None:
    original = histogram_of(latencies(1))
    text = original.encode()
    assert isinstance(text, str)
    assert LatencyHistogram.decode(text) == original


def test_merge_equals_one_histogram_of_all_values() -> None:
    a, b = latencies(1), latencies(2)
    merged = histogram_of(a).merge(histogram_of(b))
    assert merged == histogram_of(a + b)
    assert merged.summary() == histogram_of(a + b).summary()


@pytest.mark.slow
def test_merge_across_two_client_processes_is_exact() -> None:
    parts = [latencies(3), latencies(4)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        encoded = [f.result(timeout=60) for f in [pool.submit(encoded_histogram_of, p) for p in parts]]
    merged = LatencyHistogram.decode(encoded[0]).merge(LatencyHistogram.decode(encoded[1]))
    single = histogram_of(parts[0] + parts[1])
    assert merged.total_count == single.total_count == 10_000
    assert merged.summary() == single.summary()
    assert merged == single


def result_of(values: list[int], **counts: int) -> LoadResult:
    return LoadResult.build(
        {OK: len(values), **counts}, histogram_of(values), 2.0, 0.5, engine="asyncio", loop="uvloop"
    )


def test_build_computes_the_derived_fields() -> None:
    result = result_of(latencies(5, 90), **{HANG: 5, RESET: 3, HTTP_ERROR: 2})
    assert list(result.counts) == list(OUTCOMES)
    assert result.total == 100
    assert result.throughput_rps == pytest.approx(45.0)
    assert result.hang_rate == pytest.approx(0.05)
    assert result.error_rate == pytest.approx(0.05)
    assert result.client_cpu_util == pytest.approx(0.25)
    assert result.latency_us == histogram_of(latencies(5, 90)).summary()


def test_build_with_nothing_measured_divides_by_nothing() -> None:
    result = LoadResult.build(zero_counts(), LatencyHistogram(), 0.0, 0.0, engine="threads")
    assert (result.throughput_rps, result.hang_rate, result.error_rate, result.client_cpu_util) == (0, 0, 0, 0)


def test_build_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        LoadResult.build({"timeout": 1}, LatencyHistogram(), 1.0, 0.0, engine="asyncio")


def test_result_round_trips_through_json() -> None:
    result = result_of(latencies(6, 100), **{RESET: 1})
    result = LoadResult.build(
        result.counts, result.latency_histogram(), 2.0, 0.5, engine="asyncio", error_detail={"ECONNRESET": 1}
    )
    text = json.dumps(result.to_dict())
    assert LoadResult.from_dict(json.loads(text)) == result


def test_from_dict_refuses_unknown_fields() -> None:
    data = result_of([100]).to_dict() | {"surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        LoadResult.from_dict(data)


def test_merge_results_sums_counts_and_adds_histograms() -> None:
    a = LoadResult.build(
        {OK: 5000, HANG: 2}, histogram_of(latencies(7)), 3.0, 1.2, engine="asyncio", loop="uvloop", error_detail={}
    )
    b = LoadResult.build(
        {OK: 5000, RESET: 1},
        histogram_of(latencies(8)),
        3.1,
        2.7,
        engine="asyncio",
        loop="uvloop",
        error_detail={"EPIPE": 1},
    )
    merged = merge([a, b])
    assert merged == LoadResult.merge([a, b])
    assert merged.counts[OK] == 10_000 and merged.counts[HANG] == 2 and merged.counts[RESET] == 1
    assert merged.latency_histogram() == histogram_of(latencies(7) + latencies(8))
    assert merged.elapsed_s == 3.1
    assert merged.client_cpu_s == pytest.approx(3.9)
    assert merged.client_cpu_util == pytest.approx(max(1.2 / 3.0, 2.7 / 3.1))
    assert merged.client_procs == 2
    assert merged.error_detail == {"EPIPE": 1}
    assert merged.throughput_rps == pytest.approx(10_000 / 3.1)


def test_merge_marks_partial_if_any_part_is() -> None:
    whole = result_of([100])
    cut = LoadResult.build({OK: 1}, histogram_of([100]), 1.0, 0.1, engine="asyncio", partial=True)
    assert merge([whole, cut]).partial
    with pytest.raises(ValueError):
        merge([])
