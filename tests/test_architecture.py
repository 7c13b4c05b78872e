"""The architecture, checked: the two halves meet only over TCP, and no module imports in a circle.

- The server side (`harness.server`, `strategies/`) imports nothing of the client side or the
  orchestration, and nothing outside the standard library at import time (it runs under any
  interpreter from 3.8 up; gevent and uvloop are imported only inside the strategy that uses
  them, loguru only if present). Checked in a fresh interpreter, by `sys.modules`.
- The client side (`harness.load`) imports nothing of the server side.
- The import graph of `harness/` — every `import` statement, including those inside functions —
  has no cycle, so any module can be understood (and imported) before the ones that use it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_MODULES = [
    "harness.server.process",
    "harness.server.strategy",
    "harness.server.emulate",
    "harness.server.watchdog",
    *sorted("strategies." + p.stem for p in (ROOT / "strategies").glob("*.py") if p.stem != "__init__"),
]
CLIENT_MODULES = ["harness.load", "harness.load.engines", "harness.load.engine_asyncio", "harness.load.engine_threads"]
OPTIONAL_SERVER_DEPS = {"loguru"}  # harness.server.log uses it when installed, the stdlib otherwise


def loaded_after_import(modules: list[str]) -> list[str]:
    code = "import json, sys\nfor m in %r: __import__(m)\nprint(json.dumps(sorted(sys.modules)))" % (modules,)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.slow
def test_server_side_imports_only_itself_and_the_standard_library() -> None:
    loaded = loaded_after_import(SERVER_MODULES)
    ours = [m for m in loaded if m.startswith("harness.")]
    assert [m for m in ours if not m.startswith("harness.server")] == []
    tops = {m.split(".")[0] for m in loaded}
    foreign = tops - set(sys.stdlib_module_names) - {"harness", "strategies", "__main__"} - OPTIONAL_SERVER_DEPS
    assert sorted(m for m in foreign if not m.startswith("_")) == []


@pytest.mark.slow
def test_client_side_imports_nothing_of_the_server_side() -> None:
    loaded = loaded_after_import(CLIENT_MODULES)
    assert [m for m in loaded if m.startswith(("harness.server", "strategies"))] == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, except those under `if TYPE_CHECKING:` (imports for annotations only)."""
    out: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        out.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    """The harness modules `path` imports anywhere in it, resolved to module names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    files = [p for p in (ROOT / "harness").rglob("*.py") if "_emulate_site" not in p.parts]
    known = {_module_name(p) for p in files}
    graph = {_module_name(p): _imports(p, known) for p in files}
    # A package's __init__ is imported on the way to any of its modules; an edge *into* a
    # package (e.g. `from .load import run_load`) is a real dependency, one out of it is not
    # a cycle when it points at the package's own modules.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("path", sorted((ROOT / "harness").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_much_longer_than_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 440, f"{path.name} has {lines} lines: split it along its seams"


def test_the_test_process_is_not_monkey_patched() -> None:
    """Nothing the tests import may gevent-patch the pytest process (locust does so on import):
    threads would become greenlets, and every later test that uses a thread could deadlock."""
    monkey = sys.modules.get("gevent.monkey")
    assert monkey is None or not any(monkey.is_module_patched(m) for m in ("socket", "threading", "select"))
