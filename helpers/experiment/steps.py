"""What the run skeleton hands to the steps plugged into it: ``Run`` and the ``Step`` base.

A step (a worker killed every few seconds, the broker restarted mid-run, a node lost:
``helpers.experiment.kills`` and ``helpers.faults``) subclasses ``Step`` and overrides the
hooks it needs; ``helpers.experiment.skeleton.run`` calls them in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from helpers.broker.model import Broker
from helpers.core.tasks import Task
from helpers.core.topology import QueueSpec
from helpers.pool.pool import WorkerPool
from helpers.publish.outcome import PublishResult
from helpers.publish.pacing import PacedPublisher


@dataclass
class Run:
    """A run under way: what the skeleton set up, for the steps plugged into it."""

    broker: Broker
    spec: QueueSpec
    pool: WorkerPool
    tasks: list[Task]
    names: list[str] = field(default_factory=list)
    #: the paced publisher, when the run publishes over time (else None)
    publisher: PacedPublisher | None = None
    #: what the broker confirmed so far (the paced publisher's, live)
    published: PublishResult | None = None
    #: when the run's queue was declared (``time.monotonic()``; a crash waits ``SETTLE_S``)
    declared_at: float = 0.0


class Step:
    """Something plugged into the run skeleton; every hook does nothing by default.

    ``check(broker)`` before anything is declared (raise a ``HelpersError`` to refuse);
    ``started(run)`` once the workers consume and publishing has begun; ``ends(run)``,
    polled while the run waits, may end it before every task is done (a run that loses
    tasks on purpose), and ``holds(run)`` may keep it going after (a task done but not
    acked comes back); ``finished(run, done)`` after the wait (``done``: every confirmed
    task completed), before the workers stop, and always (``finally``); ``summary(run)``
    adds keys to the run's summary.
    """

    #: seconds this step may add to the run (added to the waiting budget)
    extra_s: float = 0.0

    def grace_s(self, run: Run) -> float:
        """Seconds added to the waiting budget so far, as measured (polled while waiting)."""
        return 0.0

    def check(self, broker: Broker) -> None:
        """Refuse a broker this step cannot work with."""

    def started(self, run: Run) -> None:
        """Begin (e.g. start a thread that will break something)."""

    def ends(self, run: Run) -> bool:
        """True ends the run now, done or not (polled about ten times a second)."""
        return False

    def holds(self, run: Run) -> bool:
        """True keeps the run going although every task is done (polled like ``ends``)."""
        return False

    def finished(self, run: Run, done: bool) -> None:
        """End what ``started`` began."""

    def summary(self, run: Run) -> dict:
        """Keys of this step for the run's summary."""
        return {}
