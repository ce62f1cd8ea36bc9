"""The one run skeleton: validate, fresh queue, spawn, publish, wait, summarise.

``execute`` does those steps in that order for every experiment; what differs between
experiments plugs into it as ``Step``s (a worker killed every few seconds, the broker
restarted mid-run, ...: see ``helpers.faults``) and a publishing pace (all at once, or
batches over time in a thread, ``helpers.publish.pacing``). ``run`` is the common case, used by
``python -m helpers run``, the notebooks' Run buttons and the benchmarks, so all of them
measure the same thing the same way.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.broker.model import Broker
from helpers.broker import dead_letter
from helpers.publish import producer
from helpers.publish.outcome import PublishResult
from helpers.measure import timing
from helpers.core import topology
from helpers.errors import BadInputError, HelpersError
from helpers.measure.monitor import QueueMonitor
from helpers.publish.pacing import PacedPublisher
from helpers.checks import is_number, validate
from helpers.pool.pool import WorkerPool
from helpers.net.proxy import check_round_trip
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.core.tasks import Task
from helpers.experiment.kills import WorkerKills
from helpers.experiment.steps import Run, Step


@dataclass
class RunResult:
    """What one experiment produced."""

    summary: dict
    deliveries: pd.DataFrame
    events: list[dict]
    publish: PublishResult
    #: queue depth samples from the management API (``run(monitor=True)``), else None
    queue_samples: pd.DataFrame | None = None
    folder: object = None
    kills: list[dict] = field(default_factory=list)

    def per_worker(self) -> pd.DataFrame:
        """The summary's per-worker rows as a DataFrame."""
        return pd.DataFrame(self.summary["per_worker"])

    def _repr_html_(self) -> str:  # a run shows itself as its per-worker table in notebooks
        return self.per_worker().to_html(index=False) + "<pre>" + timing.table(self.summary) \
            + "</pre>"


def _durations(tasks: list[Task]) -> dict:
    durations = {t.id: t.duration for t in tasks}
    if len(durations) != len(tasks):
        raise BadInputError("Task ids must be unique within a run.")
    return durations


def execute(workers: int, prefetch: int, tasks: list[Task], *, steps=(),
            pace: dict | None = None, broker: Broker | None = None,
            queue: topology.QueueSpec | None = None, label: str = "run",
            timeout: float | None = None, progress=None, monitor: bool = False,
            save: bool = True, speeds=None, latency_ms: float = 0, discard=None,
            **worker_options) -> RunResult:
    """The run skeleton (see the module docstring); returns the run's ``RunResult``.

    Parameters
    ----------
    steps: ``Step``s plugged into the run.
    pace: ``PacedPublisher`` options (``batch``, ``every_s``, ``retry_for``, ...) to publish
        over time in a thread; None publishes every task at once, before the steps start.
    queue: the spec of the run's queue (default: a new quorum queue named after ``label``);
        it is declared and purged first, and deleted after. Its dead-lettering is settled
        here (``dead_letter.prepare``: the broker's policy, or the workers themselves).
    speeds: a speed factor per worker (2 = twice as fast); ``worker_options`` go to every
        worker (prefetch is the second argument; ``ack``, ``mode``, ``heartbeat`` ...).
    latency_ms: a round trip (ms) added between each worker and the broker by a latency
        proxy the pool owns (workers "on a far host"); the publisher and the queue's set-up
        connect directly.
    discard: called as ``discard(url, spec)`` to delete the run's queue at the end (default
        ``topology.discard``, at once); a caller may defer it (notebook 07's ``Lab``).
    """
    validate(workers, prefetch, tasks)
    check_round_trip(latency_ms)
    durations = _durations(tasks)
    broker = broker or broker_mod.get()
    for step in steps:
        step.check(broker)
    spec = dead_letter.prepare(broker, queue or topology.unique_spec(label))
    topology.setup(broker.url, spec, purge=True)
    pool = WorkerPool(broker.url, spec, prefetch=prefetch, latency_ms=latency_ms,
                      **worker_options)
    run = Run(broker, spec, pool, list(tasks), declared_at=time.monotonic())
    sampler = QueueMonitor(broker, spec.name) if monitor else None
    ideal = timing.ideal_makespan(durations.values(), workers, speeds)
    # A far worker at prefetch 1 waits one round trip per task: allow for that too.
    far_s = latency_ms / 1000 * len(tasks) / workers
    budget = timeout or (3 * (ideal + far_s) + 30 + sum(step.extra_s for step in steps))
    begun: list[Step] = []
    done = False
    try:
        t_spawn = time.time()
        handles = pool.start(workers, per_worker=[{"speed": s} for s in speeds or []])
        spawn_s = max(h.ready_t for h in handles) - t_spawn
        run.names = [h.name for h in handles]
        if sampler:
            sampler.start()
        if pace is None:
            run.published = producer.publish(broker.url, spec, tasks, declare_queue=False,
                                             name=f"producer {spec.name}")
            if run.published.error:
                raise HelpersError(f"Publishing stopped before every task was confirmed "
                                   f"({run.published.error}): check the broker "
                                   "(`python -m helpers broker status`) and run again.")
        else:
            run.publisher = PacedPublisher(broker.url, spec, tasks, **pace)
            run.published = run.publisher.result
            run.publisher.start()
        for step in steps:
            begun.append(step)
            step.started(run)
        done = _wait(run, budget, progress, steps)
    finally:
        try:
            for step in begun:
                step.finished(run, done)
        finally:
            if run.publisher is not None:
                run.publisher.stop()
            pool.stop()
            if sampler:
                sampler.stop()
            (discard or topology.discard)(broker.url, spec)
    return _result(run, durations, prefetch, spawn_s, done, label, save, steps, speeds,
                   sampler, dict(worker_options, latency_ms=latency_ms))


def _wait(run: Run, budget: float, progress, steps) -> bool:
    """Wait until every confirmed task has been completed (and publishing is over), or a
    step ends the run; True when every confirmed task was completed."""
    total = len(run.tasks)

    def all_done(pool: WorkerPool) -> bool:
        ids = run.published.confirmed  # counted first: asked on each batch, under a lock
        publishing = run.publisher is not None and run.publisher.is_alive()
        return not publishing and len(pool.finished) >= len(ids) \
            and all(pool.finished[i] for i in ids) and not any(s.holds(run) for s in steps)

    def report(pool: WorkerPool) -> None:
        if progress is not None:
            progress(len(pool.finished), total)

    start = time.monotonic()

    def left() -> float:
        return start + budget + sum(step.grace_s(run) for step in steps) - time.monotonic()

    done = False
    # In slices: publishing may end, or a step end the run, without a new event.
    while not done and left() > 0:
        done = run.pool.wait_for(all_done, max(0.0, min(0.1, left())), report)
        if any(step.ends(run) for step in steps):
            break
    report(run.pool)
    return done or all_done(run.pool)


def _result(run: Run, durations: dict, prefetch: int, spawn_s: float, done: bool,
            label: str, save: bool, steps, speeds, sampler, worker_options) -> RunResult:
    events = run.pool.snapshot()
    published = run.published
    extra = {}
    for step in steps:
        extra.update(step.summary(run))
    df = timing.deliveries(events, t0=published.t_first, durations=durations)
    summary = timing.summarize(
        events, published.published, published.confirmed, durations, run.names,
        published.t_first, speeds=speeds, frame=df, prefetch=prefetch,
        ack=worker_options.get("ack", "manual"), mode=worker_options.get("mode", "thread"),
        spawn_s=round(spawn_s, 4), kills=len(run.pool.kills), completed_in_time=done,
        queue=run.spec.name, queue_type=run.spec.kind,
        dead_letter=dead_letter.route(run.spec), broker_version=run.broker.version(),
        publish=published.summary(), latency_ms=worker_options.get("latency_ms", 0),
        reserve=bool(worker_options.get("reserve")),
        handed_back=sum(e.get("event") == "handed-back" for e in events), **extra)
    samples = sampler.frame(t0=published.t_first) if sampler else None
    folder = timing.save_run(summary, df, label) if save else None
    return RunResult(summary, df, events, published, samples, folder, list(run.pool.kills))


def run(workers: int, prefetch: int, tasks: list[Task], *, ack: str = "manual",
        mode: str = "thread", speeds: list[float] | None = None,
        kill_every: float | None = None, seed: int = 0, timeout: float | None = None,
        queue: str | None = None, broker: Broker | None = None,
        progress=None, save: bool = True, label: str = "run", monitor: bool = False,
        queue_type: str = DEFAULT_QUEUE_KIND, quorum: bool | None = None,
        latency_ms: float = 0, **worker_options) -> RunResult:
    """Run one experiment and return its ``RunResult``.

    Parameters
    ----------
    workers: K, the number of worker processes (all consuming before the first publish).
    prefetch: per-worker prefetch count, 0 for unlimited (pure round robin).
    tasks: the work, published in order with pipelined publisher confirms.
    speeds: optional speed factor per worker (2 = twice as fast).
    kill_every: SIGKILL a random worker every so many seconds and start a replacement.
    queue: the queue's name (default: a new one per run); ``queue_type``: ``quorum`` (the
        default, as in the tutorial) or ``classic``; ``quorum`` (True/False), the older way
        to say it, wins when given.
    progress: ``progress(done, total)`` called as tasks complete (from a reader thread).
    monitor: sample the queue depth through the management API while it runs.
    latency_ms: round trip (ms) added between each worker and the broker (see ``execute``).
    """
    validate(workers, prefetch, tasks, kill_every)
    check_round_trip(latency_ms)
    if worker_options.get("reserve") and (prefetch != 2 or mode != "thread" or ack != "manual"):
        raise BadInputError("Reserve mode holds one task in hand and one in reserve: use "
                            "prefetch 2 with manual acks in thread mode (got prefetch "
                            f"{prefetch}).")
    if speeds is not None and len(speeds) != workers:
        raise BadInputError(f"speeds needs one value per worker ({workers}), got {len(speeds)}.")
    if speeds is not None and not all(is_number(v) and 0 < v < math.inf for v in speeds):
        raise BadInputError(f"speeds must all be numbers above 0 (got {list(speeds)}).")
    _durations(tasks)  # before the broker is touched
    if quorum is not None:
        queue_type = "quorum" if quorum else "classic"
    spec = (topology.QueueSpec(queue, kind=queue_type) if queue
            else topology.unique_spec(label, kind=queue_type))
    steps = [WorkerKills(kill_every, seed)] if kill_every else []
    return execute(workers, prefetch, tasks, steps=steps, broker=broker, queue=spec,
                   label=label, timeout=timeout, progress=progress, monitor=monitor,
                   save=save, speeds=speeds, ack=ack, mode=mode, latency_ms=latency_ms,
                   **worker_options)


def queue_line(summary: dict) -> str:
    """The run's queue in one line: its type, and where its rejected messages would go."""
    how = dead_letter.ROUTE_WORDS.get(summary.get("dead_letter"), "")
    return f"queue {summary.get('queue')}: {summary.get('queue_type')}; {how}"

