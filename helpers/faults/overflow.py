"""A flood into a queue with a length limit (``fault overflow``): back-pressure or loss.

The same flood, published at once to a queue of ``max_length`` (``x-max-length``) that two
slow workers drain, two runs side by side:

* ``reject-publish``: a full queue refuses new messages, and the broker *nacks* them: the
  producer knows, waits (``retry_s``, doubling) and publishes the refused ones again, until
  every task is confirmed: nothing lost, the flood slowed to the workers' pace;
* ``drop-head``: a full queue drops its *oldest* message for each new one: every publish is
  confirmed, and the dropped tasks are simply gone, without a word to anyone.

Beside them, ``quorum_burst`` publishes the same flood at once (pipelined confirms, no
consumer) into a *quorum* queue with the same limit and ``reject-publish``: a quorum queue
checks the limit as it applies each message to its log, and only then tells the publishing
channel to refuse more, so what was already on its way gets in: from a few to the whole
flood, run to run, with or without the project's dead-letter policy (docs/notebooks.md).

Own keys: ``confirmed`` (reject-publish, in the end), ``nacked`` (nacks received, all
rounds), ``nacked_first`` (of the first pass), ``republish_rounds``, ``lost_reject_publish``,
``lost_drop_head``, ``confirmed_drop_head``, ``max_length``, ``flood``, ``quorum_burst``
(``confirmed``, ``nacked``, ``depth``: the quorum queue's messages after the burst).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from helpers.broker import resolve as broker_mod
from helpers.checks import is_whole
from helpers.core import topology
from helpers.core.tasks import Task
from helpers.errors import BadInputError
from helpers.experiment import skeleton as runner
from helpers.experiment.steps import Run, Step
from helpers.experiment.value import Experiment
from helpers.faults.steps import Leftovers, Tally, combine
from helpers.procs import in_parallel
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.settings import QUEUE_KINDS

DEFAULTS = {"workers": 2, "prefetch": 1, "tasks": 200, "duration": 0.01}
MODES = ("reject-publish", "drop-head")


@dataclass(frozen=True)
class OverflowOptions:
    """How the overflow runs go, checked once."""

    #: the queue's length limit (``x-max-length``), in messages
    max_length: int = 20
    #: the type of the two runs' queues (the burst's is always a quorum queue)
    kind: str = "classic"

    def __post_init__(self):
        if not (is_whole(self.max_length) and self.max_length >= 1):
            raise BadInputError(f"max_length must be a whole number of at least 1 "
                                f"(got {self.max_length!r}).")
        if self.kind not in QUEUE_KINDS:
            raise BadInputError(f"kind must be one of {', '.join(QUEUE_KINDS)} "
                                f"(got {self.kind!r}).")


OPTIONS = OverflowOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


class Republish(Step):
    """The producer's side of back-pressure: publish what the broker nacked again, later."""

    def __init__(self, tasks: list[Task], retry_s: float = 0.05):
        self.by_id, self.retry_s = {t.id: t for t in tasks}, retry_s
        self.nacked_first = self.nacked = self.rounds = 0
        self._confirmed: set = set()
        self._lock = threading.Lock()
        self._done = threading.Event()

    def started(self, run: Run) -> None:
        self.nacked_first = self.nacked = len(run.published.nacked)
        threading.Thread(target=self._loop, args=(run, set(run.published.nacked)),
                         name="republish", daemon=True).start()

    def _loop(self, run: Run, waiting: set) -> None:
        wait_s = self.retry_s
        try:
            while waiting:
                time.sleep(wait_s)
                wait_s = min(wait_s * 2, 0.5)
                again = producer.publish(run.broker.url, run.spec,
                                         [self.by_id[i] for i in sorted(waiting)],
                                         PublishOptions(declare_queue=False,
                                                        name=f"republish {run.spec.name}"))
                self.rounds += 1
                self.nacked += len(again.nacked)
                if again.confirmed:
                    wait_s = self.retry_s  # progress: the queue has room again
                with self._lock:
                    self._confirmed |= again.confirmed
                waiting -= again.confirmed
        finally:
            self._done.set()

    def holds(self, run: Run) -> bool:
        with self._lock:  # merged here, in the skeleton's thread, which reads the set
            run.published.confirmed |= self._confirmed
        return not self._done.is_set()

    def finished(self, run: Run, done: bool) -> None:
        self.holds(run)

    def summary(self, run: Run) -> dict:
        return {"nacked": self.nacked, "nacked_first": self.nacked_first,
                "republish_rounds": self.rounds}


class UntilEmpty(Step):
    """End the run once the queue is empty and no worker holds a task (drop-head: the
    dropped tasks will never be done, so the run cannot wait for them)."""

    def __init__(self):
        self._next = 0.0

    def ends(self, run: Run) -> bool:
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + 0.2
        events = run.pool.snapshot()
        held = {e["delivery"] for e in events if e["event"] == "delivered"} - {
            e["delivery"] for e in events if e["event"] == "acked"}
        return not held and topology.count(run.broker.url, run.spec.name) == 0


def quorum_burst(broker, flood: int, max_length: int) -> dict:
    """``flood`` messages at once into an unconsumed quorum queue of at most ``max_length``
    with ``reject-publish``: how many the broker confirmed, nacked, and kept."""
    spec = topology.unique_spec("overflow-quorum-burst", kind="quorum", dead_letter=False,
                                max_length=max_length, overflow="reject-publish")
    topology.setup(broker.url, spec, purge=True)
    try:
        got = producer.publish(broker.url, spec, [Task(f"b{i:04d}", 0.0) for i in range(flood)],
                               PublishOptions(declare_queue=False, name=f"burst {spec.name}"))
        return {"confirmed": len(got.confirmed), "nacked": len(got.nacked),
                "depth": topology.count(broker.url, spec.name)}
    finally:
        topology.discard(broker.url, spec)


def run(name: str, workers: int, prefetch: int, tasks: list,
        options: OverflowOptions = OverflowOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """Both runs as one result: a flood of ``len(tasks)`` tasks (prefetch is 1)."""
    broker = broker or broker_mod.get()
    tally = Tally(progress)
    flood, task_s, max_length = len(tasks), tasks[0].duration, options.max_length

    def work(label: str) -> list[Task]:
        return [Task(f"{label}-t{i:04d}", task_s) for i in range(1, flood + 1)]

    def one(label: str) -> runner.RunResult:
        spec = topology.unique_spec(f"overflow-{label}", kind=options.kind, dead_letter=False,
                                    max_length=max_length, overflow=label)
        exp = Experiment(workers, work(label), queue=spec, label=f"overflow-{label}", save=False)
        step = Republish(work(label)) if label == "reject-publish" else UntilEmpty()
        return runner.run(exp, broker=broker, steps=[step, Leftovers()],
                          progress=tally.part(label))

    calls = {label: (lambda x=label: one(x)) for label in MODES}
    got = in_parallel({**calls, "burst": lambda: quorum_burst(broker, flood, max_length)})
    results = {label: got[label] for label in MODES}
    rp, dh = results["reject-publish"].summary, results["drop-head"].summary
    own = {"confirmed": len(results["reject-publish"].publish.confirmed),
           "nacked": rp["nacked"], "nacked_first": rp["nacked_first"],
           "republish_rounds": rp["republish_rounds"],
           "lost_reject_publish": rp["tasks_lost"], "lost_drop_head": dh["tasks_lost"],
           "confirmed_drop_head": len(results["drop-head"].publish.confirmed),
           "max_length": max_length, "flood": flood, "quorum_burst": got["burst"]}
    durations = {t.id: t.duration for label in MODES for t in work(label)}
    return combine(name, results, durations, own)


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    return (f"{s['flood']} tasks into a queue of at most {s['max_length']}: reject-publish "
            f"nacked {s['nacked']} publishes ({s['nacked_first']} in the first pass, "
            f"{s['republish_rounds']} rounds again), {s['confirmed']} confirmed, lost "
            f"{s['lost_reject_publish']}; drop-head confirmed {s['confirmed_drop_head']} and "
            f"lost {s['lost_drop_head']} without a word; a burst into a quorum queue with "
            f"reject-publish: {s['quorum_burst']['confirmed']} confirmed, "
            f"{s['quorum_burst']['nacked']} nacked")
