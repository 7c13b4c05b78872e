"""Logging for the server side: loguru when it is importable, else a stdlib fallback.

The server side must run under interpreters that have nothing but the standard library (the
interpreter matrix), so it never imports loguru unconditionally. Both loggers take loguru's
`{}`-style messages. Logs go to stderr: stdout carries the server's machine-readable lines.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

_FORMAT = "{time:HH:mm:ss.SSS} | {level: <7} | pid {process} | {message}"


class _StdLogger:
    def __init__(self, level: str) -> None:
        self._levels = ("DEBUG", "INFO", "WARNING", "ERROR")
        self._min = self._levels.index(level) if level in self._levels else 1

    def _log(self, level: str, message: str, *args: Any, **kwargs: Any) -> None:
        if self._levels.index(level) < self._min:
            return
        text = message.format(*args, **kwargs) if (args or kwargs) else message
        stamp = time.strftime("%H:%M:%S")
        sys.stderr.write("%s | %-7s | pid %d | %s\n" % (stamp, level, os.getpid(), text))
        sys.stderr.flush()

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("DEBUG", message, *args, **kwargs)

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("INFO", message, *args, **kwargs)

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("WARNING", message, *args, **kwargs)

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("ERROR", message, *args, **kwargs)

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        import traceback

        self._log("ERROR", message + "\n" + traceback.format_exc().rstrip(), *args, **kwargs)


def setup(level: str = "INFO") -> Any:
    """Configure and return the process's logger (call once per process, workers included)."""
    try:
        from loguru import logger
    except ImportError:
        return _StdLogger(level)
    logger.remove()
    logger.add(sys.stderr, level=level, format=_FORMAT, backtrace=False, diagnose=False)
    return logger


def get() -> Any:
    try:
        from loguru import logger
    except ImportError:
        return _StdLogger(os.environ.get("HANGBENCH_LOG_LEVEL", "INFO"))
    return logger
