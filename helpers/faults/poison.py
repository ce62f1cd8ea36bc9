"""A poison message: a task that kills every worker that takes it (``fault poison``).

Good tasks with one poison task among them (``"kind": "crash"``: its worker dies half-way),
workers restarted as they die (``Supervise``, as systemd or Kubernetes would), three runs:

* ``classic``: a classic queue counts nothing, so the poison comes back forever; the run is
  cut at ``window_s`` and the poison's deliveries per second are counted;
* ``delivery-limit``: a quorum queue with ``x-delivery-limit`` (``limit``) dead-letters it
  after that many redeliveries, and the good tasks complete;
* ``worker-guard``: a quorum queue left at the broker's default limit, and workers that
  read ``x-delivery-count`` and reject a message seen ``max_attempts`` times before
  (``--max-attempts``) to the dead-letter queue, without running it again.

``delivery_limit_probe`` measures, in a second and without workers, the broker's default
limit and which settlements count toward a limit (``basic.reject`` and ``basic.nack`` with
requeue), since both changed across RabbitMQ versions.

Own keys (of the ``delivery-limit`` run unless named): ``injected``, ``dead_lettered``,
``attempts_per_poison``, ``good_completed``, ``delivery_limit``, ``classic_deliveries``,
``classic_deliveries_per_s``, ``classic_good_completed``, ``classic_still_queued``,
``guard_attempts``, ``guard_dead_lettered``, ``max_attempts``, ``dead_letter_reasons`` and
``guard_dead_letter_reasons`` (``x-death`` reason -> messages), ``dead_letter_route`` and
``guard_dead_letter_route`` (who dead-lettered: ``dead_letter.route``), ``good_tasks``, ``good_s``,
``workers_per_run``, ``default_delivery_limit``,
``limit_counts_reject``, ``limit_counts_nack``, ``window_s``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from helpers.broker import resolve as broker_mod
from helpers.broker.model import Broker
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.experiment.steps import Run, Step
from helpers.core import topology
from helpers.checks import is_number, is_whole
from helpers.core.connection import connect
from helpers.errors import BadInputError
from helpers.settings import POISON_KIND
from helpers.core.tasks import Task, equal
from helpers.faults.steps import Leftovers, Supervise, Tally, Window, combine
from helpers.procs import in_parallel

RUNS = ("classic", "delivery-limit", "worker-guard")
#: Deliveries the probe tries before it calls a queue's limit "none".
PROBE_TRIES = 30
#: 3 workers, 20 good tasks of 0.1 s (the CLI's --tasks and --duration), one poison task
DEFAULTS = {"workers": 3, "prefetch": 1, "tasks": 20, "duration": 0.1}


def delivery_limit_probe(broker: Broker) -> dict:
    """The broker's default delivery limit on quorum queues, and what counts toward one.

    One message per question, in a fresh quorum queue with a dead-letter queue, taken with
    ``basic.get`` and put back with ``basic.nack`` or ``basic.reject`` (``requeue=True``)
    until it is dead-lettered: ``default_delivery_limit`` is the redeliveries it took with no
    limit set, put back with ``basic.reject``, which counts on every version (None: still
    there after ``PROBE_TRIES``); with a limit of 2, a settlement that counts dead-letters
    the message after 3 deliveries. Since RabbitMQ 4.3 ``basic.nack`` does not count (it
    raises ``x-acquired-count``, not ``x-delivery-count``): ``limit_counts_nack`` is False.
    """
    def deliveries(limit: int | None, settle: str) -> int | None:
        spec = topology.unique_spec("probe-limit", kind="quorum", delivery_limit=limit)
        topology.setup(broker.url, spec)
        try:
            with connect(broker.url, name=f"probe {spec.name}") as conn:
                channel = conn.channel()
                channel.basic_publish("", spec.name, b"probe")
                for n in range(1, PROBE_TRIES + 1):
                    method = _get(channel, spec.name)
                    if method is None:
                        return n - 1  # gone: dead-lettered after n - 1 deliveries
                    if settle == "nack":
                        channel.basic_nack(method.delivery_tag, requeue=True)
                    else:
                        channel.basic_reject(method.delivery_tag, requeue=True)
                return None
        finally:
            topology.discard(broker.url, spec)

    default = deliveries(None, "reject")
    return {"default_delivery_limit": None if default is None else default - 1,
            "limit_counts_reject": deliveries(2, "reject") == 3,
            "limit_counts_nack": deliveries(2, "nack") == 3}


def _get(channel, queue: str, wait_s: float = 1.0):
    """``basic_get`` that waits a moment for a requeued message to be ready again."""
    deadline = time.monotonic() + wait_s
    while True:
        method, _props, _body = channel.basic_get(queue, auto_ack=False)
        if method is not None or time.monotonic() >= deadline:
            return method
        time.sleep(0.02)


class UntilDeadLettered(Step):
    """End the run once every good task is done and the poison sits in the dead-letter queue."""

    def __init__(self, good: set[str], poisons: int):
        self.good, self.poisons, self._next = good, poisons, 0.0

    def ends(self, run: Run) -> bool:
        if not all(run.pool.finished[t] for t in self.good) or time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + 0.25  # a passive declare at most four times a second
        return (topology.count(run.broker.url, run.spec.dead_letter_queue) or 0) >= self.poisons


def work(good: int = 20, good_s: float = 0.1, poisons: int = 1, prefix: str = "") -> list[Task]:
    """``good`` tasks of ``good_s`` with ``poisons`` poison tasks after the fifth one."""
    tasks = [Task(f"{prefix}{t.id}", t.duration) for t in equal(good, good_s)]
    bad = [Task(f"{prefix}poison-{i}", good_s, POISON_KIND) for i in range(1, poisons + 1)]
    return tasks[:5] + bad + tasks[5:]


@dataclass(frozen=True)
class PoisonOptions:
    """How the poison runs go, checked once."""

    #: poison tasks among the good ones
    poisons: int = 1
    #: the quorum queue's delivery limit (the ``delivery-limit`` run)
    limit: int = 3
    #: the worker's own guard: dead-letter a message delivered this often (``worker-guard``)
    max_attempts: int = 2
    #: seconds the classic queue's run goes on (it never ends by itself)
    window_s: float = 4.0

    def __post_init__(self):
        if not all(is_whole(v) and v >= 1 for v in (self.poisons, self.limit,
                                                     self.max_attempts)):
            raise BadInputError(f"poisons, limit and max_attempts must be whole numbers of at "
                                f"least 1 (got {self.poisons!r}, {self.limit!r}, "
                                f"{self.max_attempts!r}).")
        if not (is_number(self.window_s) and self.window_s > 0):
            raise BadInputError(f"window_s must be above 0 seconds (got {self.window_s!r}).")


OPTIONS = PoisonOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def runs(workers: int, good: int, good_s: float, options: PoisonOptions = PoisonOptions(), *,
         broker: Broker | None = None, progress=None) -> dict:
    """The three runs, side by side; ``progress(done, total)`` hears the tasks of all three."""
    broker = broker or broker_mod.get()
    tally = Tally(progress)
    poisons, limit, max_attempts, window_s = (options.poisons, options.limit,
                                              options.max_attempts, options.window_s)

    def one(label: str) -> runner.RunResult:
        tasks = work(good, good_s, poisons, prefix=f"{label}-")
        kind = "classic" if label == "classic" else "quorum"
        spec = topology.unique_spec(f"poison-{label}", kind=kind,
                                    delivery_limit=limit if label == "delivery-limit" else None)
        good_ids = {t.id for t in tasks if t.kind != POISON_KIND}
        ending = Window(window_s) if label == "classic" else UntilDeadLettered(good_ids, poisons)
        guard = max_attempts if label == "worker-guard" else 0
        exp = Experiment(workers, tasks, WorkerConfig(prefetch=1, max_attempts=guard),
                         queue=spec, label=f"poison-{label}", save=False,
                         timeout=max(window_s, 30.0) + 30)
        return runner.run(exp, broker=broker, steps=[Supervise(), ending, Leftovers()],
                          progress=tally.part(label))

    return in_parallel({label: (lambda x=label: one(x)) for label in RUNS})


def poison_deliveries(result: runner.RunResult) -> int:
    """How many times the poison tasks of a run were delivered."""
    return sum(e["event"] == "delivered" and "poison" in str(e.get("task")) for e in result.events)


def run(name: str, workers: int, prefetch: int, tasks: list,
        options: PoisonOptions = PoisonOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """The probe and the three runs as one result: as many good tasks as ``tasks``, as long
    as the first, with ``options.poisons`` poison tasks among them (prefetch is 1)."""
    good, good_s = len(tasks), tasks[0].duration
    broker = broker or broker_mod.get()
    poisons, limit, max_attempts, window_s = (options.poisons, options.limit,
                                              options.max_attempts, options.window_s)
    results = in_parallel({
        "probe": lambda: delivery_limit_probe(broker),
        "runs": lambda: runs(workers, good, good_s, options, broker=broker,
                             progress=progress)})
    probe, results = results["probe"], results["runs"]
    limited, classic, guard = (results[k] for k in ("delivery-limit", "classic", "worker-guard"))

    def good_done(result) -> int:
        return len({e["task"] for e in result.events
                    if e["event"] == "finished" and "poison" not in str(e["task"])})

    own = dict(probe, injected=poisons, delivery_limit=limit, max_attempts=max_attempts,
               window_s=window_s, good_tasks=good, good_s=good_s, workers_per_run=workers,
               dead_lettered=limited.summary["dead_lettered"],
               attempts_per_poison=poison_deliveries(limited) / poisons,
               good_completed=good_done(limited),
               classic_deliveries=poison_deliveries(classic),
               classic_deliveries_per_s=round(poison_deliveries(classic) / window_s, 2),
               classic_good_completed=good_done(classic),
               classic_still_queued=classic.summary["still_queued"],
               guard_attempts=poison_deliveries(guard) / poisons,
               guard_dead_lettered=guard.summary["dead_lettered"],
               dead_letter_reasons=limited.summary["dead_letter_reasons"],
               guard_dead_letter_reasons=guard.summary["dead_letter_reasons"],
               dead_letter_route=limited.summary["dead_letter"],
               guard_dead_letter_route=guard.summary["dead_letter"])
    durations = {t.id: t.duration for label in RUNS
                 for t in work(good, good_s, poisons, prefix=f"{label}-")}
    return combine(name, results, durations, own)


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    return (f"{s['injected']} poison task(s) among {s['good_completed']} good: classic queue "
            f"delivered it {s['classic_deliveries']} times in {s['window_s']} s "
            f"({s['classic_deliveries_per_s']}/s, {s['classic_good_completed']} good done); "
            f"quorum queue with delivery limit {s['delivery_limit']}: "
            f"{s['attempts_per_poison']:g} deliveries, then dead-lettered "
            f"({s['dead_lettered']}); worker guard "
            f"--max-attempts {s['max_attempts']}: {s['guard_attempts']:g} deliveries, "
            f"dead-lettered {s['guard_dead_lettered']}; broker default limit "
            f"{s['default_delivery_limit']}, counts reject {s['limit_counts_reject']}, nack "
            f"{s['limit_counts_nack']}; lost {s['tasks_lost']}")
