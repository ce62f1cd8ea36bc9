"""The one run skeleton: fresh queue, spawn, publish, wait, summarise.

``run(experiment)`` does those steps in that order for every ``Experiment`` (checked when
it was built); what differs between experiments plugs into it as ``Step``s (a worker
killed every few seconds, the broker restarted mid-run, ...: ``helpers.faults``) and a
publishing pace (all at once, or batches over time in a thread). ``python -m helpers run``,
the notebooks' Run buttons, the fault scenarios and the benchmarks all run through it, so
all of them measure the same thing the same way.
"""
from __future__ import annotations

import contextlib
import threading
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
from helpers.errors import HelpersError
from helpers.measure.monitor import QueueMonitor
from helpers.publish.pacing import PacedPublisher
from helpers.pool.pool import WorkerPool
from helpers.frameworks.pool import FrameworkPool
from helpers.experiment.kills import WorkerKills
from helpers.experiment.steps import Run, Step
from helpers.experiment.value import Experiment


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


def run(experiment: Experiment, *, broker: Broker | None = None, steps=(), progress=None,
        discard=None) -> RunResult:
    """Run ``experiment`` through the skeleton (see the module docstring): its ``RunResult``.

    Parameters
    ----------
    broker: the broker to run on (default: the one ``helpers`` resolves, started).
    steps: ``Step``s plugged into the run (a fault); ``experiment.kill_every`` adds one.
    progress: ``progress(done, total)`` called as tasks complete (from a reader thread;
        while the tasks are published, every 0.25 s from a thread of its own).
    discard: called as ``discard(url, spec)`` to delete the run's queue at the end (default
        ``topology.discard``, at once); a caller may defer it (notebook 07's ``Lab``).

    The queue is declared and purged first, and deleted after; its dead-lettering is
    settled here (``dead_letter.prepare``: the broker's policy, or the workers themselves).
    A far worker (``latency_ms``) reaches the broker through a latency proxy the pool owns;
    the publisher and the queue's set-up connect directly.
    """
    exp = experiment
    steps = list(steps)
    if exp.kill_every:
        steps.insert(0, WorkerKills(exp.kill_every, exp.seed))
    durations = exp.durations()
    broker = broker or broker_mod.get()
    for step in steps:
        step.check(broker)
    spec = dead_letter.prepare(broker, exp.spec())
    topology.setup(broker.url, spec, purge=True)
    if exp.framework is None:
        pool = WorkerPool(broker.url, spec, exp.worker, latency_ms=exp.latency_ms)
        messages, extra_queues = list(exp.tasks), []
    else:  # Celery's or Dramatiq's workers, and the tasks as their messages
        pool = FrameworkPool(broker.url, spec, exp.framework)
        messages, extra_queues = pool.messages(exp.tasks), exp.framework.extra_queues(spec)
    run = Run(broker, spec, pool, list(exp.tasks), declared_at=time.monotonic())
    sampler = QueueMonitor(broker, spec.name) if exp.monitor else None
    ideal = timing.ideal_makespan(durations.values(), exp.workers, exp.speeds)
    # A far worker at prefetch 1 waits one round trip per task: allow for that too.
    far_s = exp.latency_ms / 1000 * len(exp.tasks) / exp.workers
    budget = exp.timeout or (3 * (ideal + far_s) + 30 + sum(step.extra_s for step in steps))
    begun: list[Step] = []
    done = False
    try:
        t_spawn = time.time()
        handles = pool.start(exp.workers, per_worker=[{"speed": s} for s in exp.speeds or []])
        spawn_s = max(h.ready_t for h in handles) - t_spawn
        run.names = [h.name for h in handles]
        if sampler:
            sampler.start()
        if not exp.publish.paced:
            options = exp.publish.replace(declare_queue=False, name=f"producer {spec.name}")
            with _reporting(pool, progress, len(exp.tasks)):  # a big publish takes seconds
                run.published = producer.publish(broker.url, spec, messages, options)
            if run.published.error:
                raise HelpersError(f"Publishing stopped before every task was confirmed "
                                   f"({run.published.error}): check the broker "
                                   "(`python -m helpers broker status`) and run again.")
        else:
            run.publisher = PacedPublisher(broker.url, spec, exp.tasks, exp.publish)
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
            if extra_queues:
                topology.discard(broker.url, *extra_queues)
    return _result(run, exp, durations, spawn_s, done, steps, sampler)


@contextlib.contextmanager
def _reporting(pool: WorkerPool, progress, total: int, every_s: float = 0.25):
    """Call ``progress(done, total)`` every ``every_s`` from a thread for the block (while
    the tasks are published: the workers complete some meanwhile; ``_wait`` reports after)."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            progress(len(pool.finished), total)
    thread = threading.Thread(target=loop, name="progress-while-publishing", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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


def _result(run: Run, exp: Experiment, durations: dict, spawn_s: float, done: bool, steps,
            sampler) -> RunResult:
    events = run.pool.snapshot()
    published = run.published
    extra = {}
    for step in steps:
        extra.update(step.summary(run))
    df = timing.deliveries(events, t0=published.t_first, durations=durations)
    summary = timing.summarize(
        events, published.published, published.confirmed, durations, run.names,
        published.t_first, speeds=exp.speeds, frame=df, prefetch=exp.prefetch,
        ack=exp.worker.ack if exp.framework is None else "framework",
        mode=exp.worker.mode if exp.framework is None else "framework",
        framework="pika" if exp.framework is None else exp.framework.name,
        framework_settings={} if exp.framework is None else exp.framework.settings(),
        spawn_s=round(spawn_s, 4), kills=len(run.pool.kills), completed_in_time=done,
        queue=run.spec.name, queue_type=run.spec.kind,
        dead_letter=dead_letter.route(run.spec), broker_version=run.broker.version(),
        publish=published.summary(), latency_ms=exp.latency_ms,
        reserve=exp.worker.in_reserve_mode,
        handed_back=sum(e.get("event") == "handed-back" for e in events), **extra)
    samples = sampler.frame(t0=published.t_first) if sampler else None
    folder = timing.save_run(summary, df, exp.label) if exp.save else None
    return RunResult(summary, df, events, published, samples, folder, list(run.pool.kills))


def queue_line(summary: dict) -> str:
    """The run's queue in one line: its type, and where its rejected messages would go."""
    how = dead_letter.ROUTE_WORDS.get(summary.get("dead_letter"), "")
    return f"queue {summary.get('queue')}: {summary.get('queue_type')}; {how}"

