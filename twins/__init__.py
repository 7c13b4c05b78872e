"""Production twins: gunicorn and uvicorn serving hangbench's handler, as strategy plugins.

A twin answers exactly what the built-in strategies answer (the same `/work` parameters, limits,
status codes and body bytes: `harness.server.app` does the routing and the work), but through the
server a production deployment would use, so a result table can place every built-in next to
the model it imitates:

    gunicorn-sync          pre-forked processes blocking in accept() on one shared listener
    gunicorn-gthread       pre-forked processes, each a thread pool behind a selector (2 x 16)
    gunicorn-gthread-1x32  the same in one process with 32 threads
    gunicorn-gevent        one process, a greenlet per connection (monkey-patched)
    uvicorn                pre-forked event loops (uvloop/httptools when installed), 2 processes

- `adapters`: the WSGI and ASGI applications over `harness.server.app.App`;
- `child`: runs the server as a child process on the harness's listening socket and stops it;
- `servers`: one Strategy class per twin.

They need the optional extra `[twins]` (gunicorn, uvicorn, httptools). Without it the modules
still import, so plugin discovery lists the twins, but each says it is unavailable.
"""
