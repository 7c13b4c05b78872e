"""Per-request timelines of the requests that hang or fail: how far each one got.

A hang says a request got no complete response by its deadline; its timeline says where it
stopped, which is what tells the hang mechanisms apart: a request sent that got no byte back
(its task was lost before any worker saw the socket) is not a full response whose FIN never
came (the parent still holds the socket). Milestones, in order:

    connect_start, connected, request_written, first_byte, response_complete, fin | rst

An engine keeps the monotonic times it already reads in the request's own state (a short list
of (milestone, time) pairs; no allocation beyond that, nothing for a request that succeeds) and
hands the list to `TimelineBook.add` only when the request hangs or fails. The book keeps the
first `limit` timelines in full and counts every hung request by the last milestone it reached.
"""

from __future__ import annotations

from typing import Any

CONNECT_START = "connect_start"
CONNECTED = "connected"
REQUEST_WRITTEN = "request_written"
FIRST_BYTE = "first_byte"
RESPONSE_COMPLETE = "response_complete"
FIN = "fin"
RST = "rst"
MILESTONES = (CONNECT_START, CONNECTED, REQUEST_WRITTEN, FIRST_BYTE, RESPONSE_COMPLETE, FIN, RST)
DEFAULT_LIMIT = 20

# The last milestone a hung request reached, as the table's note says it.
PHRASES = {
    "": "not started",
    CONNECT_START: "connect not completed",
    CONNECTED: "connected, request not sent",
    REQUEST_WRITTEN: "request sent, no byte back",
    FIRST_BYTE: "partial response",
    RESPONSE_COMPLETE: "full response, no FIN",
    FIN: "FIN seen",
    RST: "reset seen",
}


class TimelineBook:
    """The first `limit` timelines of one client process, and hung requests by last milestone."""

    __slots__ = ("hang_milestones", "limit", "seen", "timelines")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = max(0, int(limit))
        self.timelines: list[dict[str, Any]] = []
        self.hang_milestones: dict[str, int] = {}
        self.seen = 0  # hung or failed requests offered, kept or not

    def add(self, outcome: str, start: float, marks: list[tuple[str, float]], port: int | None, hung: bool) -> None:
        """One request that hung (`hung`) or failed with `outcome`, started at monotonic `start`."""
        self.seen += 1
        last = marks[-1][0] if marks else ""
        if hung:
            phrase = PHRASES.get(last, last)
            self.hang_milestones[phrase] = self.hang_milestones.get(phrase, 0) + 1
        if len(self.timelines) < self.limit:
            self.timelines.append(
                {
                    "outcome": outcome,
                    "port": port,
                    "last": PHRASES.get(last, last),
                    "milestones": {name: round((at - start) * 1_000_000) for name, at in marks},
                }
            )


def merge_books(parts: list[tuple[list[dict[str, Any]], dict[str, int]]], limit: int) -> tuple[list[Any], dict]:
    """(timelines, hang_milestones) of several client processes: the first `limit` timelines in
    process order, the counts added up."""
    timelines: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for items, milestones in parts:
        timelines.extend(items[: max(0, limit - len(timelines))])
        for phrase, count in milestones.items():
            counts[phrase] = counts.get(phrase, 0) + count
    return timelines, counts
