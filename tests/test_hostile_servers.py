"""The supervisor against servers that attack it: a forged ready line, a flood of output, a full
disk under the logs, a daemon that scrubs every trace of its run.

Servers are the misbehaving plugins (tests/misbehaving/) under the server stub and the real
`harness.server`; the ready-line checks and the bounded logs are also tested without processes.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List

import psutil
import pytest
from misbehaving._launch import LAUNCHERS, REPO, argv_for, wait_for

from harness.supervise.output import HEAD_BYTES, TAIL_BYTES, CappedLog
from harness.supervise.readyline import ReadyLineError, parse_ready
from harness.supervise.supervisor import NOT_READY, ServerProcess, StartupFailure

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc, subreaper, cgroups"),
]

DAEMON_TAG = "hangbench-daemon-escape"


# --------------------------------------------------------------------------- ready line


@pytest.mark.parametrize(
    "line, fragment",
    [
        (b'{"event": "listening", "host": "127.0.0.1", "port": Infinity}', "'port' is Infinity, not an integer"),
        (b'{"event": "listening", "host": "127.0.0.1", "port": NaN}', "'port' is NaN, not an integer"),
        (b'{"event": "listening", "host": "127.0.0.1", "port": 1e400}', "'port' is inf, not an integer"),
        (b'{"event": "listening", "host": "127.0.0.1", "port": 70000}', "'port' is 70000, outside 1..65535"),
        (b'{"event": "listening", "host": "127.0.0.1", "port": 0}', "'port' is 0, outside 1..65535"),
        (b'{"event": "listening", "host": "127.0.0.1", "port": "80"}', "'port' is '80', not an integer"),
        (b'{"event": "listening", "host": "127.0.0.1", "port": true}', "'port' is True, not an integer"),
        (b'{"event": "listening", "host": "127.0.0.1"}', "has no 'port' field"),
        (b'{"event": "listening", "host": "example.com", "port": 80}', "'host' is 'example.com', not an IP"),
        (b'{"event": "listening", "host": ["::1"], "port": 80}', "'host' is ['::1'], not an IP"),
        (b'{"event": "listening", "port": 80, "pid": -5}', "'pid' is -5, outside 1.."),
        (b'{"event": "listening", "port": 80, "strategy": 7}', "'strategy' is 7, not a string"),
        (b'{"event": "listening", "port": 80, "strategy": "' + b"x" * 70000 + b'"}', "bytes long (limit 65536)"),
    ],
)
def test_forged_ready_lines_are_refused_with_one_sentence(line: bytes, fragment: str) -> None:
    with pytest.raises(ReadyLineError) as caught:
        parse_ready(line, 1234, 0.1)
    message = str(caught.value)
    assert fragment in message, message
    assert "\n" not in message and len(message) < 200


def test_valid_ready_line_and_other_lines() -> None:
    ready = parse_ready(b'{"event": "listening", "host": "::1", "port": 8080.0, "pid": 77}', 1234, 0.5)
    assert ready is not None and (ready.host, ready.port, ready.pid) == ("::1", 8080, 77)
    assert parse_ready(b'{"event": "listening", "port": 80}', 1234, 0.1).pid == 1234  # type: ignore[union-attr]
    for other in (b"listening on port 80", b'{"event": "started"}', b"[" * 100_000 + b'"listening"', b"{"):
        assert parse_ready(other, 1, 0.0) is None


FORGERIES = {
    "infinity": "'port' is Infinity, not an integer",
    "too-big": "'port' is 70000, outside 1..65535",
    "string": "'port' is '80', not an integer",
    "no-port": "has no 'port' field",
    "bad-host": "'host' is 'example.com'",
    "huge": "bytes long (limit 65536)",
    "endless": "bytes on stdout without a newline",
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("kind", sorted(FORGERIES))
def test_server_with_a_forged_ready_line_is_not_ready(kind: str, launcher: str) -> None:
    env = dict(os.environ, HANGBENCH_FORGED_READY=kind)
    with ServerProcess(capture_on_failure=False) as server, pytest.raises(StartupFailure) as caught:
        server.start(argv_for("forged_ready", launcher), env=env, ready_timeout_s=20, cwd=REPO)
    failure = caught.value
    assert failure.status == NOT_READY
    assert FORGERIES[kind] in failure.message, failure.message
    assert failure.stop_report is not None and failure.stop_report.leaks() == []


# --------------------------------------------------------------------------- output


def test_capped_log_keeps_a_head_and_a_tail_and_says_what_it_dropped(tmp_path: Path) -> None:
    log = CappedLog(tmp_path / "out.log", head_bytes=1000, tail_bytes=1000)
    for i in range(10_000):
        log.write(b"line %05d\n" % i)
    assert log.total_bytes == 110_000 and log.dropped_bytes > 100_000
    assert log.tail_text().splitlines()[-1] == "line 09999"
    log.close()
    text = (tmp_path / "out.log").read_text()
    assert text.startswith("line 00000\n") and text.endswith("line 09999\n")
    assert "bytes of output dropped here]" in text
    assert len(text) < 2200


def test_capped_log_on_a_full_disk_keeps_draining_and_says_so(tmp_path: Path) -> None:
    full = tmp_path / "full.log"
    full.symlink_to("/dev/full")  # every write fails with ENOSPC
    log = CappedLog(full)
    for _ in range(100):
        log.write(b"x" * 4096 + b"\n")
    log.write(b"last words\n")
    log.close()
    assert log.tail_text().splitlines()[-1] == "last words"
    assert len(log.errors) == 1 and "No space left on device" in log.errors[0], log.errors


@pytest.mark.slow
def test_chatty_server_is_drained_and_its_logs_stay_bounded(tmp_path: Path) -> None:
    with ServerProcess(tmp_path) as server:
        server.start(argv_for("chatty_output", "server"), ready_timeout_s=30, cwd=REPO)
        deadline = time.monotonic() + 3.0
        answers = 0
        for _ in range(1000):
            if time.monotonic() >= deadline:
                break
            answers += server.wait_answering(5, probe="http").is_http
        report = server.stop(5)
    assert answers > 3  # it was never blocked on a full pipe
    assert sum(report.output_bytes) > 20_000_000, report.output_bytes
    assert report.output_dropped_bytes > 0
    for name in ("stdout.log", "stderr.log"):
        assert (tmp_path / name).stat().st_size <= HEAD_BYTES + TAIL_BYTES + 200
    assert "answered a connection" in server.stderr_tail(2000) or "chatty output line" in server.stderr_tail(1)
    assert report.leaks() == []


@pytest.mark.slow
def test_full_disk_under_the_logs_does_not_stop_the_server_nor_the_stop(tmp_path: Path) -> None:
    for name in ("stdout.log", "stderr.log"):
        (tmp_path / name).symlink_to("/dev/full")
    with ServerProcess(tmp_path, forensics_dir=tmp_path / "f") as server:
        server.start(argv_for("chatty_output", "stub"), ready_timeout_s=30, cwd=REPO)
        assert server.wait_answering(5, probe="http").is_http
        assert wait_for(lambda: "chatty output line" in server.stderr_tail(1), 10)
        report = server.stop(5)
    assert any("No space left on device" in e for e in report.log_errors), report.log_errors
    assert report.leaks() == []


# --------------------------------------------------------------------------- escape


def _tagged(token: str) -> List[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(token in part for part in proc.info["cmdline"] or ()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("use_cgroup", [True, False], ids=["cgroup-if-possible", "subreaper-only"])
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_daemon_with_an_empty_environment_is_found_and_killed(launcher: str, use_cgroup: bool) -> None:
    token = uuid.uuid4().hex
    env: Dict[str, str] = dict(os.environ, HANGBENCH_TEST_TOKEN=token)
    with ServerProcess(use_cgroup=use_cgroup) as server:
        server.start(argv_for("daemon_escape", launcher), env=env, ready_timeout_s=30, cwd=REPO)
        assert wait_for(lambda: len(_tagged(token)) == 1, 10), "the daemon started"
        [daemon] = _tagged(token)
        assert daemon.environ() == {} or "HANGBENCH_RUN_ID" not in daemon.environ()
        assert os.getsid(daemon.pid) != server.pid, "it left the server's session"
        started = time.monotonic()
        report = server.stop(5)
        took = time.monotonic() - started
    assert daemon.pid in report.tree_pids
    assert report.leftover_pids == () and report.leaks() == []
    assert _tagged(token) == []
    assert took < 5 + 11, "bounded: grace + one short wait + the kill rounds"
    if not use_cgroup:
        assert report.containment == "subreaper+poll"
    else:
        assert report.containment in ("cgroup", "subreaper+poll")
        assert report.containment == "cgroup" or report.containment_note
    json.dumps(report.to_dict())
