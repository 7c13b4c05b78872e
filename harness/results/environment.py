"""Where the numbers came from: interpreter, OS, kernel, CPU, package versions, git commit, load.

Captured once per run into `RunRecord.environment`, so that two result files can say whether
they are comparable (`compare` warns when the CPUs differ).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

PACKAGES = (
    "hangbench",
    "gevent",
    "loguru",
    "tabulate",
    "hdrhistogram",
    "psutil",
    "uvloop",
    "py-spy",
    "pytest-benchmark",
)


def capture_environment() -> Dict[str, Any]:
    uname = platform.uname()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": os.path.realpath(sys.executable),
        "os": platform.platform(),
        "kernel": uname.release,
        "machine": uname.machine,
        "hostname": uname.node,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": _package_versions(),
        "git_commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    versions: Dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git_commit() -> Optional[str]:
    here = Path(__file__).resolve().parent.parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
