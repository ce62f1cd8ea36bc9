"""The Dramatiq broker and actor the Dramatiq workers of a run load, timed from inside.

Run by ``dramatiq helpers.frameworks.dramatiq_worker --processes 1 --threads 1``
(``FrameworkConfig.command``); queue and worker name come from the environment, and the
prefetch from Dramatiq's own ``dramatiq_queue_prefetch`` variable when a run sets it
(unset: 2 x threads). Dramatiq acks after the task, always; its default middleware
(retries, time limit, ...) is left as it is.

One change to what Dramatiq declares: the work queue is declared with the arguments the
run declared it with (a quorum queue by default, as in the tutorial), where Dramatiq would
declare a classic queue whose own arguments dead-letter to ``<queue>.XQ``: the broker
refuses to declare one queue twice with different arguments (406). Its delay queue
(``.DQ``) and dead-letter queue (``.XQ``) are declared as Dramatiq declares them.

Timing, without changing what Dramatiq does: a middleware writes the project's events
(``helpers.frameworks.emit``): ``ready`` (the consumer thread of the work queue is up),
``started`` and ``finished`` (``before_``/``after_process_message``), ``acked``
(``after_ack``); ``delivered``, with the broker's ``redelivered`` flag, comes from the
consumer, as each message arrives.
"""
from __future__ import annotations

import json
import os
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.middleware import Middleware

from helpers.frameworks.emit import delivery_key, emit

QUEUE = os.environ.get("HELPERS_QUEUE_NAME", "dramatiq-tasks")
ARGUMENTS = json.loads(os.environ.get("HELPERS_QUEUE_ARGS", "{}"))
CHOSEN = json.loads(os.environ.get("HELPERS_FRAMEWORK_SETTINGS", "{}"))


def _key(queue_name: str, tag) -> str:
    return delivery_key(os.getpid(), queue_name, tag)


class _Consumer(_RabbitmqConsumer):
    """Dramatiq's consumer, reporting each message as it arrives."""

    def __next__(self):
        message = super().__next__()
        if message is not None:
            emit("delivered", delivery=_key(self.queue_name, message._tag),
                 task=message.message_id, redelivered=bool(message.redelivered))
        return message


class _Broker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker; the work queue declared as the run declared it."""

    @property
    def consumer_class(self):
        return _Consumer

    def _declare_queue(self, queue_name):
        return self.channel.queue_declare(queue=queue_name, durable=True, arguments=ARGUMENTS)


class Events(Middleware):
    """The project's events, from Dramatiq's middleware hooks."""

    def after_consumer_thread_boot(self, broker, thread):
        if thread.queue_name == QUEUE:
            emit("ready", framework="dramatiq", queue=QUEUE, prefetch=thread.prefetch,
                 settings=CHOSEN)

    def before_process_message(self, broker, message):
        emit("started", delivery=_key(message.queue_name, message._tag),
             task=message.message_id)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        key = _key(message.queue_name, message._tag)
        if exception is None:
            emit("finished", delivery=key, task=message.message_id)
        else:
            emit("failed", delivery=key, task=message.message_id, reason=repr(exception))

    def after_ack(self, broker, message):
        emit("acked", delivery=_key(message.queue_name, message._tag), task=message.message_id)


broker = _Broker(url=os.environ.get("AMQP_URL", "amqp://localhost"))
broker.add_middleware(Events())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, actor_name="sleep")
def sleep(task_id: str, seconds: float) -> None:
    """The work: ``seconds`` of sleep, as the project's workers do for a ``sleep`` task."""
    time.sleep(seconds)
