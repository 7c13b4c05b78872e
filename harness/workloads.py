"""Named workloads: the per-request work and the load shape a strategy is meant to be judged at.

Strategies differ most where the work differs: CPU-bound handlers favour processes (the GIL),
sleep-bound ones many cheap waiters, large responses stress buffering, keep-alive against
close stresses accept and dispatch. A workload names one such point:

    hello       GET with no work, Connection: close, 32 in flight (the default run)
    keep-alive  the same over keep-alive connections
    cpu         1 ms of CPU per request
    io          a 20 ms sleep per request (a database or upstream call), 256 in flight
    mixed       200 µs of CPU, a 10 ms sleep and 4 KiB, 64 in flight
    large       256 KiB responses

`mixed` is one request, not a weighted mix of paths: both load engines build their one request
once per run (`Workload.request_bytes`) and send it on every connection, so a mix would need a
new engine feature. Instead it is the average handler of a typical web service: some CPU
(templating, JSON) and an upstream call, with neither dominating on 2 cores (CPU alone would
cap a GIL-bound server near 5,000 requests/s, the sleeps cap 64 slots near 6,300).

A workload sets fields of the load generator's `Workload` (`load_fields`) and, optionally, an
open-loop `rate`; flags given explicitly on the command line win (`apply_overrides`). Users add
their own in a TOML file (`--workload-file`, `[workloads.NAME]` tables, see `load_file`),
validated key by key with one-sentence errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tabulate import tabulate

from .errors import UsageError
from .load import workload as load_workload

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
ALL = "all"
DEFAULT = "hello"
MAX_FILE_BYTES = 1 << 20  # workload definitions as TOML: a file this large is not one


class WorkloadError(UsageError, ValueError):
    """A workload name, file or override that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class WorkloadSpec:
    """A named workload. Field names are the load generator's (`harness.load.workload.Workload`)."""

    name: str
    description: str = ""
    cpu_us: int = 0
    sleep_ms: float = 0.0
    bytes: int = 64
    connection: str = "close"
    read: str = "content-length"
    concurrency: int = 32
    rate: float | None = None  # open loop: requests per second in all; None = closed loop
    source: str = "built-in"  # or the file that defined it

    def load_fields(self) -> dict[str, Any]:
        """The fields to `dataclasses.replace` into the load generator's Workload (those it
        has; `rate` only when set, so a closed-loop workload leaves the run's own alone)."""
        known = {f.name for f in dataclasses.fields(load_workload.Workload)}
        values = {key: getattr(self, key) for key in OVERRIDABLE if key in known}
        if self.rate is None:
            values.pop("rate", None)
        return values

    def parameters(self) -> str:
        """One line for tables and progress: 'cpu 1000 µs, sleep 0 ms, 64 B, keep-alive, c=32'."""
        text = "cpu %d µs, sleep %s ms, %s, %s, c=%d" % (
            self.cpu_us,
            "%g" % self.sleep_ms,
            _size(self.bytes),
            self.connection,
            self.concurrency,
        )
        if self.read != "content-length":
            text += ", read %s" % self.read
        if self.rate is not None:
            text += ", %g req/s" % self.rate
        return text


# What a workload file or the command line may set, with the type each must have.
OVERRIDABLE: dict[str, tuple[type, ...]] = {
    "cpu_us": (int,),
    "sleep_ms": (int, float),
    "bytes": (int,),
    "connection": (str,),
    "read": (str,),
    "concurrency": (int,),
    "rate": (int, float),
}
FILE_KEYS = ("description", "base", *OVERRIDABLE)

BUILTIN: dict[str, WorkloadSpec] = {
    spec.name: spec
    for spec in (
        WorkloadSpec("hello", "no work, one connection per request (the default run)"),
        WorkloadSpec("keep-alive", "no work, keep-alive connections", connection="keep-alive"),
        WorkloadSpec("cpu", "1 ms of CPU per request: the GIL favours processes", cpu_us=1000, connection="keep-alive"),
        WorkloadSpec(
            "io",
            "a 20 ms wait per request at high concurrency: favours cheap waiters",
            sleep_ms=20.0,
            connection="keep-alive",
            concurrency=256,
        ),
        WorkloadSpec(
            "mixed",
            "200 µs CPU + 10 ms wait + 4 KiB: one typical handler, not a mix of paths",
            cpu_us=200,
            sleep_ms=10.0,
            bytes=4096,
            connection="keep-alive",
            concurrency=64,
        ),
        WorkloadSpec("large", "256 KiB responses: buffering and copying", bytes=256 * 1024, connection="keep-alive"),
    )
}


def check(spec: WorkloadSpec) -> WorkloadSpec:
    """Return `spec`, or raise WorkloadError with one sentence naming the bad value."""
    where = "workload %r" % spec.name
    _range(where, "cpu_us", spec.cpu_us, 0, load_workload.MAX_CPU_US)
    _range(where, "sleep_ms", spec.sleep_ms, 0, load_workload.MAX_SLEEP_MS)
    _range(where, "bytes", spec.bytes, 0, load_workload.MAX_BYTES)
    _range(where, "concurrency", spec.concurrency, 1, load_workload.MAX_CONCURRENCY)
    _choice(where, "connection", spec.connection, load_workload.CONNECTIONS)
    _choice(where, "read", spec.read, load_workload.READ_MODES)
    if spec.rate is not None:
        _typed(where, "rate", spec.rate)
        top = load_workload.MAX_RATE
        if not (math.isfinite(spec.rate) and 0 < spec.rate <= top):
            raise WorkloadError(
                "%s: rate must be more than 0 and at most %g requests/s (got %r)" % (where, top, spec.rate)
            )
    # TOML and argparse give ints for whole numbers; the record keeps one type per field.
    return replace(spec, sleep_ms=float(spec.sleep_ms), rate=None if spec.rate is None else float(spec.rate))


def _typed(where: str, key: str, value: object) -> None:
    kinds = OVERRIDABLE[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = "a whole number" if kinds == (int,) else "a number" if int in kinds else "a string"
        raise WorkloadError("%s: %s must be %s (got %r)" % (where, key, wanted, value))


def _range(where: str, key: str, value: Any, low: float, high: float) -> None:
    _typed(where, key, value)
    if not (math.isfinite(value) and low <= value <= high):
        raise WorkloadError("%s: %s must be between %s and %s (got %r)" % (where, key, _num(low), _num(high), value))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else "%g" % value


def _choice(where: str, key: str, value: Any, choices: Sequence[str]) -> None:
    _typed(where, key, value)
    if value not in choices:
        raise WorkloadError("%s: %s must be one of %s (got %r)" % (where, key, ", ".join(choices), value))


def _nearest(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=3, cutoff=0.5)
    if close:
        return "did you mean %s?" % " or ".join(repr(c) for c in close)
    return "known: %s" % ", ".join(known)


def apply_overrides(workload: WorkloadSpec, overrides: Mapping[str, Any]) -> WorkloadSpec:
    """`workload` with the explicitly given values of `overrides` (keys as in OVERRIDABLE, i.e.
    the run's option dests; None means not given), checked."""
    unknown = [key for key in overrides if key not in OVERRIDABLE]
    if unknown:
        raise WorkloadError("cannot override %r: %s" % (unknown[0], _nearest(unknown[0], list(OVERRIDABLE))))
    given = {key: value for key, value in overrides.items() if value is not None}
    return check(replace(workload, **given)) if given else workload


_UNSET = object()


def explicit_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, Any]:
    """The OVERRIDABLE options that `argv` gives explicitly, parsed by `parser` (the parser
    that defines them, e.g. the `run` sub-command's, with its own arguments only).

    argparse fills in a default only where the namespace lacks the attribute, so a namespace
    that starts with a marker in each of these keeps the marker exactly where no flag was
    given: `-c 32` counts as given even though 32 is the default."""
    namespace = argparse.Namespace(**{key: _UNSET for key in OVERRIDABLE})
    parsed, _ = parser.parse_known_args(list(argv), namespace=namespace)
    return {key: getattr(parsed, key) for key in OVERRIDABLE if getattr(parsed, key, _UNSET) is not _UNSET}


# -- workload files --------------------------------------------------------------------------------


def _read_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        # Only a regular file, and a small one: a FIFO would block the open, /dev/zero never end.
        if os.path.exists(path) and not os.path.isfile(path):
            raise WorkloadError("workload file %s is not a regular file" % path)
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise WorkloadError("workload file %s is larger than %d MiB" % (path, MAX_FILE_BYTES >> 20))
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise WorkloadError("workload file %s is not UTF-8 text" % path) from None
    except FileNotFoundError:
        raise WorkloadError("workload file %s does not exist" % path) from None
    except OSError as error:
        raise WorkloadError("cannot read workload file %s: %s" % (path, error.strerror or error)) from None
    except tomllib.TOMLDecodeError as error:
        raise WorkloadError("workload file %s is not valid TOML: %s" % (path, error)) from None


def load_file(path: str) -> dict[str, WorkloadSpec]:
    """The workloads a TOML file defines, in file order:

        [workloads.checkout]
        description = "2 ms of CPU, a 15 ms database call, 8 KiB of HTML"
        base = "mixed"          # optional: start from a built-in workload's values
        cpu_us = 2000
        sleep_ms = 15
        bytes = 8192
        connection = "keep-alive"   # or "close"
        read = "content-length"     # or "eof"
        concurrency = 64
        rate = 500                  # optional: open loop, requests per second

    Unset keys take the base's values (or `hello`'s). A name may not reuse a built-in's."""
    data = _read_toml(path)
    for key in data:
        if key != "workloads":
            raise WorkloadError(
                "workload file %s: unknown top-level key %r; %s" % (path, key, _nearest(key, ["workloads"]))
            )
    tables = data.get("workloads")
    if not isinstance(tables, dict) or not tables:
        raise WorkloadError("workload file %s defines no workloads: add a [workloads.NAME] table" % path)
    return {name: _from_table(path, name, table) for name, table in tables.items()}


def _from_table(path: str, name: str, table: object) -> WorkloadSpec:
    where = "workload file %s: workload %r" % (path, name)
    if not NAME.match(name) or name == ALL:
        raise WorkloadError("%s: a name is 1-40 lower-case letters, digits, '-' or '_', and not 'all'" % where)
    if name in BUILTIN:
        raise WorkloadError("%s is a built-in workload's name; choose another (or use base = %r)" % (where, name))
    if not isinstance(table, dict):
        raise WorkloadError(
            "%s must be a table of keys ([workloads.%s]), not a %s" % (where, name, type(table).__name__)
        )
    for key in table:
        if key not in FILE_KEYS:
            raise WorkloadError("%s has no key %r; %s" % (where, key, _nearest(key, FILE_KEYS)))
    base_name = table.get("base", DEFAULT)
    if not isinstance(base_name, str) or base_name not in BUILTIN:
        raise WorkloadError(
            "%s: base must name a built-in workload; %s" % (where, _nearest(str(base_name), list(BUILTIN)))
        )
    description = table.get("description", "")
    if not isinstance(description, str):
        raise WorkloadError("%s: description must be a string (got %r)" % (where, description))
    values = {key: value for key, value in table.items() if key in OVERRIDABLE}
    for key, value in values.items():
        _typed(where, key, value)
    spec = replace(BUILTIN[base_name], name=name, description=description, source=path, **values)
    try:
        return check(spec)
    except WorkloadError as error:
        raise WorkloadError("workload file %s: %s" % (path, error)) from None


# -- choosing workloads ------------------------------------------------------------------------------


def catalog(file: str | None = None) -> dict[str, WorkloadSpec]:
    """Every workload by name: the built-ins, then the file's."""
    found = dict(BUILTIN)
    if file:
        found.update(load_file(file))
    return found


def resolve(names: str | Sequence[str], file: str | None = None) -> list[WorkloadSpec]:
    """`--workload` ("hello", "cpu,io", "all") as workloads, in the order given, each once."""
    known = catalog(file)
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else [n.strip() for n in names]
    wanted = [n for n in wanted if n]
    if not wanted:
        raise WorkloadError("--workload needs 'all' or at least one workload name")
    chosen: list[WorkloadSpec] = []
    for index, name in enumerate(wanted):
        if name in wanted[:index]:
            raise WorkloadError("--workload names %r twice; name each workload once" % name)
        if name == ALL:
            chosen.extend(known.values())
        elif name in known:
            chosen.append(known[name])
        else:
            raise WorkloadError("unknown workload %r; %s" % (name, _nearest(name, list(known))))
    unique: dict[str, WorkloadSpec] = {}
    for spec in chosen:
        unique.setdefault(spec.name, spec)
    return list(unique.values())


def _size(count: int) -> str:
    if count >= 1024 * 1024 and count % (1024 * 1024) == 0:
        return "%d MiB" % (count // (1024 * 1024))
    if count >= 1024 and count % 1024 == 0:
        return "%d KiB" % (count // 1024)
    return "%d B" % count


def table(specs: Sequence[WorkloadSpec]) -> str:
    rows = [
        [
            s.name,
            s.cpu_us,
            "%g" % s.sleep_ms,
            _size(s.bytes),
            s.connection,
            s.read,
            s.concurrency,
            "%g" % s.rate if s.rate is not None else "closed loop",
            s.description + ("" if s.source == "built-in" else " [%s]" % s.source),
        ]
        for s in specs
    ]
    headers = ["workload", "cpu µs", "sleep ms", "response", "connection", "read", "concurrency", "rate/s", "what"]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def list_workloads(file: str | None = None) -> int:
    """`python -m harness workloads [--workload-file F]`: the table of workloads. A bad file
    raises WorkloadError (a UsageError: one sentence, exit 2)."""
    print(table(list(catalog(file).values())))
    sys.stdout.flush()
    return 0
