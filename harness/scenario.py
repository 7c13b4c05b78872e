"""Scenario files: a run's command line as a TOML file, and any result turned back into one.

    python -m harness run scenario.toml       run what the file says
    python -m harness replay results/X.json   print the scenario that re-runs X's cases

A scenario's keys are the run's long options without the dashes (`strategy`, `duration`,
`fail-if`, `sweep` …; `_` and `-` are the same). Lists become the option's comma-separated
form (`strategy = ["threads", "gevent"]`), or repeat the option where it is repeatable
(`fail-if = ["hang_rate>0", "p99_ms>50"]`); `true` turns a flag on. The file is *translated
into a command line and parsed by the run's own parser*, so a scenario is validated exactly as
the same options typed by hand (one sentence, exit 2), and there is no second list of options
to keep in step. Options given on the command line after the file win over the file's.

`replay` writes the options recorded in a result's `config` back out — the ones that differ
from their defaults, with the strategies pinned to the cases that actually ran — so a result
is a recipe as well as a record (like TechEmpower's benchmark_config.json or a k6 script).
TOML is read with `tomllib` (3.11+) or `tomli`; it is written here, because only flat keys
with strings, numbers, booleans and lists of those are ever needed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError

# Recorded in `config` but not options to replay: where the output went, and derived values.
# `port`: older files recorded the server's --port 0, which the run itself no longer takes.
NOT_REPLAYED = ("output", "label", "quiet", "scenario", "command", "port")
MAX_SCENARIO_BYTES = 1 << 20  # options as TOML keys: a file this large is not a scenario


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        # Only a regular file: a FIFO would block the open, /dev/zero would be read forever.
        if path.exists() and not path.is_file():
            raise UsageError(f"scenario file {path} is not a regular file")
        with path.open("rb") as stream:
            raw = stream.read(MAX_SCENARIO_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"scenario file {path} does not exist") from None
    except OSError as error:
        raise UsageError(f"cannot read scenario file {path}: {error.strerror or error}") from None
    if len(raw) > MAX_SCENARIO_BYTES:
        raise UsageError(f"scenario file {path} is larger than {MAX_SCENARIO_BYTES >> 20} MiB; it is not a scenario")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"scenario file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"scenario file {path} is not valid TOML: {error}") from None


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Long option name without dashes -> action, for every option the parser knows."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse has no public list of its actions
        for option in action.option_strings:
            if option.startswith("--"):
                found[option[2:]] = action
    return found


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"scenario key {key!r} takes a string or a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"scenario key {key!r} must be a finite number")
    return value if isinstance(value, str) else repr(value)


def scenario_argv(path: Path, parser: argparse.ArgumentParser) -> list[str]:
    """The command-line arguments a scenario file stands for."""
    data = _load_toml(path)
    actions = _actions(parser)
    argv: list[str] = []
    for raw_key, value in data.items():
        key = raw_key.replace("_", "-")
        action = actions.get(key)
        if action is None or key in ("help", "version"):
            near = difflib.get_close_matches(key, list(actions), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UsageError(f"scenario file {path}: unknown key {raw_key!r}{hint}")
        argv += _option(key, action, value)
    if not argv:  # an empty (or all-false) file would silently run the defaults: every strategy
        raise UsageError(f'scenario file {path} sets nothing; give at least one option, e.g. strategy = ["threads"]')
    return argv


def _option(key: str, action: argparse.Action, value: Any) -> list[str]:
    flag = "--" + key
    if action.nargs == 0:  # store_true and friends
        if not isinstance(value, bool):
            raise UsageError(f"scenario key {key!r} is a flag: write true or false")
        return [flag] if value else []
    if isinstance(value, list):
        items = [_scalar(key, item) for item in value]
        if isinstance(action, argparse._AppendAction):  # repeatable option
            return [part for item in items for part in (flag, item)]
        return [flag, ",".join(items)]
    if isinstance(value, dict):
        # A table such as [sweep] concurrency = [1, 8, 32]: the option's KEY=VALUES form, once per key.
        out: list[str] = []
        for sub, items in value.items():
            listed = items if isinstance(items, list) else [items]
            out += [flag, f"{sub}=" + ",".join(_scalar(key, item) for item in listed)]
        return out
    return [flag, _scalar(key, value)]


def replay_toml(config: Mapping[str, Any], parser: argparse.ArgumentParser, source: str = "") -> str:
    """A scenario (TOML text) that re-runs the cases of a result whose config is `config`."""
    actions = _actions(parser)
    lines = [f"# Re-runs {source}." if source else "# A hangbench scenario.", "# python -m harness run THIS.toml", ""]
    for dest, value in config.items():
        key = dest.replace("_", "-")
        action = actions.get(key)
        if key == "sweep" and isinstance(value, str) and "=" not in value:
            kind, _, levels = value.partition(" ")  # the config's "concurrency 1, 8, 32" -> concurrency=1,8,32
            value = "%s=%s" % (kind, levels.replace(" ", ""))
        if key == "strategy" and config.get("cases") and not config.get("url"):
            value = _strategies_of(config["cases"])  # pinned, even for `all`: the same cases, not today's registry
        if action is None or key in NOT_REPLAYED or value is None or value == action.default:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _strategies_of(cases: Sequence[str]) -> list[str]:
    """Case names (`asyncio-executor/fork`) -> the strategy names that produce them, in order."""
    names: list[str] = []
    for case in cases:
        name = str(case).split("/")[0]
        if name not in names:
            names.append(name)
    return names


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise UsageError(f"cannot write a {type(value).__name__} into a scenario")
