"""Hostile input found by a second adversarial pass over the run's command line and the server.

Each case once ran (or hung, or crashed with a traceback, or passed a CI gate that could never
fire) and must now be refused in one sentence, exit status 2, before any server starts -- or,
for the server, answer correctly:

- sweeps of nan levels (an empty job list, then an IndexError), a second --sweep, a
  concurrency sweep beside an explicit --concurrency;
- --url that is not a URL, has port 0, or comes with options only a started server would use;
- --head-timeout / --max-connections that `serve` refuses but the run passed on;
- gates that never fire: a CASE: naming no case, a non-finite value, a threshold twice;
- a --plugin that fails to load (or kills the process importing it) while another strategy runs;
- duplicates (--workload, --python, --start-method, --emulate), an empty scenario file, a
  workload file that is a device or a FIFO; a --strategy-option no strategy declares;
- a forged ready line aiming the readiness probe at another address;
- an oversized head answered by a connection reset instead of its 431; query numbers with
  underscores, and a query key given twice.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import List

import pytest
from test_adversarial_inputs import PREFIX, one_error_line

from harness import cli
from harness import run as run_module
from harness.server.app import App, BadWork, Limits, Work
from harness.server.protocol import Request
from harness.supervise.readyline import ReadyLineError, parse_ready, requested_host

REPO = Path(__file__).resolve().parent.parent
MISBEHAVING = REPO / "tests" / "misbehaving"


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the run gets as far as starting a case."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a case was started")

    monkeypatch.setattr(run_module, "run_case", refuse)


def refused(argv: List[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line in process; it must exit 2 with exactly one error line; return it."""
    assert cli.main(argv) == 2
    return one_error_line(capsys)


def run_argv(tmp_path: Path, *options: str) -> List[str]:
    return ["run", "--strategy", "threads", "-o", str(tmp_path / "out.json"), "-q", *options]


# --------------------------------------------------------------------------- 1. sweeps


@pytest.mark.parametrize(
    ("sweep", "fragment"),
    [
        ("rate=nan:10:x2", "'nan' is not a finite number"),
        ("rate=1:nan:x2", "'nan' is not a finite number"),
        ("rate=1:inf:x2", "'inf' is not a finite number"),
        ("rate=0:10:x2", "more than 0"),
        ("concurrency=nan", "'nan' is not a finite number"),
    ],
)
def test_a_sweep_of_no_usable_level_is_refused(
    sweep: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    assert fragment in refused(run_argv(tmp_path, "--sweep", sweep), capsys)


def test_a_second_sweep_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None) -> None:
    line = refused(run_argv(tmp_path, "--sweep", "rate=100,200", "--sweep=concurrency=1,2"), capsys)
    assert "--sweep is given twice" in line


def test_a_concurrency_sweep_with_an_explicit_concurrency_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    line = refused(run_argv(tmp_path, "--sweep", "concurrency=1,8", "-c", "4"), capsys)
    assert "--concurrency or --sweep concurrency" in line


# --------------------------------------------------------------------------- 2. --url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("http://[::1", "is not a URL"), ("http://127.0.0.1:0/", "not a number from 1 to 65535")],
)
def test_a_url_that_cannot_be_measured_is_one_sentence(
    url: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    line = refused(["run", "--url", url, "-o", str(tmp_path / "out.json")], capsys)
    assert fragment in line


@pytest.mark.parametrize(
    "option",
    [
        ["--workers", "2"],
        ["--emulate", "macos-unix-refusal"],
        ["--python", sys.executable],
        ["--start-method", "spawn"],
        ["--strategy-option", "executor=thread"],
        ["--head-timeout", "3"],
        ["--max-connections", "10"],
        ["--plugin", str(MISBEHAVING / "baseline.py")],
    ],
    ids=lambda option: option[0],
)
def test_url_with_a_server_only_option_is_refused(
    option: List[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    line = refused(["run", "--url", "http://127.0.0.1:9/", "-o", str(tmp_path / "out.json"), *option], capsys)
    assert "%s applies to the servers the run starts" % option[0] in line


# --------------------------------------------------------------------------- 3. server limits in the run


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--head-timeout", "0"),
        ("--head-timeout", "nan"),
        ("--head-timeout", "-1"),
        ("--max-connections", "0"),
        ("--max-connections", "-1"),
        ("--max-connections", "10000000000"),
    ],
)
def test_run_refuses_server_limits_that_serve_refuses(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    assert refused(run_argv(tmp_path, option, value), capsys).startswith(PREFIX + option + ": ")


def test_the_connection_cap_has_an_upper_bound() -> None:
    with pytest.raises(ValueError, match="between 1 and"):
        Limits(max_connections=10**10).validated()


# --------------------------------------------------------------------------- 4. gates


@pytest.mark.parametrize(
    ("threshold", "fragment"),
    [
        ("nosuch:hang_rate>0", "names case 'nosuch', which is not a case of this run; did you mean 'threads'?"),
        ("thread:hang_rate>0", "did you mean 'threads'?"),
        ("hang_rate>1e999", "must be a finite number"),
        ("p99_ms>nan", "is not of the form"),
    ],
)
def test_a_gate_that_could_never_fire_is_refused(
    threshold: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    assert fragment in refused(run_argv(tmp_path, "--fail-if", threshold), capsys)


def test_the_same_threshold_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    line = refused(run_argv(tmp_path, "--fail-if", "hang_rate>0", "--fail-if", "hang_rate > 0"), capsys)
    assert "given twice" in line


def test_the_exit_codes_of_signals_are_documented() -> None:
    from harness.gates import EXIT_CODES

    for code in ("129 SIGHUP", "131 SIGQUIT", "143 SIGTERM", "130"):
        assert code in EXIT_CODES
    readme = (REPO / "results" / "README.md").read_text(encoding="utf-8")
    assert "131 SIGQUIT" in readme and "every case was `no-response`" in readme


# --------------------------------------------------------------------------- 5. plugins


PLUGIN_BODIES = {
    "syntax_error": ("def broken(:\n", "SyntaxError"),
    "exits": ("import os\nos._exit(0)\n", "ended its process (exit status 0)"),
    "sigterm": ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", "killed its process (signal 15)"),
    "closes_output": ("import os\nos.close(1)\nos.close(2)\n", "cannot be loaded"),
    "interrupt": ("raise KeyboardInterrupt\n", "cannot be loaded"),
}


@pytest.mark.parametrize("kind", sorted(PLUGIN_BODIES))
def test_a_plugin_that_fails_to_load_is_refused_even_when_not_selected(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    body, fragment = PLUGIN_BODIES[kind]
    plugin = tmp_path / ("%s.py" % kind)
    plugin.write_text(body, encoding="utf-8")
    line = refused(run_argv(tmp_path, "--plugin", str(plugin)), capsys)
    assert line.startswith(PREFIX + "--plugin %s cannot be loaded" % plugin), line
    assert fragment in line


@pytest.mark.timeout(30)
def test_a_daemon_left_by_a_plugin_import_does_not_hold_the_probe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    """The daemon keeps the probe's stdout and stderr open (for 3 s): the probe waits for the
    process it started, not for the end of its output, and still reports the import's error."""
    plugin = tmp_path / "daemon.py"
    plugin.write_text(
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(3)\n"
        "    os._exit(0)\n"
        "raise ValueError('boom at import')\n",
        encoding="utf-8",
    )
    line = refused(run_argv(tmp_path, "--plugin", str(plugin)), capsys)
    assert "ValueError: boom at import" in line


def test_a_strategy_given_as_a_file_is_loaded_like_a_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    from harness import plan

    args = cli.build_parser().parse_args(["run", "--strategy", str(MISBEHAVING / "baseline.py")])
    cases = plan.build(args)
    assert [case.strategy for case in cases] == ["mis-baseline"]
    assert cases[0].spec == str(MISBEHAVING / "baseline.py")
    broken = tmp_path / "broken.py"
    broken.write_text("def broken(:\n", encoding="utf-8")
    line = refused(["run", "--strategy", str(broken), "-o", str(tmp_path / "out.json")], capsys)
    assert line.startswith(PREFIX + "--strategy %s cannot be loaded" % broken), line


# --------------------------------------------------------------------------- 6. duplicates and files


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--workload", "hello,hello"], "--workload names 'hello' twice"),
        (["--python", "%s,%s" % (sys.executable, sys.executable)], "--python names"),
        (["--start-method", "fork,fork"], "--start-method names fork twice"),
        (["--emulate", "macos-unix-refusal", "--emulate", "macos-unix-refusal"], "--emulate macos-unix-refusal is"),
    ],
    ids=["workload", "python", "start-method", "emulate"],
)
def test_a_value_given_twice_is_refused(
    options: List[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    assert fragment in refused(run_argv(tmp_path, *options), capsys)


def test_an_empty_scenario_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    scenario = tmp_path / "empty.toml"
    scenario.write_text("", encoding="utf-8")
    assert "empty.toml sets nothing" in refused(["run", str(scenario)], capsys)


@pytest.mark.timeout(20)
def test_a_workload_file_that_is_a_device_or_a_fifo_is_refused_without_reading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    fifo = tmp_path / "workloads.toml"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        assert "is not a regular file" in refused(run_argv(tmp_path, "--workload-file", path), capsys)


def test_a_large_workload_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n", encoding="utf-8")
    assert "larger than 1 MiB" in refused(run_argv(tmp_path, "--workload-file", str(big)), capsys)


# --------------------------------------------------------------------------- 7. strategy options


def test_a_strategy_option_no_strategy_declares_is_refused_by_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    line = refused(run_argv(tmp_path, "--strategy-option", "foo=bar"), capsys)
    assert "--strategy-option foo=bar: strategy 'threads' declares no option 'foo'" in line


def test_a_strategy_option_one_strategy_of_the_run_declares_is_accepted(tmp_path: Path) -> None:
    from harness import plan

    args = cli.build_parser().parse_args(
        ["run", "--strategy", "threads,asyncio-executor", "--strategy-option", "executor=thread"]
    )
    assert {case.strategy for case in plan.build(args)} == {"threads", "asyncio-executor"}


def test_serve_refuses_a_strategy_option_its_strategy_does_not_declare(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(["serve", "--strategy", "threads", "--strategy-option", "foo=bar"], capsys)
    assert "strategy 'threads' declares no option 'foo'" in line


# --------------------------------------------------------------------------- 8. the ready line's host


def test_the_ready_line_host_must_be_the_requested_one() -> None:
    line = b'{"event": "listening", "host": "%s", "port": 8080}'
    with pytest.raises(ReadyLineError, match="not the address the server was asked to bind"):
        parse_ready(line % b"192.0.2.7", 1, 0.0)  # no --host: loopback only
    with pytest.raises(ReadyLineError, match=r"asked to bind \(127.0.0.1\)"):
        parse_ready(line % b"10.1.2.3", 1, 0.0, "127.0.0.1")
    with pytest.raises(ReadyLineError):
        parse_ready(line % b"127.0.0.2", 1, 0.0, "127.0.0.1")
    with pytest.raises(ReadyLineError):
        parse_ready(line % b"10.1.2.3", 1, 0.0, "0.0.0.0")  # a wildcard allows itself and loopback only
    assert parse_ready(line % b"127.0.0.1", 1, 0.0, "0.0.0.0") is not None
    assert parse_ready(line % b"0.0.0.0", 1, 0.0, "0.0.0.0") is not None
    assert parse_ready(line % b"::1", 1, 0.0, "::") is not None
    assert parse_ready(line % b"::1", 1, 0.0, "localhost") is not None


def test_the_requested_host_is_read_from_the_servers_argv() -> None:
    assert requested_host(["python", "-m", "harness.server", "--host", "::1", "--port", "0"]) == "::1"
    assert requested_host(["server", "--host=0.0.0.0"]) == "0.0.0.0"
    assert requested_host(["server", "--port", "0"]) is None


@pytest.mark.timeout(60)
def test_a_forged_ready_line_never_aims_the_probe_elsewhere(tmp_path: Path) -> None:
    from harness.supervise.supervisor import NOT_READY, ServerProcess, StartupFailure

    forged = 'import json, time; print(json.dumps({"event": "listening", "host": "192.0.2.7", "port": 80}), flush=True)'
    argv = [sys.executable, "-c", forged + "; time.sleep(30)", "--host", "127.0.0.1"]
    with ServerProcess(tmp_path, capture_on_failure=False) as server, pytest.raises(StartupFailure) as caught:
        server.start(argv, ready_timeout_s=10)
    assert caught.value.status == NOT_READY
    assert "'192.0.2.7', not the address the server was asked to bind (127.0.0.1)" in caught.value.message


# --------------------------------------------------------------------------- 9. the server's HTTP


def test_query_numbers_are_plain_decimals_and_keys_come_once() -> None:
    app = App(Work(cpu_us=0, sleep_ms=0.0, bytes=5))
    for query in ("bytes=1_000", "bytes=+5", "bytes=%205", "cpu_us=1e3", "sleep_ms=nan", "sleep_ms=1_0.5"):
        with pytest.raises(BadWork, match="plain decimal"):
            app.parse_work(query)
    with pytest.raises(BadWork, match="bytes is given twice"):
        app.parse_work("bytes=1&bytes=2")
    assert app(_request("/work?bytes=1&bytes=1")).status == 400
    assert app.parse_work("bytes=1000&sleep_ms=0.5") == Work(0, 0.5, 1000)


def _request(target: str) -> Request:
    return Request("GET", target, "HTTP/1.1", (("host", "x"),), True)


def _oversized_heads() -> List[bytes]:
    many_headers = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n"
    long_line = b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    return [many_headers, long_line]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", ["threads", "gevent"])
def test_an_oversized_head_gets_its_431_before_any_reset(strategy: str) -> None:
    from helpers import start_server

    server = start_server(strategy)
    try:
        for head in _oversized_heads():
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
                conn.sendall(head)  # the server reads (and discards) the rest after its answer
                received = b""
                for _ in range(100):  # bounded: the answer is short and ends with the server's FIN
                    data = conn.recv(65536)
                    if not data:
                        break
                    received += data
                assert received.startswith(b"HTTP/1.1 431 "), received[:80]
    finally:
        server.close()
