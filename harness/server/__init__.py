"""The server side: one strategy serving the common handler over HTTP/1.1.

Standard library only and importable from Python 3.8 up, because a benchmark may run the server
under an older interpreter than the harness. It imports nothing from the client side
(`harness.load`) or the orchestration (`harness.supervise`, `harness.results`): the two halves
meet only over TCP. `python -m harness.server` runs `process.main()`.
"""
