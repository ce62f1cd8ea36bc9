"""One experiment: spawn K workers, publish N tasks, wait for all, measure.

Used by ``python -m helpers run``, the notebooks' Run buttons and the benchmarks, so the
three always measure the same thing the same way.
"""
from __future__ import annotations

import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import pandas as pd

from . import broker as broker_mod
from . import producer, timing, topology
from .connection import connect
from .errors import BadInputError, HelpersError
from .monitor import QueueMonitor
from .pool import WorkerPool
from .settings import MAX_PREFETCH
from .tasks import Task


@dataclass
class RunResult:
    """What one experiment produced."""

    summary: dict
    deliveries: pd.DataFrame
    events: list[dict]
    publish: producer.PublishResult
    queue: pd.DataFrame | None = None
    folder: object = None
    kills: list[dict] = field(default_factory=list)

    def per_worker(self) -> pd.DataFrame:
        """The summary's per-worker rows as a DataFrame."""
        return pd.DataFrame(self.summary["per_worker"])

    def _repr_html_(self) -> str:  # a run shows itself as its per-worker table in notebooks
        return self.per_worker().to_html(index=False) + "<pre>" + timing.table(self.summary) \
            + "</pre>"




def validate(workers: int, prefetch: int, tasks: list, kill_every: float | None = None) -> None:
    """Raise ``BadInputError`` naming the first bad value."""
    if not _whole(workers) or workers < 1:
        raise BadInputError(f"workers must be a whole number of at least 1 (got {workers!r}).")
    if not _whole(prefetch) or not 0 <= prefetch <= MAX_PREFETCH:
        raise BadInputError(f"prefetch must be a whole number from 0 (unlimited) to "
                            f"{MAX_PREFETCH} (got {prefetch!r}).")
    if not tasks:
        raise BadInputError("There are no tasks to run (give at least one).")
    if kill_every is not None and not (_number(kill_every) and 0 < kill_every < math.inf):
        raise BadInputError(f"kill_every must be a positive number of seconds (got {kill_every}).")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and not math.isnan(value)


def run(workers: int, prefetch: int, tasks: list[Task], *, ack: str = "manual",
        mode: str = "thread", speeds: list[float] | None = None,
        kill_every: float | None = None, seed: int = 0, timeout: float | None = None,
        queue: str | None = None, broker: broker_mod.Broker | None = None,
        progress=None, save: bool = True, label: str = "run", monitor: bool = False,
        quorum: bool = False, **worker_options) -> RunResult:
    """Run one experiment and return its ``RunResult``.

    Parameters
    ----------
    workers: K, the number of worker processes (all consuming before the first publish).
    prefetch: per-worker prefetch count, 0 for unlimited (pure round robin).
    tasks: the work, published in order with pipelined publisher confirms.
    speeds: optional speed factor per worker (2 = twice as fast).
    kill_every: SIGKILL a random worker every so many seconds and start a replacement.
    progress: ``progress(done, total)`` called as tasks complete (from a reader thread).
    monitor: sample the queue depth through the management API while it runs.
    """
    validate(workers, prefetch, tasks, kill_every)
    if speeds is not None and len(speeds) != workers:
        raise BadInputError(f"speeds needs one value per worker ({workers}), got {len(speeds)}.")
    if speeds is not None and not all(_number(v) and 0 < v < math.inf for v in speeds):
        raise BadInputError(f"speeds must all be numbers above 0 (got {list(speeds)}).")
    total = len(tasks)
    durations = {t.id: t.duration for t in tasks}
    if len(durations) != total:
        raise BadInputError("Task ids must be unique within a run.")
    found = broker or broker_mod.get()
    spec = topology.QueueSpec(queue or f"wq-{label}-{uuid.uuid4().hex[:8]}",
                              kind="quorum" if quorum else "classic")
    with connect(found.url, name=f"runner {spec.name}") as conn:
        channel = conn.channel()
        topology.declare(channel, spec)
        channel.queue_purge(spec.name)

    def on_progress(pool: WorkerPool) -> None:
        if progress is not None:
            progress(len(pool.finished), total)

    pool = WorkerPool(found.url, spec, prefetch=prefetch, ack=ack, mode=mode, **worker_options)
    sampler = QueueMonitor(found, spec.name) if monitor else None
    stop_killing = threading.Event()
    try:
        t_spawn = time.time()
        handles = pool.start(workers, per_worker=[{"speed": s} for s in speeds or []])
        spawn_s = max(h.ready_t for h in handles) - t_spawn
        names = [h.name for h in handles]
        if sampler:
            sampler.start()
        published = producer.publish(found.url, spec, tasks, declare_queue=False,
                                     name=f"producer {spec.name}")
        if published.error:
            raise HelpersError(f"Publishing stopped before every task was confirmed "
                               f"({published.error}): check the broker "
                               "(`python -m helpers broker status`) and run again.")
        killer = None
        if kill_every:
            killer = threading.Thread(target=_kill_loop, args=(pool, kill_every, stop_killing,
                                                               random.Random(seed)),
                                      name="killer", daemon=True)
            killer.start()
        budget = timeout or (3 * timing.ideal_makespan(durations.values(), workers) + 30)
        want = published.confirmed
        done = pool.wait_for(lambda p: all(p.finished[i] for i in want), budget, on_progress)
        stop_killing.set()
        if killer is not None:
            killer.join()
        on_progress(pool)
    finally:
        stop_killing.set()
        pool.stop()
        if sampler:
            sampler.stop()
        topology.discard(found.url, spec)
    events = pool.snapshot()
    summary = timing.summarize(
        events, published.published, published.confirmed, durations, names,
        published.t_first, speeds=speeds, prefetch=prefetch, ack=ack, mode=mode,
        spawn_s=round(spawn_s, 4), kills=len(pool.kills), completed_in_time=done,
        queue=spec.name, broker_version=found.version(), publish=published.summary())
    df = timing.deliveries(events, t0=published.t_first, durations=durations)
    samples = sampler.frame(t0=published.t_first) if sampler else None
    folder = timing.save_run(summary, df, label) if save else None
    return RunResult(summary, df, events, published, samples, folder, list(pool.kills))


def _kill_loop(pool: WorkerPool, every: float, stop: threading.Event,
               rng: random.Random) -> None:
    """Every ``every`` seconds, SIGKILL a random *consuming* worker and start a replacement.

    The pace is kept on a fixed schedule: replacements are not waited for (a worker takes
    longer than a tick to start on a small machine), and one still starting is never the
    victim, since killing it before it holds a task would test nothing.
    """
    next_t = time.monotonic() + every
    while not stop.wait(max(0.0, next_t - time.monotonic())):
        next_t += every
        consuming = [h for h in pool.alive() if h.ready_t is not None]
        if not consuming:
            continue  # every worker is still starting: nothing worth killing this round
        victim = pool.kill(rng.choice(consuming))
        try:
            pool.add(1, wait=False,
                     **{k: victim.options[k] for k in ("speed",) if k in victim.options})
        except HelpersError:
            pass  # the next round tries again
