"""Publish tasks: persistent by default, with publisher confirms kept in flight together.

Three ways to publish, measured against each other in the benchmarks:

* ``confirms="pipelined"`` (default): up to ``window`` messages are unconfirmed at once; the
  broker's acks (often covering many messages with ``multiple=True``) come back while we
  keep publishing. This is pika's asynchronous ``SelectConnection`` (``helpers.confirms``).
* ``confirms="each"``: the tutorial-style ``BlockingChannel`` in confirm mode, which waits
  for the broker's answer to every message before sending the next.
* ``confirms="none"``: fire and forget; nothing tells you what the broker kept.

A message is *confirmed* once the broker has taken responsibility for it (for persistent
messages on durable queues: written to disk). Returned messages (``mandatory`` and no
queue to route to) are confirmed too, so they are reported apart.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .connection import connect
from .errors import BadInputError
from .settings import CONFIRM_MODES
from .tasks import Task
from .topology import QueueSpec, declare


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


def message_properties(task_id: str, persistent: bool, headers: dict | None = None):
    import pika
    return pika.BasicProperties(delivery_mode=2 if persistent else 1, message_id=task_id,
                                content_type="application/json", content_encoding="utf-8",
                                headers=headers)


def _as_pairs(tasks) -> list[tuple[str, bytes, dict | None]]:
    """Normalise tasks to ``(id, body, headers)``; headers are ``None`` unless given."""
    pairs = []
    for i, task in enumerate(tasks):
        if isinstance(task, Task):
            pairs.append((task.id, task.body(), None))
        elif isinstance(task, (bytes, str)):
            body = task.encode() if isinstance(task, str) else task
            pairs.append((f"m{i + 1:05d}", body, None))
        else:  # already (id, body) or (id, body, headers), e.g. another framework's message
            task_id, body, *rest = task
            pairs.append((task_id, body, rest[0] if rest else None))
    if not pairs:
        raise BadInputError("There are no tasks to publish.")
    return pairs


def publish(url: str, spec: QueueSpec, tasks, *, persistent: bool = True,
            confirms: str = "pipelined", window: int = 5000, mandatory: bool = False,
            timeout: float = 120, declare_queue: bool = True, retry_for: float = 0.0,
            name: str = "producer", on_blocked=None, on_published=None) -> PublishResult:
    """Publish ``tasks`` to ``spec``'s queue.

    ``tasks`` are ``Task``s, bodies, ``(id, body)`` pairs or ``(id, body, headers)`` triples
    (headers: AMQP message headers, e.g. to publish another framework's task messages).

    Parameters
    ----------
    confirms: ``pipelined`` (default), ``each`` or ``none``; see the module docstring.
    window: most unconfirmed messages in flight at once (pipelined mode). 5,000: with
        1,000, 10,000 persistent tasks took about 1.5x as long to reach the queue
        (``make bench``: the broker confirms after each fsync, and a full window waits).
    retry_for: with pipelined confirms, keep reconnecting for this many seconds after a
        lost connection and republish whatever was not confirmed (at-least-once publishing).
    on_blocked: with pipelined confirms, called with one sentence when the broker blocks
        publishing (a disk or memory alarm), and with None when it unblocks; after
        ``settings.BLOCKED_TIMEOUT_S`` blocked, publishing stops with that sentence.
    on_published: with ``confirms="each"`` or ``"none"``, called (no argument) after the last
        message went out and before the connection closes. Without confirms, closing at once
        can lose messages: on RabbitMQ 3.10.8, unconfirmed messages to a quorum queue were
        missing in 14 runs of 330 (under load) when the connection closed right after them
        (``benchmarks.publish_confirms`` waits here until the queue holds every message).
    """
    if confirms not in CONFIRM_MODES:
        raise BadInputError(f"confirms must be one of {', '.join(CONFIRM_MODES)} "
                            f"(got {confirms!r}).")
    from .confirms import publish_pipelined

    pairs = _as_pairs(tasks)
    result = PublishResult(queue=spec.name)
    if confirms != "pipelined":
        _publish_blocking(url, spec, pairs, persistent, confirms == "each", mandatory,
                          declare_queue, result, name, on_published)
        return result
    publish_pipelined(url, spec, pairs, result, persistent=persistent, window=window,
                      mandatory=mandatory, timeout=timeout, declare_queue=declare_queue,
                      retry_for=retry_for, name=name, on_blocked=on_blocked)
    return result


def _publish_blocking(url, spec, pairs, persistent, confirm, mandatory, declare_queue,
                      result: PublishResult, name, on_published=None) -> None:
    import pika.exceptions as pe

    conn = connect(url, name=name)
    try:
        channel = conn.channel()
        if declare_queue:
            declare(channel, spec)
        if confirm:
            channel.confirm_delivery()
        result.t_first = time.time()
        for task_id, body, headers in pairs:
            result.published.append(task_id)
            try:
                channel.basic_publish("", spec.name, body,
                                      message_properties(task_id, persistent, headers),
                                      mandatory=mandatory)
            except pe.UnroutableError:
                result.returned.add(task_id)
                result.confirmed.add(task_id)
                continue
            except pe.NackError:
                result.nacked.add(task_id)
                continue
            if confirm:
                result.confirmed.add(task_id)
        result.t_last = time.time()
        if on_published is not None:
            on_published()
    finally:
        if conn.is_open:
            conn.close()
