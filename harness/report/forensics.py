"""Hang forensics as collapsible HTML: where each process and thread of a hung server was.

A capture holds every thread's stack in every process of the server tree, and can run to
hundreds of kilobytes; the page shows the phrase, then per process its state and wait channel,
its threads' innermost frames and its TCP sockets, bounded in count so that a huge tree still
makes a readable page. The JSON keeps everything.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

MAX_PROCESSES = 24
MAX_FRAMES = 12
MAX_TIMELINES = 20


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _frames(thread: dict[str, Any]) -> str:
    frames = [f for f in thread.get("frames") or () if isinstance(f, dict)]
    lines = []
    for frame in frames[:MAX_FRAMES]:
        where = frame.get("filename", "?")
        if frame.get("line"):
            where = "%s:%s" % (where, frame["line"])
        lines.append("%s%s (%s)" % ("[native] " if frame.get("native") else "", frame.get("function", "?"), where))
    if len(frames) > MAX_FRAMES:
        lines.append("... %d outer frames" % (len(frames) - MAX_FRAMES))
    return "\n".join(lines)


def _process(process: dict[str, Any]) -> str:
    head = "pid %s · state %s · wchan %s" % (
        process.get("pid", "?"),
        process.get("state", "?"),
        process.get("wchan") or "-",
    )
    threads = []
    for thread in process.get("threads") or ():
        if not isinstance(thread, dict):
            continue
        name = "%s (tid %s)%s" % (
            thread.get("name") or "thread",
            thread.get("tid", "?"),
            " active" if thread.get("active") else "",
        )
        threads.append("<li><b>%s</b><pre>%s</pre></li>" % (_esc(name), _esc(_frames(thread))))
    sockets = [
        fd.get("detail")
        for fd in process.get("fds") or ()
        if isinstance(fd, dict) and str(fd.get("detail") or "").startswith("tcp")
    ]
    socket_list = "<p>TCP sockets:</p><pre>%s</pre>" % _esc("\n".join(str(s) for s in sockets)) if sockets else ""
    errors = process.get("errors") or ()
    error_list = "<p>capture errors: %s</p>" % _esc("; ".join(str(e) for e in errors)) if errors else ""
    return "<details><summary>%s</summary><ul>%s</ul>%s%s</details>" % (
        _esc(head),
        "".join(threads),
        socket_list,
        error_list,
    )


def timelines_html(timelines: Sequence[dict[str, Any]]) -> str:
    """The client's milestones of the first hung or failed requests, one line each."""
    if not timelines:
        return ""
    lines = []
    for item in timelines[:MAX_TIMELINES]:
        found = item.get("milestones")
        marks: dict[str, Any] = found if isinstance(found, dict) else {}
        steps = ", ".join("%s %.1f ms" % (name, float(us) / 1000.0) for name, us in marks.items() if us is not None)
        lines.append(
            "%s, client port %s, last: %s: %s"
            % (item.get("outcome", "?"), item.get("port", "?"), item.get("last", "?"), steps or "no milestone")
        )
    return "<p>Client timelines (ms from each request's start):</p><pre>%s</pre>" % _esc("\n".join(lines))


def forensics_html(
    forensics: dict[str, Any] | None, shown: str | None = None, timelines: Sequence[dict[str, Any]] = ()
) -> str:
    """`shown`: the record's stuck phrase, already on the page (its summary is not repeated)."""
    if not forensics:
        return timelines_html(timelines)
    parts = ['<div class="forensics"><h4>Forensics</h4>', timelines_html(timelines)]
    if forensics.get("summary") and forensics["summary"] != shown:
        parts.append("<p>%s</p>" % _esc(forensics["summary"]))
    if forensics.get("omitted"):
        parts.append("<p>%s</p>" % _esc(forensics["omitted"]))
    processes = [p for p in forensics.get("processes") or () if isinstance(p, dict)]
    parts.extend(_process(p) for p in processes[:MAX_PROCESSES])
    if len(processes) > MAX_PROCESSES:
        parts.append("<p>%d more processes: see the JSON.</p>" % (len(processes) - MAX_PROCESSES))
    if forensics.get("path"):
        parts.append("<p>full capture: <code>%s</code></p>" % _esc(forensics["path"]))
    parts.append("</div>")
    return "".join(parts)
