"""Notebook 04, last section: when every worker is busy, the queue fills up.

Tasks arrive at a steady rate (``helpers.publish.pacing``) faster than the workers take them; the
queue's ready count grows, exactly (``ReadySampler``, over AMQP) and as the management API
reports it (``QueueMonitor``, a little late; where no management API answers, the monitor
counts the unacknowledged messages from the workers' events), until more workers join and
drain it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.measure import plots, timing
from helpers.checks import validate
from helpers.core import topology
from helpers.core import tasks as task_lists
from helpers.errors import BadInputError
from helpers.measure.monitor import QueueMonitor, ReadySampler
from helpers.publish.pacing import PacedPublisher
from helpers.publish.options import PublishOptions
from helpers.worker.config import WorkerConfig
from helpers.pool.pool import WorkerPool
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.lessons.common import finish, value_table
from helpers.lessons.panels import Panel, float_slider, int_slider, queue_type

#: Every worker of this lesson takes one task at a time, so waiting tasks stay in the queue.
PREFETCH = 1


@dataclass
class BacklogResult:
    """Queue depth while tasks arrive faster than the workers can take them."""

    samples: pd.DataFrame
    ready: pd.DataFrame
    deliveries: pd.DataFrame
    summary: dict
    #: where ``samples`` came from: ``management`` (the API) or ``amqp`` (and the events)
    source: str = "management"


def backlog(workers: int = 2, add_workers: int = 4, rate: float = 8.0, seconds: float = 5.0,
            duration: float = 0.5, add_after_s: float = 2.5,
            queue_type: str = DEFAULT_QUEUE_KIND, *, broker=None,
            progress=None) -> BacklogResult:
    """Tasks arrive at ``rate`` per second for ``seconds``; ``add_workers`` join later.

    Workers take one task at a time (prefetch 1), so waiting tasks stay in the queue where
    ``messages_ready`` counts them. ``add_after_s`` counts from the first publish; 0 or
    ``add_workers=0`` adds nobody.
    """
    validate(workers, 1, [None])
    if rate <= 0 or seconds <= 0:
        raise BadInputError(f"rate and seconds must be above 0 (got {rate}, {seconds}).")
    broker = broker or broker_mod.get()
    work = task_lists.equal(max(1, round(rate * seconds)), duration)
    total = len(work)
    with topology.scratch_queue(broker.url, "backlog", kind=queue_type) as spec:
        pool = WorkerPool(broker.url, spec, WorkerConfig(prefetch=PREFETCH))
        sampler = QueueMonitor(broker, spec.name, interval=0.2, pool=pool)
        exact = ReadySampler(broker, spec.name)
        publisher = PacedPublisher(broker.url, spec, work, PublishOptions(
            batch=1, pace_s=1 / rate, fixed_rate=True, timeout=30))
        try:
            pool.start(workers)
            sampler.start()
            exact.start()
            t0 = publisher.start_at = time.time() + 0.3  # a few samples of the empty queue first
            publisher.start()
            added_at = None
            if add_workers and add_after_s > 0:
                done_early = pool.wait_for(lambda p: len(p.finished) >= total,
                                           max(0.0, t0 + add_after_s - time.time()))
                if not done_early:
                    joined = pool.add(add_workers)
                    added_at = min(h.ready_t for h in joined) - t0  # consuming from here
            budget = seconds + total * duration / workers + 30
            pool.wait_for(lambda p: len(p.finished) >= total, budget,
                          progress=lambda p: progress and progress(len(p.finished), total))
            if progress is not None:  # the last task may end after the last tick
                progress(len(pool.finished), total, "letting the management figures catch up")
            # The management figures trail the queue: let them show it empty.
            sampler.wait_for(lambda s: s["messages_ready"] == 0
                             and s["messages_unacknowledged"] == 0, 3)
        finally:
            publisher.stop()
            pool.stop()
            sampler.stop()
            exact.stop()
    samples, ready = sampler.frame(t0=t0), exact.frame(t0=t0)
    df = timing.deliveries(pool.snapshot(), t0=t0, durations=duration)
    peak = ready.loc[ready["ready"].idxmax()] if len(ready) else None
    return BacklogResult(samples, ready, df, {
        "workers_before": workers, "workers_added": add_workers if added_at else 0,
        "prefetch": PREFETCH,
        "add_after_s": add_after_s,
        "added_at_s": round(added_at, 2) if added_at is not None else None,
        "arrivals_per_s": rate, "published": total, "confirmed": len(publisher.result.confirmed),
        "capacity_before_per_s": round(workers / duration, 2),
        "capacity_after_per_s": round((workers + (add_workers if added_at else 0))
                                      / duration, 2),
        "peak_ready": int(peak["ready"]) if peak is not None else None,
        "peak_at_s": round(float(peak["t_s"]), 2) if peak is not None else None,
        "last_task_done_s": round(float(df["end_s"].max()), 2),
        "completed": int(df["finished_t"].notna().sum()), "figures_from": sampler.where()},
        sampler.source)


def management_lag_s(result: BacklogResult, longest_s: float = 3.0) -> float | None:
    """How far the management API's ``messages_ready`` trailed the exact count in this run:
    the shift (in 0.05 s steps) that best lays the exact curve onto the reported one (None
    without a management API: both curves were read over AMQP)."""
    exact, mgmt = result.ready, result.samples
    if result.source != "management" or len(exact) < 2 or len(mgmt) < 2:
        return None
    times, values = exact["t_s"].to_numpy(), exact["ready"].to_numpy()

    def exact_at(t):
        return values[np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(values) - 1)]

    shifts = np.arange(0.0, longest_s + 1e-9, 0.05)
    errors = [np.abs(exact_at(mgmt["t_s"].to_numpy() - d) - mgmt["messages_ready"].to_numpy())
              .mean() for d in shifts]
    return round(float(shifts[int(np.argmin(errors))]), 2)


def lag_sentence(result: BacklogResult) -> str:
    """How late the management API's ready count was in this run, in one sentence."""
    lag = management_lag_s(result)
    if result.source != "management":
        return ("No management API answered, so there is no late count to compare: the ready "
                "count was read over AMQP only, exact at each sample.")
    if lag is None:
        return "Too few samples to tell how late the management API's ready count was."
    return f"The management API's ready count trailed the exact one by about {lag} s."


def plot_backlog(result: BacklogResult):
    """Tasks waiting in the queue over time, with the moment workers were added.

    The solid line is the exact count (AMQP); the dotted ones are what the management API
    reported at the time (``rabbitmqctl list_queues`` would say the same), a little late.
    """
    fig, ax = plt.subplots(figsize=(11, 3.4))
    s = result.summary
    ax.step(result.ready["t_s"], result.ready["ready"], where="post", color="#1f77b4",
            linewidth=2, label="waiting in the queue\n(ready, exact)")
    mgmt = result.samples
    by_api = result.source == "management"
    if by_api:  # over AMQP it is the solid line again
        ax.step(mgmt["t_s"], mgmt["messages_ready"], where="post", color="#1f77b4",
                linestyle=":", label="ready, as the\nmanagement API saw it")
    ax.step(mgmt["t_s"], mgmt["messages_unacknowledged"], where="post", color="#ff7f0e",
            linestyle=":", label="unacknowledged\n(in the workers' hands" +
            ("" if by_api else ",\nby their events") + ")")
    ax.set_title(f"{s['arrivals_per_s']:g} tasks/s arrive; the workers can do "
                 f"{s['capacity_before_per_s']:g}/s, then {s['capacity_after_per_s']:g}/s")
    ax.set_ylabel("messages")
    plots.outside_legend(ax)
    ax.set_xlim(left=0)
    ax.margins(y=0.2)  # room above the curves for the label of the added workers
    if s["added_at_s"] is not None:
        plots.mark_time(ax, s["added_at_s"], f"+{s['workers_added']} workers consuming "
                                             f"(started at {s['add_after_s']:g} s)")
    ax.set_xlabel("seconds since the first publish")
    return finish(fig)


def backlog_table(result: BacklogResult) -> pd.DataFrame:
    """The backlog run's numbers as a one-column table."""
    return value_table(result.summary)


def backlog_report(result: BacklogResult) -> list:
    """What the backlog panel of notebook 04 shows."""
    return [plot_backlog(result), backlog_table(result)]


def backlog_panel(broker=None) -> Panel:
    """Notebook 04: tasks arriving faster than the workers take them; then more workers."""
    return Panel("When every worker is busy, the queue fills up", backlog,
                 backlog_report, {
                     "workers": int_slider("workers at first", 2, 1, 8),
                     "add_workers": int_slider("workers added", 4, 0, 8),
                     "add_after_s": float_slider("added after s", 2.5, 0.0, 10.0, 0.5),
                     "rate": float_slider("tasks arriving per second", 8.0, 1.0, 30.0, 1.0),
                     "seconds": float_slider("arriving for s", 5.0, 1.0, 20.0, 0.5),
                     "duration": float_slider("seconds per task", 0.5, 0.05, 2.0, 0.05),
                     "queue_type": queue_type()},
                 fixed={"broker": broker})
