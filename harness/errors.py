"""The words every part of the orchestration shares: the user's-fault exception and how it is
reported (prefix, command name), the statuses of a case, how a process ended, and the
JSON-plain form of a value.

A leaf module: it imports nothing from `harness`, so the command line, the run, the supervisor
and the results can all import it without an import cycle (before it, `UsageError` lived in
the command line and was imported lazily from the modules the command line itself imports).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

ERROR_PREFIX = "hangbench: error: "  # every error a user can cause, whatever the sub-command


class UsageError(Exception):
    """Bad input from the user: reported as one sentence, exit status 2, before anything starts."""


def prog_name() -> str:
    """The command as the user typed it: the installed `hangbench`, or `python -m harness`."""
    return "hangbench" if os.path.basename(sys.argv[0] or "") == "hangbench" else "python -m harness"


# Statuses of a case (a StrategyRecord's `status`), documented in results/README.md.
COMPLETED = "completed"  # measured to the end (hangs and errors are findings, not failures)
NO_RESPONSE = "no-response"  # measured to the end, but not one request got a complete response
FAILED_TO_START = "failed-to-start"  # exited before it was ready
CRASHED = "crashed"  # died after it was ready
NOT_READY = "not-ready"  # never printed its address, or never answered, within --ready-timeout
TIMED_OUT = "timed-out"  # exceeded its wall-clock budget; the tree was killed
INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM to the harness

STATUSES = (COMPLETED, NO_RESPONSE, FAILED_TO_START, CRASHED, NOT_READY, TIMED_OUT, INTERRUPTED)
MEASURED = (COMPLETED, NO_RESPONSE)  # statuses whose numbers cover the whole measurement


def signal_name(number: int) -> str:
    """SIGKILL for 9; the number itself for a signal this platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def describe_exit(code: int | None) -> str:
    """A process's exit as a phrase: 'code 1', 'signal SIGSEGV' (negative codes are signals)."""
    if code is None:
        return "no exit code"
    if code < 0:
        return "signal %s" % signal_name(-code)
    return "code %d" % code


def plain(value: Any) -> Any:
    """`value` as JSON will read it back (tuples become lists, keys strings), so that a record
    equals its own round trip."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value
