"""Result records: JSON round trip, the documented format, atomic writes, output paths, reading
bad files, the derived metrics and the tables (`compare`, the run's terminal and Markdown
tables) built from them. In-process, except one real case (`run_case` on the threads strategy,
marked slow) whose record must survive the round trip too.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hdrh.histogram import HdrHistogram

from harness.load.metrics import LatencyHistogram
from harness.results import jsonio as results_mod
from harness.results.compare import compare_runs
from harness.results.environment import capture_environment
from harness.results.jsonio import check_writable, default_path, plan_outputs, read_run, write_run
from harness.results.records import SCHEMA_VERSION, ResultsError, RunRecord, StrategyRecord
from harness.results.table import WIDTH, markdown, terminal_table

DOCUMENTED_RECORD_FIELDS = {
    "client_procs",  # harness.placement (issue 14)
    "client_procs_why",
    "pinned",
    "cause",  # harness.supervise.causes (issue 16)
    "cause_evidence",
    "cause_facts",
    "timelines",
    "hang_milestones",
    "server",  # harness.remote: --url and --engine distributed
    "url",
    "workers",
    "strategy",
    "status",
    "start_method",
    "python",
    "broken",
    "requests",
    "throughput_rps",
    "hang_rate",
    "error_rate",
    "latency_us",
    "histogram",
    "elapsed_s",
    "client_cpu_util",
    "client_cpu_s",
    "server_cpu_util",
    "machine_cpu_busy",
    "client_bound",
    "server_cpu_s_per_1k",
    "server_peak_rss_mb",
    "server_mem_kind",
    "error_detail",
    "stuck",
    "forensics",
    "stop",
    "server_fds",
    "leaks",
    "message",
    "partial",
    "wall_s",
    "workload",
    "level",
    "repetition",
    "load_model",
    "intended_rate_rps",
    "achieved_rate_rps",
    "service_histogram",
    "service_latency_us",
    "intervals",
    "schedule_lag_us",
}
DOCUMENTED_RUN_FIELDS = {
    "created",
    "label",
    "environment",
    "config",
    "partial",
    "schema_version",
    "strategies",
    "summaries",
    "knees",
    "verdict",
}


def histogram(values: List[int]) -> LatencyHistogram:
    h = LatencyHistogram()
    for value in values:
        h.record(value)
    return h


def strategy_record(
    name: str = "threads", ok: int = 3, hang: int = 0, rps: float = 1000.0, p99: int = 2000, **extra: Any
) -> StrategyRecord:
    h = histogram([p99 // 2] * max(ok - 1, 0) + ([p99] if ok else []))
    requests = {"ok": ok, "hang": hang, "refused": 0, "reset": 0, "closed": 0, "malformed": 0, "http_error": 0}
    total = ok + hang
    fields: Dict[str, Any] = dict(
        strategy=name,
        status="completed",
        start_method=None,
        python="3.11.7",
        requests=requests,
        throughput_rps=rps,
        hang_rate=hang / total if total else 0.0,
        latency_us=h.summary(),
        histogram=h.encode(),
        elapsed_s=1.0,
        stop={"exit_code": 0, "killed_pids": [], "leftover_pids": [], "port_free": True},
        wall_s=2.5,
    )
    fields.update(extra)
    return StrategyRecord(**fields)


def run_record(*records: StrategyRecord, cpu: str = "cpu A", partial: bool = False) -> RunRecord:
    env = {
        "python": "3.11.7",
        "kernel": "6.1",
        "cpu_model": cpu,
        "cpu_count": 2,
        "packages": {"hangbench": "0.1.0", "uvloop": None},
        "git_commit": None,
        "loadavg_at_start": [0.1, 0.2, 0.3],
    }
    config = {
        "strategy": "all",
        "concurrency": 4,
        "plugin": [],
        "cases": [r.strategy for r in records],
        "deadline_s": 2.0,
        "duration_s": 1.0,
        "case_budget_s": 40.0,
    }
    return RunRecord("20260101T000000Z", "20260101T000000Z-test", env, config, list(records), partial=partial)


# --------------------------------------------------------------------------- round trip


def test_hand_built_record_round_trips_unchanged(tmp_path: Path) -> None:
    run = run_record(
        strategy_record("threads", ok=5),
        strategy_record(
            "pool-socket",
            ok=0,
            hang=4,
            start_method="fork",
            broken="keeps a reference",
            stuck="1/1 threads in accept",
            forensics={"summary": "x", "processes": [{"pid": 1, "fds": []}]},
            leaks=["the server's port is still bound after stop"],
        ),
        strategy_record("mis-raises", ok=0, status="crashed", message="the server exited with code 1\nTraceback..."),
        partial=True,
    )
    path = tmp_path / "run.json"
    write_run(run, path)
    assert read_run(str(path)) == run
    # And again: what was read writes the very same bytes.
    again = tmp_path / "again.json"
    write_run(read_run(str(path)), again)
    assert again.read_bytes() == path.read_bytes()


def test_reading_ignores_unknown_record_fields(tmp_path: Path) -> None:
    """A file from a later harness of the same schema version, with one more field, still reads."""
    data = run_record(strategy_record()).to_dict()
    data["strategies"][0]["invented_later"] = 42
    path = tmp_path / "later.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_run(str(path)).strategies[0] == strategy_record()


@pytest.fixture(scope="module")
def real_case(tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    """One real case, in process, as `run_benchmark` makes it: the threads server, loaded."""
    from harness import plan
    from harness.case import run_case
    from harness.cli import build_parser
    from harness.interrupts import Interrupts
    from harness.progress import ProgressPrinter
    from harness.run import config_of
    from harness.settings import settings_from

    args = build_parser().parse_args(
        [
            "run",
            "--strategy",
            "threads",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--concurrency",
            "2",
            "--stop-grace",
            "2",
            "--ready-timeout",
            "20",
        ]
    )
    cases = plan.build(args)
    settings = settings_from(args)
    record = run_case(cases[0], settings, Interrupts(), ProgressPrinter(quiet=True), tmp_path_factory.mktemp("case"))
    return RunRecord("20260101T000000Z", "real", capture_environment(), config_of(args, settings, cases), [record])


@pytest.mark.slow
def test_real_case_record_round_trips_unchanged(real_case: RunRecord, tmp_path: Path) -> None:
    record = real_case.strategies[0]
    assert record.status == "completed" and record.requests["ok"] > 0, record
    assert record.stop and record.stop["leftover_pids"] == [] and record.leaks == []
    path = tmp_path / "real.json"
    write_run(real_case, path)
    assert read_run(str(path)) == real_case


@pytest.mark.slow
def test_written_file_has_the_documented_format(real_case: RunRecord, tmp_path: Path) -> None:
    path = tmp_path / "real.json"
    write_run(real_case, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == DOCUMENTED_RUN_FIELDS
    assert data["schema_version"] == SCHEMA_VERSION == 2
    env = data["environment"]
    for key in (
        "python",
        "implementation",
        "executable",
        "os",
        "kernel",
        "machine",
        "hostname",
        "cpu_model",
        "cpu_count",
        "loadavg_at_start",
        "packages",
        "git_commit",
    ):
        assert key in env, key
    assert env["packages"]["hangbench"] and "gevent" in env["packages"] and "uvloop" in env["packages"]
    assert env["git_commit"] is None or len(env["git_commit"].split("-")[0]) == 40
    for key in ("cases", "deadline_s", "duration_s", "case_budget_s", "concurrency", "strategy"):
        assert key in data["config"], key
    record = data["strategies"][0]
    assert set(record) == DOCUMENTED_RECORD_FIELDS
    assert set(record["latency_us"]) == {"p50", "p90", "p99", "p999", "max"}
    assert isinstance(record["client_bound"], bool)
    decoded = HdrHistogram.decode(record["histogram"].encode("ascii"))
    assert decoded.get_total_count() == record["requests"]["ok"] > 0
    assert decoded.get_value_at_percentile(99.0) == record["latency_us"]["p99"]


# --------------------------------------------------------------------------- atomic writes


def test_failing_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.json"
    old = run_record(strategy_record("threads"))
    write_run(old, path)
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results_mod.os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_run(run_record(strategy_record("gevent")), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert read_run(str(path)) == old
    assert os.listdir(tmp_path) == ["run.json"]  # the temporary file is gone too


def test_failing_rename_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.json"
    write_run(run_record(strategy_record("threads")), path)
    before = path.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(results_mod.os, "replace", refuse)
    with pytest.raises(OSError):
        write_run(run_record(strategy_record("gevent")), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.json"]


def test_unserialisable_record_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_run(run_record(strategy_record("threads")), path)
    before = path.read_bytes()
    bad = run_record(strategy_record("threads"))
    bad.config["oops"] = object()
    with pytest.raises(TypeError):
        write_run(bad, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.json"]


# --------------------------------------------------------------------------- reading and checking paths


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "does not exist"),
        ("{not json", "cannot read results file"),
        ("[]", "not a hangbench results file"),
        ('"text"', "not a hangbench results file"),
        ('{"schema_version": 3}', "schema version 3 is not supported"),
        ('{"schema_version": 1, "created": "x"}', "not a hangbench results file"),
        (
            '{"schema_version": 1, "created": "x", "label": "y", "environment": {}, "config": {}, '
            '"strategies": [{"status": "ok"}]}',
            "not a hangbench results file",
        ),
    ],
)
def test_bad_results_files_raise_results_error_naming_the_file(content: Any, fragment: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ResultsError, match=fragment) as caught:
        read_run(str(path))
    assert str(path) in str(caught.value)


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "deeper" / "run.json")  # folders are created
    assert (tmp_path / "new" / "deeper").is_dir()
    assert os.listdir(tmp_path / "new" / "deeper") == []  # the probe file is gone
    with pytest.raises(ResultsError, match="is a folder"):
        check_writable(tmp_path)
    with pytest.raises(ResultsError, match="not writable"):
        check_writable(Path("/proc/run.json"))  # os.access says yes here, to root at least


def test_default_path_is_a_timestamped_safe_name() -> None:
    path = default_path("pool-socket+threads/../x y", Path("results"))
    assert path.parent == Path("results")
    assert path.suffix == ".json"
    assert "/" not in path.name and " " not in path.name and "+" not in path.name
    assert path.name[:16].endswith("Z") and path.name[16] == "-"


# --------------------------------------------------------------------------- tables


def test_compare_shows_throughput_p99_and_hang_rate_changes() -> None:
    baseline = run_record(
        strategy_record("threads", ok=10, rps=1000.0, p99=2000),
        strategy_record("pool-socket", ok=10, rps=500.0, p99=4000),
        strategy_record("gone", ok=1),
    )
    candidate = run_record(
        strategy_record("threads", ok=10, rps=1500.0, p99=1000),
        strategy_record("pool-socket", ok=9, hang=1, rps=250.0, p99=4000),
        strategy_record("new", ok=1),
    )
    text = compare_runs(baseline, candidate)
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    threads = rows["threads"]
    assert "1000 -> 1500" in threads and "+50.0%" in threads
    p99_before, p99_after = baseline.strategies[0].latency_us["p99"], candidate.strategies[0].latency_us["p99"]
    assert "%.2f -> %.2f" % (p99_before / 1000, p99_after / 1000) in threads
    assert "%+.1f%%" % (100.0 * (p99_after - p99_before) / p99_before) in threads
    pool = rows["pool-socket"]
    assert "500 -> 250" in pool and "-50.0%" in pool
    assert "0 -> 1 (10%)" in pool and "+10" in pool  # hangs as count and share; the rate's change in points
    assert "only in baseline" in rows["gone"]
    assert "only in candidate" in rows["new"]
    assert "different CPUs" not in text


def test_compare_shows_a_single_hang_as_a_count_and_a_share() -> None:
    baseline = run_record(strategy_record("threads", ok=30000))
    candidate = run_record(strategy_record("threads", ok=29999, hang=1))
    assert "0 -> 1 (0.00333%)" in compare_runs(baseline, candidate)


@pytest.mark.parametrize("key, other", [("read", "eof"), ("concurrency", 8), ("deadline_s", 5.0), ("bytes", 1024)])
def test_compare_refuses_runs_of_different_workloads(key: str, other: Any) -> None:
    from harness.errors import UsageError
    from harness.results.compare import check_comparable

    baseline = run_record(strategy_record("threads"))
    baseline.config.update({"read": "content-length", "bytes": 64})
    candidate = run_record(strategy_record("threads"))
    candidate.config.update({"read": "content-length", "bytes": 64})
    check_comparable(baseline, candidate)  # the same workload: fine
    candidate.config[key] = other
    with pytest.raises(UsageError, match=key):
        check_comparable(baseline, candidate)


def test_compare_warns_about_different_machines_and_shows_status_changes() -> None:
    baseline = run_record(strategy_record("threads"), cpu="cpu A")
    candidate = run_record(strategy_record("threads", ok=0, status="crashed", rps=0.0), cpu="cpu B")
    text = compare_runs(baseline, candidate)
    assert "completed -> crashed" in text
    assert "different CPUs" in text


def _table_rows(table: str) -> Dict[str, List[str]]:
    """Rows of the terminal table by strategy name (its second column), as lists of cells."""
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["#", "strategy", "status"], table
    rows = {}
    for line in lines[2:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[1]] = cells
    return rows


def _notes(table: str) -> Dict[int, str]:
    """The notes under the table, by row number, each joined back into one line."""
    notes: Dict[int, str] = {}
    current = None
    for line in table.splitlines():
        if line.startswith("["):
            current = int(line[1 : line.index("]")])
            notes[current] = line
        elif line.startswith("    ") and current is not None:
            notes[current] += " " + line.strip()
        else:
            current = None
    return notes


def test_tables_show_failures_with_their_reason_and_no_numbers() -> None:
    run = run_record(
        strategy_record("threads", ok=10),
        StrategyRecord(
            "mis-never-answers", "not-ready", python="3.11.7", message="listening but no response\nstderr tail"
        ),
        strategy_record("pool-socket", ok=0, hang=3, rps=0.0, stuck="1/1 threads in accept (pool_socket.py:40)"),
    )
    table = terminal_table(run.strategies)
    rows = _table_rows(table)
    assert rows["mis-never-answers"][:4] == ["2", "mis-never-answers", "not-ready", "-"]
    notes = _notes(table)
    assert "listening but no response" in notes[2]
    assert "stderr tail" not in table  # only the first line of a message
    assert "stuck: 1/1 threads in accept" in notes[3]
    assert 1 not in notes  # nothing to say about threads
    text = markdown(run, "python -m harness --strategy all")
    assert "`python -m harness --strategy all`" in text
    assert "| mis-never-answers" in text
    assert "(2.0s)" in text  # the deadline, from the config


def test_terminal_table_fits_120_columns_with_long_notes_under_it() -> None:
    long_leak = "the server's port is still bound after stop; " * 5
    run = run_record(
        strategy_record("threads", ok=10, client_bound=True, leaks=[long_leak]),
        strategy_record("asyncio-executor", ok=5, hang=2, start_method="fork", stuck="x " * 100),
        strategy_record("asyncio-executor", ok=5, start_method="spawn", server_cpu_s_per_1k=1.5),
        StrategyRecord(
            "pool-fromfd", "failed-to-start", start_method="forkserver", python="3.11.7", message="m " * 200
        ),
    )
    table = terminal_table(run.strategies)
    assert max(len(line) for line in table.splitlines()) <= WIDTH, table
    rows = _table_rows(table)
    assert set(rows) == {"threads", "asyncio-executor/fork", "asyncio-executor/spawn", "pool-fromfd/forkserver"}
    notes = _notes(table)
    assert "client-bound" in notes[1] and "--client-procs" in notes[1] and "LEAK" in notes[1]
    assert "p99" in table.splitlines()[0] and "hangs" in table.splitlines()[0]


def test_terminal_table_drops_the_least_needed_columns_before_it_overflows() -> None:
    run = run_record(strategy_record("a-plugin-with-a-very-long-name-indeed-" * 2, ok=3, hang=1))
    table = terminal_table(run.strategies)
    assert max(len(line) for line in table.splitlines()) <= WIDTH, table
    header = table.splitlines()[0].split()
    assert "p90" not in header and "p99" in header and "hangs" in header


def test_client_bound_rows_say_what_to_try_in_markdown_too() -> None:
    text = markdown(run_record(strategy_record("threads", client_bound=True)), "cmd")
    assert "--client-procs" in text and "faster client" in text


def test_client_bound_hint_names_what_the_row_did_not_use_yet() -> None:
    from harness.results.table import client_bound_hint

    plain = client_bound_hint(strategy_record("threads", client_bound=True))
    assert "--client-procs 2 or more (it ran 1)" in plain and "--pin" in plain and "uvloop" in plain
    from dataclasses import replace

    record = strategy_record("threads", client_bound=True)
    pinned = replace(record, client_procs=2, pinned={"server": [0], "client": [1]})
    assert "--client-procs 3" in client_bound_hint(pinned) and "--pin" not in client_bound_hint(pinned)


# --------------------------------------------------------------------------- typed fields


@pytest.mark.parametrize(
    "field, value",
    [
        ("throughput_rps", "fast"),
        ("requests", {"ok": "3"}),
        ("latency_us", [1, 2]),
        ("client_bound", "yes"),
        ("hang_rate", None),
        ("leaks", "none"),
        ("status", 3),
        ("wall_s", True),
    ],
)
def test_a_wrongly_typed_field_is_refused_naming_the_field(field: str, value: Any, tmp_path: Path) -> None:
    data = run_record(strategy_record()).to_dict()
    data["strategies"][0][field] = value
    path = tmp_path / "typed.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ResultsError, match=repr(field)) as caught:
        read_run(str(path))
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_ints_are_accepted_where_floats_are_documented(tmp_path: Path) -> None:
    data = run_record(strategy_record()).to_dict()
    data["strategies"][0]["throughput_rps"] = 1000
    path = tmp_path / "ints.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_run(str(path)).strategies[0].throughput_rps == 1000


# --------------------------------------------------------------------------- output paths


def test_output_paths_default_and_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = plan_outputs(None, "threads")
    assert default.json.parent == Path("results") and default.table == Path("results") / "latest.md"
    given = plan_outputs(str(tmp_path / "x" / "y.json"), "ignored")
    assert given.json == tmp_path / "x" / "y.json" and given.table == tmp_path / "x" / "y.md"
    assert given.shown == tmp_path / "x" / "y.json"


def test_output_onto_a_symlink_writes_through_it_and_keeps_it(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    outputs = plan_outputs(str(link), "x")
    write_run(run_record(strategy_record()), outputs.json)
    assert link.is_symlink() and read_run(str(link)) == read_run(str(real))


@pytest.mark.parametrize("kind", ["fifo", "folder", "link-to-folder", "dangling-link", "dev-null", "md-suffix"])
def test_output_onto_anything_but_a_regular_file_is_refused(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "link-to-folder":
        path.symlink_to(tmp_path)
    elif kind == "dangling-link":
        path.symlink_to(tmp_path / "nothing")
    elif kind == "dev-null":
        path = Path("/dev/null")
    else:
        path = tmp_path / "out.md"
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ResultsError) as caught:
        plan_outputs(str(path), "x")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == before
    assert not Path("/dev/null").is_file()


def test_a_special_file_where_the_table_would_go_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "out.md")
    with pytest.raises(ResultsError, match="FIFO"):
        plan_outputs(str(tmp_path / "out.json"), "x")


# --------------------------------------------------------------------------- the documentation


def test_results_readme_documents_every_field_and_status() -> None:
    from dataclasses import fields as dataclass_fields

    from harness.errors import STATUSES

    text = (Path(__file__).resolve().parent.parent / "results" / "README.md").read_text(encoding="utf-8")
    assert {f.name for f in dataclass_fields(StrategyRecord)} == DOCUMENTED_RECORD_FIELDS
    for name in DOCUMENTED_RECORD_FIELDS | DOCUMENTED_RUN_FIELDS:
        assert "`%s`" % name in text, name
    for status in STATUSES:
        assert "`%s`" % status in text, status


def test_every_committed_reference_file_reads() -> None:
    """The type checks on reading must accept every file this harness has written."""
    reference = Path(__file__).resolve().parent.parent / "results" / "reference"
    files = sorted(reference.glob("*.json"))
    assert files
    for path in files:
        assert read_run(str(path)).strategies, path
