"""The Celery app the Celery workers of a run load: one task that sleeps, timed from inside.

Run by ``celery -A helpers.frameworks.celery_worker worker ...`` (``FrameworkConfig.command``);
the queue, the worker's name and the settings a run chose come from the environment
(``FrameworkConfig.environment``). Only the settings a run sets are set: the rest are
Celery's defaults (acks as the task starts, ``worker_prefetch_multiplier`` 4).

What the worker declares on the broker: its task queue, durable, with the arguments the run
declared it with (a quorum queue by default, as in the tutorial), through the default
exchange, and nothing else: remote control is off here and gossip, mingle and heartbeat
events on the command line, so no pidbox or ``celeryev`` queue is declared. (Before Celery
5.7 those are transient non-exclusive queues, which a RabbitMQ that denies the deprecated
``transient_nonexcl_queues``, 4.3.0's default, refuses with 541 INTERNAL_ERROR; Celery 5.7
declares them exclusive, celery#10287, kombu#2531. ``FrameworkConfig(remote_control=True)``
turns them back on.)

Timing, without changing what Celery does: signal receivers and one wrapper write the
project's events (``helpers.frameworks.emit``): ``ready`` (``worker_ready``, the consumer
is up), ``delivered`` (``task_received``, in the main process, with the ``redelivered``
flag), ``started`` and ``finished`` (``task_prerun`` and ``task_postrun``, in the pool
child that runs the task), ``acked`` (after ``Request.acknowledge``, in the main process) and ``requeued`` or
``rejected`` (after ``Request.reject``).
"""
from __future__ import annotations

import json
import os
import time

from celery import Celery, signals
from celery.worker.request import Request
from kombu import Queue

from helpers.frameworks.emit import delivery_key, emit

QUEUE = os.environ.get("HELPERS_QUEUE_NAME", "celery-tasks")
#: The run's choices (``FrameworkConfig.settings``): only these differ from Celery's defaults.
CHOSEN = json.loads(os.environ.get("HELPERS_FRAMEWORK_SETTINGS", "{}"))

app = Celery("helpers", broker=os.environ.get("AMQP_URL", "amqp://localhost//"))
app.conf.update(
    task_default_queue=QUEUE,
    task_queues=[Queue(QUEUE, routing_key=QUEUE, durable=True,
                       queue_arguments=json.loads(os.environ.get("HELPERS_QUEUE_ARGS", "{}")))],
    task_ignore_result=True,
    worker_enable_remote_control=False,  # no pidbox queue (see the module docstring)
    worker_redirect_stdouts=False,       # fd 1 carries the events
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
app.conf.update(CHOSEN)  # last: a run's choice wins (remote control too, see config.py)


@app.task(name="helpers.sleep")
def sleep_task(task_id: str, seconds: float) -> None:
    """The work: ``seconds`` of sleep, as the project's workers do for a ``sleep`` task."""
    time.sleep(seconds)


def _key(task_id: str, delivery_info) -> str:
    # Celery hands the pool child no delivery tag: a task's id and redelivered flag tell its
    # deliveries to one worker apart (a task comes back to the same worker at most once here).
    return delivery_key(task_id, bool((delivery_info or {}).get("redelivered")))


@signals.worker_ready.connect
def _ready(sender=None, **_):
    emit("ready", framework="celery", queue=QUEUE, prefetch=sender.qos.value if
         getattr(sender, "qos", None) else None, settings=CHOSEN)


@signals.task_received.connect
def _received(request=None, **_):
    info = request.delivery_info or {}
    emit("delivered", delivery=_key(request.id, info), task=request.id,
         redelivered=bool(info.get("redelivered")))


@signals.task_prerun.connect
def _started(task_id=None, task=None, **_):
    emit("started", delivery=_key(task_id, task.request.delivery_info), task=task_id)


@signals.task_postrun.connect
def _finished(task_id=None, task=None, **_):
    emit("finished", delivery=_key(task_id, task.request.delivery_info), task=task_id)


_acknowledge = Request.acknowledge


def _acknowledge_and_report(self) -> None:
    first = not self.acknowledged
    _acknowledge(self)
    if first:
        emit("acked", delivery=_key(self.id, self.delivery_info), task=self.id)


_reject = Request.reject


def _reject_and_report(self, requeue: bool = False) -> None:
    first = not self.acknowledged
    _reject(self, requeue)
    if first:  # not an outcome of its own: the broker delivers a requeued task again
        emit("requeued" if requeue else "rejected", delivery=_key(self.id, self.delivery_info),
             task=self.id, by="celery")


Request.acknowledge = _acknowledge_and_report
Request.reject = _reject_and_report
