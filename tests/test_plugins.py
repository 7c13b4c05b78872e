"""Plugin discovery: entry points, `package.module:Class`, `path/to/file.py`, broken plugins.

The in-process tests call `harness.server.strategy` directly; the CLI tests run `python -m harness` in
a subprocess, as a user would, and check what it prints and its exit status. The example plugin
package `examples/fork-per-connection` is installed only into a throw-away venv under
`tmp_path`, never into the environment running the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO, HttpClient, get, request_bytes, run_cli

from harness.server.strategy import BUILTINS, StrategyError, discover, load_spec, resolve

EXAMPLE = REPO / "examples" / "fork-per-connection"
EXAMPLE_SPEC = "hangbench_fork:ForkPerConnection"

FILE_PLUGIN = '''
"""A test plugin: serves connections one at a time in the main thread, until asked to stop."""
import select

from harness.server.connection import serve_blocking
from harness.server.strategy import Strategy


class OneAtATime(Strategy):
    name = "one-at-a-time"
    summary = "test plugin: one connection at a time"

    def serve(self, listener, app, options):
        for _ in range(100000):
            ready = select.select([listener.fileno(), self.stop_fd], [], [], 1.0)[0]
            if self.stopping:
                return
            if listener.fileno() in ready:
                conn, _addr = listener.accept()
                serve_blocking(conn, app, 5.0)
'''

BROKEN_PLUGIN = """
import hangbench_test_no_such_dependency  # raises ModuleNotFoundError (an ImportError)
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A directory (put on PYTHONPATH by the tests) with a good and a broken plugin file, and a
    distribution whose entry point names the broken module, as an installed but broken
    third-party package would (importlib.metadata finds `*.dist-info` on any sys.path entry)."""
    (tmp_path / "good_plugin.py").write_text(FILE_PLUGIN)
    (tmp_path / "broken_plugin.py").write_text(BROKEN_PLUGIN)
    dist = tmp_path / "hangbench_broken_ep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hangbench-broken-ep\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.strategies]\nbroken = broken_plugin:Broken\n")
    return tmp_path


def lines_of(text: str) -> list:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_sentence_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert len(lines_of(result.stderr)) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# --------------------------------------------------------------------------- in process


def test_builtins_are_all_discovered_and_load() -> None:
    registry = discover()
    for name in BUILTINS:
        assert registry[name].cls is not None and registry[name].error is None, registry[name]
        assert getattr(registry[name].cls, "name", None) == name


def test_load_spec_module_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    cls = load_spec(EXAMPLE_SPEC)
    assert cls.name == "fork-per-connection"
    assert load_spec("hangbench_fork") is cls  # a module with exactly one Strategy subclass


def test_load_spec_file_with_and_without_class(tmp_path: Path) -> None:
    path = tmp_path / "inproc_plugin_a.py"
    path.write_text(FILE_PLUGIN)
    assert load_spec(str(path)).name == "one-at-a-time"
    assert load_spec(str(path) + ":OneAtATime").name == "one-at-a-time"


@pytest.mark.parametrize(
    "source, spec_suffix, message",
    [
        (BROKEN_PLUGIN, "", "ModuleNotFoundError"),
        ("x = 1\n", "", "defines 0 concrete Strategy subclasses"),
        (FILE_PLUGIN, ":Missing", "has no attribute 'Missing'"),
        ("class NotAStrategy:\n    name = 'x'\n", ":NotAStrategy", "is not a subclass"),
        (
            "from harness.server.strategy import Strategy\nclass Nameless(Strategy):\n    pass\n",
            "",
            "StrategyDefinitionError: strategy class Nameless: `name` must be a non-empty string",
        ),
        (FILE_PLUGIN + "\nclass Two(OneAtATime):\n    name = 'two'\n", "", "defines 2 concrete Strategy subclasses"),
    ],
    ids=["import-error", "no-strategy", "missing-attribute", "not-a-strategy", "no-name", "two-strategies"],
)
def test_load_spec_errors_are_strategy_errors(tmp_path: Path, source: str, spec_suffix: str, message: str) -> None:
    path = tmp_path / "inproc_bad.py"
    path.write_text(source)
    with pytest.raises(StrategyError) as info:
        load_spec(str(path) + spec_suffix)
    assert message in str(info.value)


def test_load_spec_missing_file_and_module() -> None:
    with pytest.raises(StrategyError, match="does not exist"):
        load_spec("no/such/plugin.py")
    with pytest.raises(StrategyError, match="cannot import plugin module"):
        load_spec("hangbench_no_such_module:Thing")


def test_broken_plugin_is_listed_with_its_error_and_others_still_work(tmp_path: Path) -> None:
    broken = tmp_path / "inproc_broken.py"
    broken.write_text(BROKEN_PLUGIN)
    good = tmp_path / "inproc_good.py"
    good.write_text(FILE_PLUGIN)
    registry = discover([str(broken), str(good)])
    assert "hangbench_test_no_such_dependency" in str(registry[str(broken)].error)
    assert registry["one-at-a-time"].cls is not None
    assert resolve("threads", registry).cls is not None
    with pytest.raises(StrategyError, match="cannot be loaded"):
        resolve(str(broken), registry)


def test_unknown_name_suggests_the_nearest() -> None:
    with pytest.raises(StrategyError) as info:
        resolve("thread", discover())
    assert "Did you mean 'threads'" in str(info.value)
    with pytest.raises(StrategyError) as info:
        resolve("zzzzzz", discover())
    assert "Did you mean" not in str(info.value)
    assert "python -m harness list" in str(info.value)


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_list_shows_builtins_and_broken_marks() -> None:
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for name in BUILTINS:
        assert name in result.stdout
    assert "broken on purpose" in result.stdout


@pytest.mark.slow
def test_cli_list_plugin_module_class() -> None:
    result = run_cli("list", "--plugin", EXAMPLE_SPEC, extra_path=[EXAMPLE])
    assert result.returncode == 0, result.stderr
    [line] = [ln for ln in result.stdout.splitlines() if ln.startswith("fork-per-connection")]
    assert "[plugin: %s]" % EXAMPLE_SPEC in line


@pytest.mark.slow
def test_cli_list_plugin_file(plugin_dir: Path) -> None:
    path = plugin_dir / "good_plugin.py"
    result = run_cli("list", "--plugin", str(path))
    assert result.returncode == 0, result.stderr
    [line] = [ln for ln in result.stdout.splitlines() if ln.startswith("one-at-a-time")]
    assert "[plugin: %s]" % path in line


@pytest.mark.slow
def test_cli_list_broken_plugins_with_their_errors(plugin_dir: Path) -> None:
    broken_file = plugin_dir / "broken_plugin.py"
    result = run_cli(
        "list", "--plugin", str(broken_file), "--plugin", str(plugin_dir / "good_plugin.py"), extra_path=[plugin_dir]
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # the broken entry point, under its entry-point name
    [ep_line] = [ln for ln in lines if ln.startswith("broken ")]
    assert "[entry point, failed to load]" in ep_line and "hangbench_test_no_such_dependency" in ep_line
    # the broken file, under its path
    [file_line] = [ln for ln in lines if ln.startswith(str(broken_file))]
    assert "[plugin, failed to load]" in file_line and "ModuleNotFoundError" in file_line
    # and everything else still there
    assert any(ln.startswith("one-at-a-time") for ln in lines)
    for name in BUILTINS:
        assert any(ln.startswith(name) for ln in lines), name


@pytest.mark.slow
def test_cli_serve_broken_entry_point_is_one_sentence(plugin_dir: Path) -> None:
    result = run_cli("serve", "--strategy", "broken", extra_path=[plugin_dir], timeout=30)
    assert_one_sentence_error(result, "strategy 'broken' cannot be loaded", "hangbench_test_no_such_dependency")


@pytest.mark.slow
def test_cli_serve_broken_file_is_one_sentence(plugin_dir: Path) -> None:
    result = run_cli("serve", "--strategy", str(plugin_dir / "broken_plugin.py"), timeout=30)
    assert_one_sentence_error(result, "cannot import plugin file", "ModuleNotFoundError")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, suggestion",
    [("thread", "'threads'"), ("pool-sockets", "'pool-socket'"), ("fork-per-conection", "'fork-per-connection'")],
)
def test_cli_serve_unknown_strategy_suggests_nearest(name: str, suggestion: str) -> None:
    result = run_cli("serve", "--plugin", EXAMPLE_SPEC, "--strategy", name, extra_path=[EXAMPLE], timeout=30)
    assert_one_sentence_error(result, "unknown strategy %r" % name, "Did you mean", suggestion)


@pytest.mark.slow
def test_serve_file_plugin_beside_a_broken_one(plugin_dir: Path, server_factory) -> None:
    server = server_factory(
        "one-at-a-time",
        "--plugin",
        str(plugin_dir / "broken_plugin.py"),
        "--plugin",
        str(plugin_dir / "good_plugin.py"),
        workers=None,
        extra_path=[plugin_dir],
    )
    assert server.ready["strategy"] == "one-at-a-time"
    assert get(server.port, "/work?bytes=7").body == b"x" * 7


# --------------------------------------------------------------------------- the example plugin, served


@pytest.mark.slow
def test_example_plugin_serves(server_factory) -> None:
    server = server_factory(EXAMPLE_SPEC, workers=4, extra_path=[EXAMPLE])
    assert server.ready["strategy"] == "fork-per-connection"
    response = get(server.port, "/work?bytes=100")
    assert response.status == 200 and response.body == b"x" * 100
    with HttpClient(server.port) as client:  # keep-alive within one child
        for n in (1, 2, 3):
            assert client.get("/work?bytes=%d" % n).body == b"x" * n
        assert client.get("/", [("Connection", "close")]).header("connection") == "close"
        assert client.at_eof()
    # Several connections at once: more than --workers, so some wait in the backlog.
    clients = [HttpClient(server.port) for _ in range(6)]
    try:
        for client in clients:
            client.send(request_bytes("/work?sleep_ms=50&bytes=2", [("Connection", "close")]))
        assert [client.read_response().body for client in clients] == [b"xx"] * 6
    finally:
        for client in clients:
            client.close()
    status, left = server.stop_gracefully()
    assert status == 0
    assert left == []


@pytest.mark.slow
def test_example_plugin_stop_kills_children_mid_connection(server_factory) -> None:
    server = server_factory(EXAMPLE_SPEC, "--idle-timeout", "60", workers=4, extra_path=[EXAMPLE])
    with HttpClient(server.port) as idle:  # a keep-alive child that would idle for a minute
        assert idle.get("/").status == 200
        assert len(server.group_pids()) == 2  # the server and that child
        status, left = server.stop_gracefully()
        assert status == 0
        assert left == []
        assert idle.at_eof()


@pytest.mark.slow
def test_example_plugin_installed_is_found_through_its_entry_point(tmp_path: Path, server_factory) -> None:
    """pip-install the example into a fresh venv (offline), then list and serve it by name.

    The venv sees this environment's packages (hangbench, setuptools for the build) through a
    .pth file calling site.addsitedir: `--system-site-packages` would expose the *base*
    interpreter's packages instead whenever the tests themselves run in a venv."""
    pytest.importorskip("setuptools")
    pytest.importorskip("pip")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    parent_sites = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "_hangbench_test_parent.pth").write_text(
        "".join("import site; site.addsitedir(%r)\n" % p for p in sorted(parent_sites))
    )
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the repository.
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    listed = run_cli("list", python=str(python))
    assert listed.returncode == 0, listed.stderr
    [line] = [ln for ln in listed.stdout.splitlines() if ln.startswith("fork-per-connection")]
    assert "[entry point: %s]" % EXAMPLE_SPEC in line
    # ... and the environment running the tests was left alone.
    assert not any(ln.startswith("fork-per-connection") for ln in run_cli("list").stdout.splitlines())

    server = server_factory("fork-per-connection", workers=2, python=str(python))
    assert get(server.port, "/work?bytes=3").body == b"xxx"


def test_entry_point_under_another_name_is_registered_under_the_class_name(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dist = plugin_dir / "hangbench_alias_ep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hangbench-alias-ep\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.strategies]\nalias = good_plugin:OneAtATime\n")
    monkeypatch.syspath_prepend(str(plugin_dir))
    registry = discover()
    entry = registry["one-at-a-time"]
    assert entry.registered_as == "alias" and entry.note == "entry point 'alias' names it 'one-at-a-time'"
    assert "alias" not in registry
    with pytest.raises(StrategyError, match="its class is named 'one-at-a-time'; use --strategy one-at-a-time"):
        resolve("alias", registry)
    from harness.listing import list_strategies

    list_strategies([])
    assert "note: entry point 'alias' names it 'one-at-a-time'" in capsys.readouterr().out
