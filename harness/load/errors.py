"""The client side's user-facing error types: each is a ValueError whose message is one sentence.

They live in a leaf module so that the workload check, the engine registry and the name
resolver can raise them, and the command line can catch them (`except ValueError` still works),
without importing one another.
"""

from __future__ import annotations


class WorkloadError(ValueError):
    """A workload that cannot be run as given (a bad number, a bad name): fix the options."""


class UnsupportedLoadModel(WorkloadError):
    """The chosen engine cannot drive the chosen load model (e.g. a rate for the threads engine)."""


class HostError(WorkloadError):
    """The host name does not resolve."""


__all__ = ["HostError", "UnsupportedLoadModel", "WorkloadError"]
