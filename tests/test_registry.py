"""Registry rules: abstract intermediate classes, built-in name clashes, plugins that fail or
hang at import, and the server's option checks made before it binds.

In-process tests call `harness.server.registry` through `harness.server.strategy`; the CLI tests
run `python -m harness` in a subprocess (bounded by a timeout, so an unbounded import fails
the test rather than hanging it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli
from test_plugins import BROKEN_PLUGIN, assert_one_sentence_error

from harness.server.registry import IMPORT_TIMEOUT_ENV
from harness.server.strategy import StrategyError, discover, load_spec, resolve

ABSTRACT_BASE_PLUGIN = '''
"""A plugin file with an intermediate base class shared by its (one) concrete strategy."""
from harness.server.connection import serve_blocking
from harness.server.strategy import Strategy


class Base(Strategy):
    abstract = True
    connection_timeout_s = 5.0

    def serve(self, listener, app, options):
        while not self.stopping:
            conn, _addr = listener.accept()
            serve_blocking(conn, app, self.connection_timeout_s)


class Concrete(Base):
    name = "concrete-from-base"
    summary = "test plugin: a concrete strategy on an abstract base"
'''

CLASHING_PLUGIN = """
from harness.server.strategy import Strategy


class NotTheRealThreads(Strategy):
    name = "threads"
    summary = "test plugin named like a built-in"
    overrides_builtin = %s

    def serve(self, listener, app, options):
        pass
"""

SLOW_PLUGIN = """
import time
time.sleep(60)  # an import that blocks
"""


def test_plugin_file_with_an_abstract_intermediate_base_loads(tmp_path: Path) -> None:
    path = tmp_path / "inproc_abstract_base.py"
    path.write_text(ABSTRACT_BASE_PLUGIN)
    assert load_spec(str(path)).name == "concrete-from-base"
    with pytest.raises(StrategyError, match="is an abstract strategy"):
        load_spec(str(path) + ":Base")
    entry = discover([str(path)])["concrete-from-base"]
    assert entry.cls is not None and entry.error is None


@pytest.mark.parametrize("override", [False, True])
def test_plugin_named_like_a_builtin_is_refused_unless_it_says_so(tmp_path: Path, override: bool) -> None:
    path = tmp_path / ("inproc_clash_%s.py" % override)
    path.write_text(CLASHING_PLUGIN % override)
    registry = discover([str(path)])
    if override:
        assert registry["threads"].spec == str(path)
        return
    assert registry["threads"].source == "builtin" and registry["threads"].error is None
    refused = registry[str(path)]
    assert refused.cls is None and refused.error and "like a built-in strategy" in refused.error
    with pytest.raises(StrategyError, match="like a built-in strategy; rename it"):
        resolve(str(path), registry)


def test_a_name_not_found_names_the_plugins_that_failed_to_load(tmp_path: Path) -> None:
    broken = tmp_path / "inproc_broken_named.py"
    broken.write_text(BROKEN_PLUGIN)
    with pytest.raises(StrategyError) as info:
        resolve("one-at-a-time", discover([str(broken)]))
    message = str(info.value)
    assert "unknown strategy 'one-at-a-time'" in message
    assert "failed to load" in message and str(broken) in message and "ModuleNotFoundError" in message
    assert "\n" not in message


def test_slow_plugin_import_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import that sleeps 60 s is given up after the bound; the other strategies still load."""
    monkeypatch.setenv(IMPORT_TIMEOUT_ENV, "0.5")
    slow = tmp_path / "inproc_slow.py"
    slow.write_text(SLOW_PLUGIN)
    registry = discover([str(slow)])
    assert "did not finish within 0.5s" in str(registry[str(slow)].error)
    assert registry["threads"].cls is not None


@pytest.mark.slow
def test_cli_list_bounds_a_slow_plugin_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IMPORT_TIMEOUT_ENV, "0.5")
    slow = tmp_path / "slow_plugin.py"
    slow.write_text(SLOW_PLUGIN)
    result = run_cli("list", "--plugin", str(slow), timeout=30)  # a 60 s import would time this out
    assert result.returncode == 0, result.stderr
    [line] = [ln for ln in result.stdout.splitlines() if ln.startswith(str(slow))]
    assert "[plugin, failed to load]" in line and "did not finish within 0.5s" in line


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy, args, needle",
    [
        ("threads", ("--port", "99999"), "--port must be between 0 and 65535"),
        ("threads", ("--backlog", "99999999999"), "--backlog must be between 1 and 65535"),
        ("threads", ("--workers", "0"), "--workers must be between 1 and 1024"),
        ("threads", ("--idle-timeout", "0"), "--idle-timeout must be more than 0"),
        ("asyncio-executor", ("--strategy-option", "exector=thread"), "did you mean 'executor'"),
        ("asyncio-executor", ("--strategy-option", "executor=fiber"), "must be one of process, thread"),
    ],
    ids=["port", "backlog", "workers", "idle-timeout", "option-typo", "option-value"],
)
def test_cli_serve_rejects_bad_options_before_binding(strategy: str, args: tuple, needle: str) -> None:
    result = run_cli("serve", "--strategy", strategy, *args, timeout=30)
    assert_one_sentence_error(result, needle)
