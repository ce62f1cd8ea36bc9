"""What a worker does with a task that fails: ``--on-failure reject|requeue|retry``, and
``reject_for_good`` (to the dead-letter queue: by the broker, or by the worker where the
broker has no way to dead-letter).

A task of kind ``fail`` (``helpers.settings.FAIL_KIND``) works for its duration and then
fails, every time: a bug, or a service it needs that is down. Three answers:

* ``reject``: ``basic_reject(requeue=False)``: to the dead-letter queue at once, for good;
* ``requeue``: ``basic_nack(requeue=True)``: back at the head of the queue at once, and
  straight to a worker again: the *hot loop*, as fast as the workers can fail it;
* ``retry``: publish it to the retry queue of its attempt (``QueueSpec.retry_queue``), whose
  TTL dead-letters it back to the work queue after that queue's delay, and ack the
  original; after the last delay, to ``<queue>.parked``, where a person looks at it. The
  attempt travels in the message's ``x-retries`` header.

The publish and the ack leave on the same channel, publish first: a worker that dies
between them leaves a duplicate (the task retried twice), never a lost task. A failing task
is short (it fails fast), so it is settled in pika's I/O thread, where the channel lives.
"""
from __future__ import annotations

from helpers.core import tasks as task_bodies
from helpers.core.topology import QueueSpec

#: The header that counts a task's failed attempts (set by the worker that retries it).
ATTEMPT_HEADER = "x-retries"


def settle(channel, spec, how: str, method, props, body: bytes) -> dict:
    """Settle a failed delivery ``how`` (``reject``, ``requeue``, ``retry``); say what was done."""
    if how == "requeue":
        channel.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
        return {"then": "requeued"}
    if how == "reject" or not spec.retry_delays:
        return {"then": "rejected", "by": reject_for_good(channel, spec, method, props, body)}
    import pika

    failed = int((props.headers or {}).get(ATTEMPT_HEADER, 0))
    last = failed >= len(spec.retry_delays)
    target = spec.parked_queue if last else spec.retry_queue(failed)
    headers = {**(props.headers or {}), ATTEMPT_HEADER: failed + 1}
    copy = pika.BasicProperties(delivery_mode=2, message_id=props.message_id, headers=headers,
                                content_type=props.content_type)
    channel.basic_publish("", target, body, copy)
    channel.basic_ack(delivery_tag=method.delivery_tag)
    return {"then": "parked" if last else "retry", "attempt": failed + 1, "queue": target,
            **({} if last else {"delay_s": spec.retry_delays[failed]})}


def fail(worker, channel, method, props, body: bytes, delivery: str, task_id,
         seconds: float) -> None:
    """Run a failing task in the I/O thread: work, fail, settle it, report ``failed``."""
    worker.emit("started", delivery=delivery, task=task_id)
    task_bodies.work(seconds / worker.speed)
    done = settle(channel, worker.spec, worker.config.on_failure, method, props, body)
    worker.emit("failed", delivery=delivery, task=task_id, reason="the task failed", **done)


def reject_for_good(channel, spec: QueueSpec, method, props, body: bytes) -> str:
    """Reject a message for good: the broker dead-letters it (a policy, or the queue's own
    argument), or, where neither is set, publish it to ``<queue>.dead`` ourselves and ack
    it. Returns who did it."""
    if spec.dead_letter_by != "worker" or not spec.dead_letter:
        channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
        return "broker" if spec.dead_letter else "nobody (dropped)"
    import pika

    headers = dict(props.headers or {})
    # What the broker would have added, and who did it instead.
    headers["x-death"] = [{"reason": "rejected", "queue": spec.name, "count": 1,
                           "exchange": "", "routing-keys": [spec.name]}]
    headers["x-dead-lettered-by"] = "worker"
    copy = pika.BasicProperties(delivery_mode=props.delivery_mode or 2,
                                message_id=props.message_id, headers=headers,
                                content_type=props.content_type)
    channel.basic_publish("", spec.dead_letter_queue, body, copy)
    channel.basic_ack(delivery_tag=method.delivery_tag)
    return "worker"
