"""Start-up hook that carries hangbench's `--emulate` into fresh interpreters.

`harness.server.emulate.apply()` and `child_env()` put this directory first on PYTHONPATH and name the
emulations in HANGBENCH_EMULATE. Python's `site` module imports the first `sitecustomize` on
sys.path while the interpreter starts, so every interpreter the server starts -- spawn workers,
the forkserver process, any subprocess -- runs this file before user code and installs the same
patches as the server process. Fork children need none of this: they inherit the patches.

`harness/server/emulate.py` is loaded by file path (as module `_hangbench_emulate`), because the
`harness` package is not necessarily importable this early. This file keeps to syntax any
Python can parse: an interpreter too old for harness.server.emulate prints one warning and goes on.
A start-up hook must never stop the interpreter, so errors become one line on stderr. A
`sitecustomize` this file shadows (a distribution's or a virtualenv's) still runs afterwards.
"""

import os
import sys

_ENV_VAR = "HANGBENCH_EMULATE"
_MODULE = "_hangbench_emulate"


def _warn(message):
    sys.stderr.write("hangbench-emulate[%d]: %s\n" % (os.getpid(), message))


def _here():
    return os.path.dirname(os.path.abspath(__file__))


def _activate():
    """Install what HANGBENCH_EMULATE names, from the emulate.py beside this directory."""
    if not os.environ.get(_ENV_VAR, "").strip():
        return
    if sys.version_info < (3, 8):
        version = "%d.%d" % sys.version_info[:2]
        _warn("Python %s is too old for %s; not emulating" % (version, _ENV_VAR))
        return
    import importlib.util

    path = os.path.join(os.path.dirname(_here()), "emulate.py")
    spec = importlib.util.spec_from_file_location(_MODULE, path)
    if spec is None or spec.loader is None:
        _warn("cannot load %s; not emulating" % path)
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module
    spec.loader.exec_module(module)
    module.apply_from_environment()


def _chain():
    """Run the sitecustomize this one shadows, if there is one further down sys.path."""
    if sys.version_info < (3, 4):  # no importlib.machinery.PathFinder.find_spec
        return
    import importlib.machinery
    import importlib.util

    here = _here()
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


for _step in (_activate, _chain):
    try:
        _step()
    except Exception as _exc:  # noqa: BLE001 - see the module docstring
        _warn("%s failed: %s: %s" % (_step.__name__, type(_exc).__name__, _exc))
