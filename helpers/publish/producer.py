"""Publish tasks: persistent by default, with publisher confirms kept in flight together.

Three ways to publish (``PublishOptions.confirms``), measured against each other in the
benchmarks:

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
from helpers.core.tasks import Task
from helpers.core.topology import QueueSpec, declare
from helpers.publish.confirms import publish_pipelined
from helpers.publish.options import PublishOptions
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


def publish(url: str, spec: QueueSpec, tasks,
            options: PublishOptions = PublishOptions()) -> PublishResult:
    """Publish ``tasks`` to ``spec``'s queue, as ``options`` say (``PublishOptions``).

    ``tasks`` are ``Task``s, bodies, ``(id, body)`` pairs or ``(id, body, headers)`` triples
    (headers: AMQP message headers, e.g. to publish another framework's task messages).
    ``options.confirms`` picks one of the three ways in the module docstring; with pipelined
    confirms, ``options.retry_for`` republishes after a lost connection, and after
    ``settings.BLOCKED_TIMEOUT_S`` blocked by an alarm, publishing stops with a sentence.
    """
    pairs = _as_pairs(tasks)
    result = PublishResult(queue=spec.name)
    if options.confirms != "pipelined":
        _publish_blocking(url, spec, pairs, options, result)
        return result
    publish_pipelined(url, spec, pairs, result, options)
    return result


def _publish_blocking(url: str, spec: QueueSpec, pairs: list, options: PublishOptions,
                      result: PublishResult) -> None:
    import pika.exceptions as pe

    confirm = options.confirms == "each"
    conn = connect(url, name=options.name)
    try:
        channel = conn.channel()
        if options.declare_queue:
            declare(channel, spec)
        if confirm:
            channel.confirm_delivery()
        result.t_first = time.time()
        for task_id, body, headers, priority in pairs:
            result.published.append(task_id)
            try:
                channel.basic_publish("", spec.name, body,
                                      message_properties(task_id, options.persistent, headers,
                                                         priority),
                                      mandatory=options.mandatory)
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
        if options.on_published is not None:
            options.on_published()
    finally:
        if conn.is_open:
            conn.close()
