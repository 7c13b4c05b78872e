"""hangbench: measure how Python TCP server concurrency strategies behave under load.

The package is split in two halves that meet only over TCP: the server side (protocol, app,
connection, reactor, strategy, server, and the `strategies` package) and the client side (load,
metrics, results, report, run). The server side imports nothing from the client side and needs
only the standard library, so it runs under any interpreter from 3.8 up.
"""

__version__ = "0.1.0"
