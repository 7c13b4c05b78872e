"""A plugin's import tried in a subprocess before the harness imports it in its own process.

A plugin is code the harness does not trust, and importing it runs that code: an import that
calls os._exit(), signals its own process (group), closes fds 1 and 2 or raises
KeyboardInterrupt would end the harness with a status a CI job could read as a pass. Tried
first in a subprocess (in a session of its own, bounded in time, through the server's own
loader), such a plugin ends the probe instead, and the run is refused in one sentence before
anything starts. One subprocess per plugin, and only when a plugin is given.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from typing import IO

from .errors import UsageError

# Loads the plugin through the server's own loader, then says so with a token that the plugin,
# imported after the token was read from stdin (not argv: /proc/self/cmdline shows that), cannot
# know; os._exit skips the plugin's atexit hooks.
_PROBE = """
import os, sys
token = sys.stdin.readline().strip()
from harness.server.registry import import_timeout_s, load_spec
from harness.server.base import StrategyError
try:
    load_spec(sys.argv[1], import_timeout_s())
except StrategyError as error:
    os.write(1, ("\\n" + token + " error " + " ".join(str(error).split()) + "\\n").encode())
    os._exit(3)
os.write(1, ("\\n" + token + " ok\\n").encode())
os._exit(0)
"""
PROBE_SLACK_S = 10.0  # the probe's own start, beyond the plugin import bound
MAX_OUTPUT_BYTES = 1 << 20  # of the probe's stdout and stderr, read back


def _tail(stream: IO[bytes]) -> bytes:
    """The last MAX_OUTPUT_BYTES of an output file: the probe's own word comes last."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - MAX_OUTPUT_BYTES))
    return stream.read(MAX_OUTPUT_BYTES)


def probe_plugin(spec: str, option: str = "--plugin") -> None:
    """Import `spec` in a subprocess; UsageError in one sentence unless it loads and exits cleanly."""
    from .server.registry import import_timeout_s

    token = "hangbench-probe-" + secrets.token_hex(8)
    # The same module path as this process (a `hangbench` script's differs from `python -m`'s).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    timeout = import_timeout_s() + PROBE_SLACK_S
    # Output into files, not pipes: a pipe stays open in any process the import left behind
    # (a daemon in a session of its own outlives killpg), and reading it to EOF would wait for that.
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _PROBE, spec],
                stdin=subprocess.PIPE,
                stdout=out_file,
                stderr=err_file,
                env=env,
                start_new_session=True,  # a plugin signalling its process group hits the probe alone
            )
        except OSError as error:
            raise UsageError("%s %s could not be checked: %s" % (option, spec, error)) from None
        try:
            assert child.stdin is not None  # stdin=PIPE
            with contextlib.suppress(OSError):  # a line into an empty pipe does not block
                child.stdin.write((token + "\n").encode())
                child.stdin.close()
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            raise UsageError("%s %s: importing it did not finish within %g s" % (option, spec, timeout)) from None
        finally:
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGKILL)  # anything the import left running in its session
            child.wait()  # killed, if it was still running: bounded
        out, err = _tail(out_file), _tail(err_file)
    said = [line for line in out.decode("utf-8", "replace").splitlines() if line.startswith(token + " ")]
    if child.returncode == 0 and said == [token + " ok"]:
        return
    if said and said[0].startswith(token + " error "):
        raise UsageError("%s %s cannot be loaded: %s" % (option, spec, said[0][len(token) + 7 :]))
    last = (err.decode("utf-8", "replace").strip().splitlines() or [""])[-1][:200]
    how = (
        "ended its process (exit status %d)" % child.returncode
        if child.returncode >= 0
        else "killed its process (signal %d)" % -child.returncode
    )
    raise UsageError(
        "%s %s cannot be loaded: importing it %s%s" % (option, spec, how, " (%s)" % last if last else " without a word")
    )
