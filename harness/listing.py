"""`python -m harness list`: every strategy, where it comes from, its summary, and why it is broken."""

from __future__ import annotations

import sys
import textwrap
from typing import List

from .server.strategy import discover


def list_strategies(plugins: List[str]) -> int:
    registry = discover(plugins)
    width = max(len(name) for name in registry) + 2
    for name, entry in sorted(registry.items(), key=lambda item: (item[1].source != "builtin", item[0])):
        cls = entry.cls
        if entry.error or cls is None:
            print("%-*s[%s, failed to load] %s" % (width, name, entry.source, entry.error))
            continue
        print(
            "%-*s%s%s"
            % (width, name, cls.summary, "" if entry.source == "builtin" else "  [%s: %s]" % (entry.source, entry.spec))
        )
        if cls.broken:
            for line in textwrap.wrap("broken on purpose: " + cls.broken, 100 - width):
                print(" " * width + "  " + line)
        for option in cls.strategy_options:  # --strategy-option NAME=VALUE
            choices = " (%s)" % "|".join(option.choices) if option.choices else ""
            print(" " * width + "  option %s=%s%s: %s" % (option.name, option.default, choices, option.help))
        if entry.note:
            print(" " * width + "  note: " + entry.note)
        if entry.unavailable:
            print(" " * width + "  not available here (left out of --strategy all): " + entry.unavailable)
    sys.stdout.flush()
    return 0
