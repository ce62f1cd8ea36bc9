"""What publishing produced: ``PublishResult``, and the pieces every way of publishing shares.

``message_properties`` (persistent or transient, the task id), ``watch_blocked`` (a
resource alarm blocks the publisher: recorded, and said in one sentence). Used by
``helpers.publish.producer`` (blocking) and ``helpers.publish.confirms`` (pipelined).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class PublishResult:
    """Which task ids the broker confirmed, refused (nack) or returned, and timings."""

    published: list[str] = field(default_factory=list)
    confirmed: set[str] = field(default_factory=set)
    nacked: set[str] = field(default_factory=set)
    returned: set[str] = field(default_factory=set)
    t_first: float | None = None
    t_last: float | None = None
    reconnects: int = 0
    error: str | None = None
    #: ids the broker refused outright: bodies above its ``max_message_size``.
    refused: set[str] = field(default_factory=set)
    #: the queue published to (named in ``explain()``).
    queue: str | None = None
    #: ``(wall-clock time, "host:port")`` of each connection opened (pipelined mode): which
    #: broker of several took the messages, and when the producer moved to another.
    connections: list[tuple[float, str]] = field(default_factory=list)
    #: each time the broker blocked publishing (a resource alarm): ``{"t", "until", "reason"}``
    blocked: list[dict] = field(default_factory=list)

    @property
    def blocked_s(self) -> float:
        """Seconds the broker kept this publisher blocked (until now, if it still does)."""
        return sum((b["until"] or time.time()) - b["t"] for b in self.blocked)

    @property
    def unconfirmed(self) -> set[str]:
        """Published ids the broker never answered for (connection lost, timeout)."""
        return set(self.published) - self.confirmed - self.nacked - self.refused

    def explain(self) -> str | None:
        """One sentence on what did not go as asked (None when every message was taken)."""
        if self.error:
            return self.error
        if self.returned:
            return (f"{len(self.returned)} of {len(set(self.published))} messages were "
                    f"returned unroutable (mandatory): no queue named '{self.queue}' exists "
                    "to route them to; declare it first (declare_queue=True), then publish "
                    "them again.")
        if self.nacked:
            return (f"The broker refused (nack) {len(self.nacked)} messages; publish them "
                    "again later.")
        return None

    @property
    def elapsed_s(self) -> float:
        return (self.t_last or 0) - (self.t_first or 0)

    @property
    def rate(self) -> float:
        """Messages per second, first publish to last confirm."""
        return len(self.published) / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    def summary(self) -> dict:
        return {"published": len(set(self.published)), "confirmed": len(self.confirmed),
                "nacked": len(self.nacked), "returned": len(self.returned),
                "unconfirmed": len(self.unconfirmed), "elapsed_s": round(self.elapsed_s, 4),
                "per_s": round(self.rate, 1), "reconnects": self.reconnects,
                "blocked_s": round(self.blocked_s, 3)}


def blocked_sentence(reason: str) -> str:
    """What a publisher says when the broker blocks it (``connection.blocked``)."""
    return (f"The broker is blocking publishers ({reason}: a resource alarm), so messages "
            "wait until it clears: free disk space or memory on the broker's host, or raise "
            "its limits (rabbitmqctl status lists the alarm).")


def watch_blocked(conn, result: PublishResult, on_blocked=None) -> None:
    """Record in ``result`` when the broker blocks ``conn`` and unblocks it; tell ``on_blocked``.

    ``on_blocked(sentence)`` is called when publishing is blocked, ``on_blocked(None)`` when
    it may go on. Without this, a publisher waiting for a confirm just hangs.
    """
    def blocked(_conn, frame) -> None:
        result.blocked.append({"t": time.time(), "until": None, "reason": frame.method.reason})
        if on_blocked is not None:
            on_blocked(blocked_sentence(frame.method.reason))

    def unblocked(_conn, _frame) -> None:
        if result.blocked and result.blocked[-1]["until"] is None:
            result.blocked[-1]["until"] = time.time()
        if on_blocked is not None:
            on_blocked(None)

    conn.add_on_connection_blocked_callback(blocked)
    conn.add_on_connection_unblocked_callback(unblocked)


def message_properties(task_id: str, persistent: bool, headers: dict | None = None,
                       priority: int | None = None):
    import pika
    return pika.BasicProperties(delivery_mode=2 if persistent else 1, message_id=task_id,
                                content_type="application/json", content_encoding="utf-8",
                                headers=headers, priority=priority)
