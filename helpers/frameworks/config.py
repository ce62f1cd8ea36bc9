"""``FrameworkConfig``: which framework runs the workers, and the settings a run gives it.

Each setting is None unless a run sets it, and None leaves the framework's own default in
place, so "Celery defaults" is ``FrameworkConfig("celery")`` and nothing else::

    FrameworkConfig("celery")                                     # acks early, prefetch 4
    FrameworkConfig("celery", prefetch=1, acks_late=True, reject_on_worker_lost=True)
    FrameworkConfig("dramatiq", prefetch=1)                       # dramatiq_queue_prefetch=1

Every worker runs one task at a time (Celery: ``--pool prefork --concurrency 1``;
Dramatiq: ``--processes 1 --threads 1``), like one ``python -m helpers.worker``, so K
workers of any kind are K tasks at once and the figures compare like with like.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass

from helpers.checks import check_prefetch
from helpers.core.topology import QueueSpec
from helpers.errors import BadInputError

NAMES = ("celery", "dramatiq")
#: Tasks at once per worker: Celery's ``--concurrency``, Dramatiq's ``--threads``.
CONCURRENCY = 1
#: Celery's ``worker_prefetch_multiplier`` default (``celery.app.defaults``; checked
#: against the installed Celery by ``helpers.frameworks.defaults`` and its test).
CELERY_MULTIPLIER = 4
#: Dramatiq's prefetch when ``dramatiq_queue_prefetch`` is 0 or unset: 2 x threads
#: (``dramatiq.worker.Worker``); the most ``basic_qos`` takes is 65535.
DRAMATIQ_PER_THREAD = 2
MAX_PREFETCH = 65535


@dataclass(frozen=True)
class FrameworkConfig:
    """A framework (``celery`` or ``dramatiq``) and the settings its workers run with."""

    name: str
    #: the prefetch the run asks for (``run --prefetch``; 0 = no limit); None: the default.
    #: Celery: ``worker_prefetch_multiplier`` (x concurrency 1); Dramatiq:
    #: ``dramatiq_queue_prefetch`` (its own 0 means 2 x threads, so 0 here asks 65535).
    prefetch: int | None = None
    #: Celery's ``task_acks_late`` (None: Celery's default, False: ack as the task starts)
    acks_late: bool | None = None
    #: Celery's ``task_reject_on_worker_lost`` (None: its default, off)
    reject_on_worker_lost: bool | None = None
    #: Celery's remote control, mingle and gossip, on as Celery ships them (its pidbox queue
    #: declared); False (the runs here): off, so the worker declares its task queue only
    remote_control: bool = False

    def __post_init__(self):
        if self.name not in NAMES:
            raise BadInputError(f"framework must be one of {', '.join(NAMES)} "
                                f"(got {self.name!r}).")
        if self.prefetch is not None:
            check_prefetch(self.prefetch)
        if self.name != "celery" and (self.acks_late is not None or self.remote_control
                                      or self.reject_on_worker_lost is not None):
            raise BadInputError("acks_late and reject_on_worker_lost are Celery's settings; "
                                "Dramatiq always acks after the task.")

    @property
    def effective_prefetch(self) -> int:
        """The ``prefetch_count`` the worker's consumer asks the broker for (0 = no limit)."""
        if self.name == "celery":
            multiplier = CELERY_MULTIPLIER if self.prefetch is None else self.prefetch
            return multiplier * CONCURRENCY
        if self.prefetch is None:
            return DRAMATIQ_PER_THREAD * CONCURRENCY
        return self.prefetch or MAX_PREFETCH

    def settings(self) -> dict:
        """The framework's own settings this config sets (the rest stay its defaults)."""
        if self.name == "celery":
            chosen = {"worker_prefetch_multiplier": self.prefetch,
                      "task_acks_late": self.acks_late,
                      "task_reject_on_worker_lost": self.reject_on_worker_lost,
                      "worker_enable_remote_control": self.remote_control or None}
        else:
            chosen = {"dramatiq_queue_prefetch": None if self.prefetch is None
                      else self.prefetch or MAX_PREFETCH}
        return {key: value for key, value in chosen.items() if value is not None}

    @property
    def label(self) -> str:
        """``Celery defaults``, ``Dramatiq dramatiq_queue_prefetch=1``, ..."""
        chosen = self.settings()
        title = self.name.capitalize()
        if not chosen:
            return f"{title} defaults"
        return f"{title} " + ", ".join(f"{key}={value}" for key, value in chosen.items())

    def command(self, spec: QueueSpec, name: str) -> list[str]:
        """The command line of one worker of this framework consuming ``spec``'s queue."""
        if self.name == "celery":
            # No gossip, mingle or heartbeat events, and remote control off (in the app):
            # the worker declares its task queue and nothing else (see celery_worker).
            quiet = [] if self.remote_control else ["--without-gossip", "--without-mingle",
                                                    "--without-heartbeat"]
            return [sys.executable, "-m", "celery", "-A", "helpers.frameworks.celery_worker",
                    "--quiet", "worker", "--pool", "prefork", "--concurrency",
                    str(CONCURRENCY), "-Q", spec.name, "-n", f"{name}@helpers", *quiet,
                    "--loglevel", "WARNING"]
        return [sys.executable, "-m", "dramatiq", "helpers.frameworks.dramatiq_worker",
                "--processes", "1", "--threads", str(CONCURRENCY), "--queues", spec.name]

    def environment(self, spec: QueueSpec, name: str) -> dict:
        """Variables a worker reads: its name, its queue, the settings this config sets."""
        work_queue = spec.declarations()[-1][1]  # the work queue exactly as it is declared
        env = {"HELPERS_WORKER_NAME": name, "HELPERS_QUEUE_NAME": spec.name,
               "HELPERS_QUEUE_ARGS": json.dumps(work_queue["arguments"]),
               "HELPERS_FRAMEWORK_SETTINGS": json.dumps(self.settings())}
        if "dramatiq_queue_prefetch" in self.settings():  # read by dramatiq.worker itself
            env["dramatiq_queue_prefetch"] = str(self.settings()["dramatiq_queue_prefetch"])
        return env

    def extra_queues(self, spec: QueueSpec) -> list[str]:
        """Queues the framework declares beside the work queue (deleted after a run)."""
        return [f"{spec.name}.DQ", f"{spec.name}.XQ"] if self.name == "dramatiq" else []

    def replace(self, **changes) -> "FrameworkConfig":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)
