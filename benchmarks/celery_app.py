"""The Celery peer: one task that sleeps, configured for fair dispatch.

Settings a Celery user would pick for slow tasks: ``task_acks_late`` (ack after the work),
``worker_prefetch_multiplier = 1`` and one worker process per worker (``--pool prefork
--concurrency 1``), so each worker holds at most one unacknowledged task, like
``basic_qos(prefetch_count=1)``. No result backend. Gossip, mingle, heartbeat events and
remote control are switched off so the workers talk to the broker about tasks only.

Why not ``--pool solo``: with Celery 5.7 a solo worker that holds its one prefetched task
only reads the socket again on a timer tick, so the next task waits for the tick (makespan
about 3x the ideal here, and a stall with heartbeat events off). Prefork with one child
does not have that problem, so it is the fairer peer.

The broker URL and queue come from ``BENCH_AMQP_URL``, ``BENCH_QUEUE`` and
``BENCH_QUEUE_ARGS`` (JSON), set by ``benchmarks.bench``. The task writes one line per task
straight to file descriptor 1, ``done <task id> <start t> <end t>``, the same record the
tutorial peer prints.
"""
import json
import os
import time

from celery import Celery
from kombu import Exchange, Queue

QUEUE = os.environ.get("BENCH_QUEUE", "bench-celery")

app = Celery("bench", broker=os.environ.get("BENCH_AMQP_URL", "amqp://localhost//"))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    result_backend=None,
    worker_redirect_stdouts=False,
    worker_enable_remote_control=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_queues=[Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE, durable=True,
                       queue_arguments=json.loads(os.environ.get("BENCH_QUEUE_ARGS", "{}")))],
)


@app.task(name="bench.sleep")
def sleep_task(task_id: str, seconds: float) -> None:
    """Sleep ``seconds`` and report when the work started and ended."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    os.write(1, f"done {task_id} {start!r} {end!r}\n".encode())
