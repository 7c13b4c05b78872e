"""Strategies as pytest-benchmark benchmarks: `pytest examples/test_strategies_benchmark.py`.

    pip install -e '.[pytest]'
    pytest examples/test_strategies_benchmark.py --benchmark-autosave
    # ... change something, then:
    pytest examples/test_strategies_benchmark.py --benchmark-compare --benchmark-compare-fail=mean:10%
    pytest-benchmark list; pytest-benchmark compare

Each test runs one strategy (a fresh server per repetition) through the `hangbench` fixture,
which the hangbench package registers as a pytest plugin. A project keeps its own server in
the same kind of test by naming its plugin: `hangbench.run("path/to/my_server.py")`.
"""

import pytest

SOUND = ["threads", "gevent", "scm-rights"]


@pytest.mark.parametrize("strategy", SOUND)
def test_strategy_does_not_hang(hangbench, strategy):
    result = hangbench.run(strategy, workload="hello", repeat=3, duration=2.0)
    assert result.completed, result.statuses
    assert result.hangs == 0
