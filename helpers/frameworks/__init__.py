"""The same work queue run by Celery or Dramatiq workers, measured like the project's own.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    config: ``FrameworkConfig``, a framework and the settings a run gives it (prefetch, acks)
    emit: the event lines a framework's worker writes (the project's format), from inside it
    celery_worker: the Celery app its workers run (``celery -A helpers.frameworks.celery_worker``)
    dramatiq_worker: the Dramatiq broker and actor its workers run
    messages: tasks as Celery's or Dramatiq's own messages, for the project's publisher
    pool: ``FrameworkPool``, Celery or Dramatiq worker processes behind ``WorkerPool``'s interface
    defaults: each framework's settings for the series' concepts, read from the installed source

Celery and Dramatiq are an optional extra (``pip install -e ".[frameworks]"``);
``available(name)`` says whether one is installed, and nothing here imports them before a
run asks for them.
"""
from __future__ import annotations

import importlib.util

#: What ``run --framework`` accepts: the project's own pika workers, or one of the two.
FRAMEWORKS = ("pika", "celery", "dramatiq")
#: The sentence for a notebook or a test when the extra is missing.
INSTALL_HINT = 'pip install -e ".[frameworks]"'


def available(name: str) -> bool:
    """True when framework ``name`` (``pika``, ``celery``, ``dramatiq``) is installed."""
    return importlib.util.find_spec(name) is not None


def from_run_options(name: str, prefetch: int, ack: str, pika_only: bool = False):
    """``run --framework``'s value: None for the project's pika workers, else a
    ``FrameworkConfig`` (``--ack manual``, the default, is Celery's ``task_acks_late``)."""
    from helpers.errors import BadInputError
    from helpers.frameworks.config import FrameworkConfig

    if name == "pika":
        return None
    if not available(name):
        raise BadInputError(f"{name} is not installed here: {INSTALL_HINT} installs Celery "
                            "and Dramatiq.")
    if pika_only:
        raise BadInputError("--reserve, --mode and --heartbeat are the pika workers' settings: "
                            "leave them out with --framework.")
    if name == "dramatiq" and ack != "manual":
        raise BadInputError("Dramatiq always acks after the task: leave --ack out.")
    late = (ack == "manual") if name == "celery" else None
    return FrameworkConfig(name, prefetch=prefetch, acks_late=late)
