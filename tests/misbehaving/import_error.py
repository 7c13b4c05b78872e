"""Misbehaves at import: the plugin module cannot be imported at all.

Expected: the server exits non-zero before its ready line -> StartupFailure "failed-to-start".
"""

import hangbench_module_that_does_not_exist  # noqa: F401

from harness.server.strategy import Strategy


class ImportFails(Strategy):
    name = "mis-import-error"
    summary = "cannot be imported"
    broken = "imports a module that does not exist"

    def serve(self, listener, app, options):
        raise AssertionError("never reached")
