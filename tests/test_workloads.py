"""Named workloads: the built-ins, overrides by explicit flags, and user TOML files."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.load.workload import Workload
from harness.run_options import add_run_options
from harness.workloads import (
    BUILTIN,
    WorkloadError,
    WorkloadSpec,
    apply_overrides,
    catalog,
    check,
    explicit_overrides,
    list_workloads,
    load_file,
    resolve,
)


def test_the_builtins_are_valid_and_hello_is_todays_default() -> None:
    assert list(BUILTIN) == ["hello", "keep-alive", "cpu", "io", "mixed", "large"]
    for spec in BUILTIN.values():
        assert check(spec) == spec
        load = dataclasses.replace(Workload("127.0.0.1", 8080), **spec.load_fields()).check()
        assert load.cpu_us == spec.cpu_us and load.connection == spec.connection
    default = Workload("127.0.0.1", 8080)
    assert {key: getattr(default, key) for key in BUILTIN["hello"].load_fields()} == BUILTIN["hello"].load_fields()
    assert BUILTIN["cpu"].cpu_us == 1000 and BUILTIN["io"].sleep_ms == 20.0 and BUILTIN["io"].concurrency == 256
    assert BUILTIN["large"].bytes == 256 * 1024 and BUILTIN["keep-alive"].connection == "keep-alive"


def test_resolve_names_all_and_typos() -> None:
    assert [s.name for s in resolve("cpu, io")] == ["cpu", "io"]
    with pytest.raises(WorkloadError, match="names 'cpu' twice"):
        resolve("cpu, io,cpu")
    assert [s.name for s in resolve("all")] == list(BUILTIN)
    with pytest.raises(WorkloadError, match=r"unknown workload 'cpuu'; did you mean 'cpu'"):
        resolve("cpuu")
    with pytest.raises(WorkloadError, match="at least one"):
        resolve(" , ")


def test_apply_overrides_takes_only_given_values_and_checks_them() -> None:
    io = BUILTIN["io"]
    assert apply_overrides(io, {"concurrency": None, "cpu_us": None}) is io
    changed = apply_overrides(io, {"concurrency": 64, "connection": "close"})
    assert (changed.name, changed.sleep_ms, changed.concurrency, changed.connection) == ("io", 20.0, 64, "close")
    with pytest.raises(WorkloadError, match=r"concurrency must be between 1 and \d+ \(got 0\)"):
        apply_overrides(io, {"concurrency": 0})
    with pytest.raises(WorkloadError, match="did you mean 'cpu_us'"):
        apply_overrides(io, {"cpu": 5})


def test_explicit_overrides_sees_flags_given_even_at_their_default() -> None:
    parser = add_run_options(argparse.ArgumentParser())
    assert explicit_overrides(parser, ["--strategy", "threads"]) == {}
    assert explicit_overrides(parser, ["-c", "32"]) == {"concurrency": 32}
    given = explicit_overrides(parser, ["--connection", "keep-alive", "--cpu-us", "5", "-d", "3"])
    assert given == {"connection": "keep-alive", "cpu_us": 5}


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "workloads.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_workload_file_defines_workloads_on_a_base(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        '[workloads.checkout]\ndescription = "a checkout page"\nbase = "mixed"\ncpu_us = 2000\nrate = 500\n\n'
        "[workloads.tiny]\nconcurrency = 4\n",
    )
    found = load_file(path)
    assert list(found) == ["checkout", "tiny"]
    checkout = found["checkout"]
    assert (checkout.cpu_us, checkout.sleep_ms, checkout.bytes, checkout.rate) == (2000, 10.0, 4096, 500.0)
    assert checkout.source == path and isinstance(checkout.rate, float)
    assert found["tiny"] == dataclasses.replace(
        BUILTIN["hello"], name="tiny", description="", concurrency=4, source=path
    )
    assert [s.name for s in resolve("all", path)] == [*BUILTIN, "checkout", "tiny"]
    assert "checkout" in catalog(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[workloads.w]\ncpu = 5\n", r"workload 'w' has no key 'cpu'; did you mean 'cpu_us'"),
        ("[workloads.w]\ncpu_us = 1.5\n", r"cpu_us must be a whole number \(got 1.5\)"),
        ('[workloads.w]\nsleep_ms = "long"\n', r"sleep_ms must be a number"),
        ("[workloads.w]\nconcurrency = true\n", r"concurrency must be a whole number \(got True\)"),
        ("[workloads.w]\nbytes = -1\n", r"bytes must be between 0 and \d+ \(got -1\)"),
        ('[workloads.w]\nconnection = "keepalive"\n', r"connection must be one of close, keep-alive"),
        ("[workloads.w]\nrate = 0\n", r"rate must be more than 0"),
        ('[workloads.w]\nbase = "cpuu"\n', r"base must name a built-in workload; did you mean 'cpu'"),
        ("[workloads.cpu]\ncpu_us = 5\n", r"'cpu' is a built-in workload's name"),
        ("[workloads.all]\n", r"not 'all'"),
        ('[workloads."Bad Name"]\n', r"lower-case letters"),
        ("[workload.w]\n", r"unknown top-level key 'workload'; did you mean 'workloads'"),
        ("title = 'x'\n", r"unknown top-level key 'title'"),
        ("[workloads]\n", r"defines no workloads"),
        ("[workloads\n", r"is not valid TOML"),
    ],
)
def test_a_bad_workload_file_is_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(WorkloadError, match=message) as caught:
        load_file(path)
    assert str(caught.value).startswith("workload file %s" % path)
    assert "\n" not in str(caught.value)


def test_a_missing_file_and_the_error_types(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="does not exist"):
        load_file(str(tmp_path / "none.toml"))
    # The command line reports a UsageError as one sentence and exit 2; callers may also catch ValueError.
    assert issubclass(WorkloadError, UsageError) and issubclass(WorkloadError, ValueError)


def test_list_workloads_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert list_workloads(None) == 0
    out = capsys.readouterr().out
    for name in BUILTIN:
        assert name in out
    assert "256 KiB" in out and "1000" in out
    path = _file(tmp_path, "[workloads.mine]\nsleep_ms = 3\n")
    assert list_workloads(path) == 0
    assert "mine" in capsys.readouterr().out


def test_parameters_line() -> None:
    assert BUILTIN["cpu"].parameters() == "cpu 1000 µs, sleep 0 ms, 64 B, keep-alive, c=32"
    spec = WorkloadSpec("x", read="eof", rate=250.0)
    assert spec.parameters().endswith("c=32, read eof, 250 req/s")
