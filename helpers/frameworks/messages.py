"""Tasks as Celery's or Dramatiq's own messages, built by the framework, for the project's
publisher (``helpers.publish.producer`` takes ``(id, body, headers)`` triples).

Publishing them with the project's pipelined publisher (persistent, confirmed) rather than
with ``delay()`` or ``send()`` keeps the first publish, and so the makespan, measured the
same way for every kind of worker. Used by ``FrameworkPool.messages`` and by the benchmark's
Celery peer (``benchmarks.peers``).
"""
from __future__ import annotations

import json
import time


def celery(tasks, task_name: str) -> list[tuple[str, bytes, dict]]:
    """``tasks`` as Celery task messages (protocol 2) calling ``task_name(id, seconds)``."""
    from celery import Celery

    amqp = Celery("messages", set_as_current=False).amqp
    out = []
    for task in tasks:
        message = amqp.as_task_v2(task.id, task_name, args=(task.id, task.duration),
                                  ignore_result=True)
        out.append((task.id, json.dumps(message.body).encode(), message.headers))
    return out


def dramatiq(tasks, queue: str, actor_name: str) -> list[tuple[str, bytes, None]]:
    """``tasks`` as Dramatiq messages for ``actor_name(id, seconds)`` on ``queue``."""
    from dramatiq.message import Message

    now_ms = int(time.time() * 1000)
    return [(t.id, Message(queue_name=queue, actor_name=actor_name, args=(t.id, t.duration),
                           kwargs={}, options={}, message_id=t.id,
                           message_timestamp=now_ms).encode(), None) for t in tasks]
