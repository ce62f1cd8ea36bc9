"""Publish tasks: persistent by default, with publisher confirms kept in flight together.

Three ways to publish, measured against each other in the benchmarks:

* ``confirms="pipelined"`` (default): up to ``window`` messages are unconfirmed at once; the
  broker's acks (often covering many messages with ``multiple=True``) come back while we
  keep publishing. This is pika's asynchronous ``SelectConnection`` (``helpers.publish.confirms``).
* ``confirms="each"``: the tutorial-style ``BlockingChannel`` in confirm mode, which waits
  for the broker's answer to every message before sending the next.
* ``confirms="none"``: fire and forget; nothing tells you what the broker kept.

A message is *confirmed* once the broker has taken responsibility for it (for persistent
messages on durable queues: written to disk). Returned messages (``mandatory`` and no
queue to route to) are confirmed too, so they are reported apart.
"""
from __future__ import annotations

import time

from helpers.core.connection import connect
from helpers.errors import BadInputError
from helpers.settings import CONFIRM_MODES
from helpers.core.tasks import Task
from helpers.core.topology import QueueSpec, declare
from helpers.publish.confirms import publish_pipelined
from helpers.publish.outcome import PublishResult, message_properties


def _as_pairs(tasks) -> list[tuple[str, bytes, dict | None, int | None]]:
    """Normalise tasks to ``(id, body, headers, priority)``; headers and priority are
    ``None`` unless given (a ``Task``'s priority)."""
    pairs = []
    for i, task in enumerate(tasks):
        if isinstance(task, Task):
            pairs.append((task.id, task.body(), None, task.priority))
        elif isinstance(task, (bytes, str)):
            body = task.encode() if isinstance(task, str) else task
            pairs.append((f"m{i + 1:05d}", body, None, None))
        else:  # already (id, body) or (id, body, headers), e.g. another framework's message
            task_id, body, *rest = task
            pairs.append((task_id, body, rest[0] if rest else None, None))
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
        for task_id, body, headers, priority in pairs:
            result.published.append(task_id)
            try:
                channel.basic_publish("", spec.name, body,
                                      message_properties(task_id, persistent, headers, priority),
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
