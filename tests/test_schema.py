"""The published JSON Schema (harness/results/schema.json) against real results files.

It must accept every committed reference file (schema version 1 and 2) and what a fresh run
writes, and refuse what the readers would refuse (a wrong type, an unknown status), so that
other tools can validate a results file without hangbench.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parent.parent
REFERENCE = sorted((REPO / "results" / "reference").glob("*.json"))


@pytest.fixture(scope="module")
def validator():
    text = resources.files("harness.results").joinpath("schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator, data) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]


def test_there_are_reference_files() -> None:
    assert REFERENCE, "results/reference/ holds no results file"


@pytest.mark.parametrize("path", REFERENCE, ids=lambda p: p.name)
def test_every_reference_file_validates(validator, path: Path) -> None:
    assert errors(validator, json.loads(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["strategies"][0].__setitem__("throughput_rps", "fast"), "throughput_rps"),
        (lambda d: d["strategies"][0].__setitem__("status", "fine"), "status"),
        (lambda d: d["strategies"][0]["requests"].__setitem__("ok", 1.5), "ok"),
        (lambda d: d.__setitem__("schema_version", 3), "schema_version"),
        (lambda d: d["strategies"][0].pop("strategy"), "strategy"),
        (lambda d: d["strategies"][0].__setitem__("server", "somewhere"), "server"),
    ],
)
def test_refuses_what_readers_refuse(validator, change, where: str) -> None:
    data = copy.deepcopy(json.loads(REFERENCE[0].read_text(encoding="utf-8")))
    change(data)
    found = errors(validator, data)
    assert found and any(where in message for message in found), found


def test_unknown_record_fields_are_allowed(validator) -> None:
    data = json.loads(REFERENCE[0].read_text(encoding="utf-8"))
    data["strategies"][0]["a_field_from_the_future"] = {"x": 1}
    assert errors(validator, data) == []


@pytest.mark.slow
def test_a_fresh_run_validates(validator, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    argv = [sys.executable, "-m", "harness", "--strategy", "threads", "-d", "1", "-w", "0.2", "-q", "-o", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["strategies"][0]["status"] == "completed"
    assert errors(validator, data) == []


def test_the_schema_names_every_field_of_the_records(validator) -> None:
    """A field added to a record must be added to the schema too (with its type)."""
    from dataclasses import fields

    from harness.results.records import RunRecord, StrategyRecord

    schema = validator.schema
    assert {f.name for f in fields(StrategyRecord)} <= set(schema["$defs"]["record"]["properties"])
    assert {f.name for f in fields(RunRecord)} <= set(schema["properties"])
