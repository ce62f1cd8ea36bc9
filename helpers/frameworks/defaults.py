"""Each framework's setting for each concept of the series, with its default, read from the
installed Celery and Dramatiq (never copied from their documentation).

``CONCEPTS`` lists the concepts of notebooks 01-08 in order; ``celery()`` and ``dramatiq()``
return, per concept, the setting that governs it and its default in the installed version
(``celery.app.defaults``, ``celery.app.task.Task``, ``dramatiq.worker``, its middleware and
its command line). ``helpers.lessons.frameworks.mapping_table`` puts them side by side with
what a run measured. Importing this module imports neither framework; each function does.
"""
from __future__ import annotations

import inspect

#: (key, the concept, the notebook that teaches it, how the project's pika workers do it)
CONCEPTS = [
    ("round_robin", "round robin", "01", "K consumers on one queue"),
    ("acks", "acknowledgements", "02", "basic_ack after the work (manual acks)"),
    ("worker_lost", "worker killed mid-task", "02", "unacked: the broker requeues it"),
    ("durability", "durability, persistence", "03",
     "durable (quorum) queue, delivery_mode=2"),
    ("prefetch", "prefetch, fair dispatch", "04-05", "basic_qos(prefetch_count=1)"),
    ("heartbeats", "heartbeats, consumer timeout", "06",
     "heartbeat-safe thread mode; the broker's consumer_timeout"),
    ("poison", "poison, delivery limit, dead-letter", "06",
     "x-delivery-limit + a dead-letter policy"),
    ("retries", "retries with delay", "08", "a delay queue with a TTL"),
    ("priorities", "priorities", "08", "x-max-priority + message priority"),
    ("shutdown", "graceful shutdown", "08", "stop consuming, finish, ack, close"),
]


def _default(function, name: str):
    return inspect.signature(function).parameters[name].default


def _unset(shown: str, max_priority) -> str:
    """A priority default as read, saying what ``None`` means there: no priority queue."""
    return f"{shown} (no priority queue)" if max_priority is None else shown


def celery() -> dict:
    """Concept key -> ``(setting, default)`` in the installed Celery."""
    from celery.app.defaults import DEFAULTS as D
    from celery.app.task import Task

    return {
        "round_robin": ("workers -Q <queue>, worker_concurrency",
                        f"{D['worker_concurrency']} (= the CPUs)"),
        "acks": ("task_acks_late", f"{D['task_acks_late']} (acks as the task starts)"),
        "worker_lost": ("task_reject_on_worker_lost (with acks_late)",
                        f"{D['task_reject_on_worker_lost']} (off: acked, WorkerLostError)"),
        "durability": ("task_default_delivery_mode, task_default_queue_type",
                       f"{D['task_default_delivery_mode']} (persistent), "
                       f"{D['task_default_queue_type']} queue (durable)"),
        "prefetch": ("worker_prefetch_multiplier (x concurrency)",
                     str(D["worker_prefetch_multiplier"])),
        "heartbeats": ("broker_heartbeat", f"{D['broker_heartbeat']} s"),
        "poison": ("none: a quorum queue's x-delivery-limit",
                   "no dead-letter queue of its own"),
        "retries": ("Task.max_retries, default_retry_delay (self.retry, autoretry_for)",
                    f"{Task.max_retries} retries, {Task.default_retry_delay} s"),
        "priorities": ("task_queue_max_priority, task_default_priority",
                       _unset(f"{D['task_queue_max_priority']}, {D['task_default_priority']}",
                              D["task_queue_max_priority"])),
        "shutdown": ("SIGTERM = warm shutdown; worker_soft_shutdown_timeout",
                     f"{D['worker_soft_shutdown_timeout']:g} s"),
    }


def dramatiq() -> dict:
    """Concept key -> ``(setting, default)`` in the installed Dramatiq."""
    import dramatiq.cli as cli
    from dramatiq.brokers import rabbitmq
    from dramatiq.middleware import retries, time_limit
    from dramatiq.worker import Worker

    threads = _default(Worker.__init__, "worker_threads")
    parser = cli.make_argument_parser()
    shutdown_ms = parser.get_default("worker_shutdown_timeout")
    return {
        "round_robin": ("--processes, --threads",
                        f"{parser.get_default('processes')} (= the CPUs) x {threads}"),
        "acks": ("none: always after the task", "after the task"),
        "worker_lost": ("none: its connection closes", "the broker requeues it"),
        "durability": ("none: always durable, delivery_mode=2", "durable classic queue"),
        "prefetch": ("dramatiq_queue_prefetch (environment)",
                     f"0 = 2 x threads ({2 * threads} at {threads} threads)"),
        "heartbeats": ("pika's heartbeat; TimeLimit(time_limit=ms)",
                       "the broker's; " f"{_default(time_limit.TimeLimit.__init__, 'time_limit'):g} ms"),
        "poison": ("Retries(max_retries), then <queue>.XQ",
                   f"{_default(retries.Retries.__init__, 'max_retries')} retries, dead "
                   f"letters kept {rabbitmq.DEAD_MESSAGE_TTL // 86_400_000} days"),
        "retries": ("Retries(min_backoff, max_backoff), via <queue>.DQ",
                    f"{retries.DEFAULT_MIN_BACKOFF} ms doubling, at most "
                    f"{retries.DEFAULT_MAX_BACKOFF // 86_400_000} days"),
        "priorities": ("RabbitmqBroker(max_priority), broker_priority",
                       _unset(str(_default(rabbitmq.RabbitmqBroker.__init__, "max_priority")),
                              _default(rabbitmq.RabbitmqBroker.__init__, "max_priority"))),
        "shutdown": ("SIGTERM; --worker-shutdown-timeout", f"{shutdown_ms} ms"),
    }


def versions() -> dict:
    """The installed versions the defaults were read from."""
    import celery as c
    import dramatiq as d
    import kombu as k

    return {"celery": c.__version__, "kombu": k.__version__, "dramatiq": d.__version__}
