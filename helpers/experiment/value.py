"""``Experiment``: what one run is, as a value, checked once.

The CLI, the lessons, the fault scenarios and the benchmarks each build one and hand it to
``helpers.experiment.skeleton.run``; a lesson declares its runs once (e.g.
``ROUND_ROBIN = Experiment(...)``) and its panel's slider defaults come from it::

    exp = Experiment(workers=2, tasks=odd_heavy(40, 0.2, 0.02), worker=WorkerConfig(prefetch=1))
    result = run(exp)                                   # a RunResult
    result = run(exp.replace(worker=exp.worker.replace(prefetch=0)))
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from helpers.checks import is_number, validate
from helpers.core import topology
from helpers.core.tasks import Task
from helpers.errors import BadInputError
from helpers.frameworks.config import FrameworkConfig
from helpers.net.proxy import check_round_trip
from helpers.publish.options import PublishOptions
from helpers.settings import DEFAULT_QUEUE_KIND, QUEUE_KINDS
from helpers.worker.config import WorkerConfig


@dataclass(frozen=True)
class Experiment:
    """K workers, the tasks they share, and how the run is set up and measured."""

    #: K, the number of worker processes (all consuming before the first publish)
    workers: int
    #: the work, published in order (pipelined publisher confirms)
    tasks: tuple[Task, ...]
    #: how every worker consumes: prefetch, acks, mode, ...
    worker: WorkerConfig = WorkerConfig()
    #: the run's queue; None: a fresh one named after ``label``, of ``queue_type``
    queue: topology.QueueSpec | None = None
    queue_type: str = DEFAULT_QUEUE_KIND
    #: a speed factor per worker (2 = twice as fast); None: all at ``worker.speed``
    speeds: tuple[float, ...] | None = None
    #: a round trip (ms) added between each worker and the broker (a latency proxy)
    latency_ms: float = 0
    #: SIGKILL a random worker every so many seconds and start a replacement
    kill_every: float | None = None
    seed: int = 0
    #: seconds to wait for every task (None: three times the ideal makespan, and more)
    timeout: float | None = None
    label: str = "run"
    #: sample the queue's depth while it runs
    monitor: bool = False
    #: write the run's events and summary under ``data/runs``
    save: bool = True
    #: who runs the tasks: None, the project's pika workers (``worker``); or Celery's or
    #: Dramatiq's workers with their settings (``worker`` is then not used)
    framework: FrameworkConfig | None = None
    #: how the tasks are published: at once by default; with ``batch``, a batch at a time
    #: over a while (a ``PacedPublisher``)
    publish: PublishOptions = PublishOptions()

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.speeds is not None:
            object.__setattr__(self, "speeds", tuple(self.speeds))
        validate(self.workers, self.worker.prefetch, self.tasks, self.kill_every)
        check_round_trip(self.latency_ms)
        if self.speeds is not None and len(self.speeds) != self.workers:
            raise BadInputError(f"speeds needs one value per worker ({self.workers}), "
                                f"got {len(self.speeds)}.")
        if self.speeds is not None and not all(is_number(v) and 0 < v < math.inf
                                               for v in self.speeds):
            raise BadInputError(f"speeds must all be numbers above 0 (got {list(self.speeds)}).")
        if self.framework is not None and (self.speeds or self.latency_ms
                                           or self.publish.paced):
            raise BadInputError("Celery and Dramatiq workers here run at speed 1 and next to "
                                "the broker, published at once: leave speeds, latency and pace out.")
        if len({t.id for t in self.tasks}) != len(self.tasks):
            raise BadInputError("Task ids must be unique within a run.")
        if self.queue is None and self.queue_type not in QUEUE_KINDS:
            raise BadInputError(f"queue_type must be one of {', '.join(QUEUE_KINDS)} "
                                f"(got {self.queue_type!r}).")

    @property
    def prefetch(self) -> int:
        """The prefetch each worker's consumer asks for (a framework's: what its settings give)."""
        if self.framework is not None:
            return self.framework.effective_prefetch
        return self.worker.prefetch

    def spec(self) -> topology.QueueSpec:
        """The run's queue: ``queue``, or a fresh one named after the label."""
        return self.queue or topology.unique_spec(self.label, kind=self.queue_type)

    def durations(self) -> dict:
        """Task id -> seconds of work."""
        return {t.id: t.duration for t in self.tasks}

    def replace(self, **changes) -> "Experiment":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)
