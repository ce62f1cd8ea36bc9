"""Notebook 04, last section: when every worker is busy, the queue fills up.

Tasks arrive at a steady rate (``helpers.publish.pacing``) faster than the workers take them; the
queue's ready count grows until more workers join and drain it. What is drawn is exact: the
ready count from passive declares over AMQP (``ReadySampler``), the unacknowledged count from
the workers' own events (delivered, not yet acked). Beside them, where a management API
answers, what it showed at the time (``QueueMonitor``): a quorum queue publishes its counts
on its own tick (5 s by default), so those figures move in steps; ``refresh_s`` measures the
steps of the run, ``management_lag_s`` how late they were, and on a private node one
``rabbitmqctl list_queues`` asked mid-run and one asked once every task is done are set
against the exact count of those moments.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

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
from helpers.lessons.common import Declared, finish, value_table
from helpers.lessons.forgotten_ack import list_queues_ctl
from helpers.lessons.panels import Panel, declared_run, float_slider, int_slider, queue_type
from helpers.lessons.mgmt_lag import (held_by_workers, lag_sentence, management_lag_s,  # noqa: F401
                                      refresh_interval_s, refresh_s)

#: Every worker of this lesson takes one task at a time, so waiting tasks stay in the queue.
PREFETCH = 1
#: How long a run waits, after its last task, for the management figures to show the queue
#: empty: two quorum-queue ticks of the default 5 s, and some.
CATCH_UP_S = 12.0


@dataclass
class BacklogResult:
    """Queue depth while tasks arrive faster than the workers can take them."""

    samples: pd.DataFrame
    ready: pd.DataFrame
    deliveries: pd.DataFrame
    summary: dict
    #: where ``samples`` came from: ``management`` (the API) or ``amqp`` (and the events)
    source: str = "management"
    #: ``rabbitmqctl list_queues`` asked mid-run and at the end: asked_s, answered_s, ready,
    #: unacked each (none where rabbitmqctl cannot reach the broker)
    ctl: list = field(default_factory=list)
    #: the first publish (wall clock): every ``t_s`` counts from here
    t0: float = 0.0


def _ask_ctl(broker, queue: str, t0: float, into: list) -> None:
    """``rabbitmqctl list_queues`` for ``queue``, timed from ``t0``, appended to ``into``."""
    asked = time.time()
    text = list_queues_ctl(broker, queue)
    if text is None or len(text.splitlines()) < 2:
        return
    ready, held = (int(v) for v in text.splitlines()[-1].split("\t")[1:3])
    into.append({"asked_s": round(asked - t0, 2), "answered_s": round(time.time() - t0, 2),
                 "ready": ready, "unacked": held})


@dataclass(frozen=True)
class Arrivals(Declared):
    """Tasks arrive at ``rate`` per second for ``seconds``; ``add_workers`` join
    ``add_after_s`` after the first publish (0, or ``add_workers=0``: nobody joins)."""

    workers: int = 2
    add_workers: int = 4
    rate: float = 8.0
    seconds: float = 5.0
    duration: float = 0.5
    add_after_s: float = 2.5
    queue_type: str = DEFAULT_QUEUE_KIND


#: Notebook 04's backlog run, and its panel's defaults.
BACKLOG = Arrivals()


def backlog(plan: Arrivals = BACKLOG, *, broker=None, progress=None) -> BacklogResult:
    """Run ``plan``. Workers take one task at a time (prefetch 1), so waiting tasks stay in
    the queue where ``messages_ready`` counts them."""
    workers, add_workers, rate, seconds = plan.workers, plan.add_workers, plan.rate, plan.seconds
    duration, add_after_s = plan.duration, plan.add_after_s
    validate(workers, 1, [None])
    if rate <= 0 or seconds <= 0:
        raise BadInputError(f"rate and seconds must be above 0 (got {rate}, {seconds}).")
    broker = broker or broker_mod.get()
    work = task_lists.equal(max(1, round(rate * seconds)), duration)
    total = len(work)
    with topology.scratch_queue(broker.url, "backlog", kind=plan.queue_type) as spec:
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
            added_at, ctl, can_ask = None, [], hasattr(broker, "rabbitmqctl")
            # a private node: rabbitmqctl list_queues, asked as the workers are added, and
            # again once every task is done (the exact count then stays 0 while it answers)
            asking = [threading.Timer(max(0.0, t0 + add_after_s - time.time()), _ask_ctl,
                                      (broker, spec.name, t0, ctl)),
                      threading.Timer(0, _ask_ctl, (broker, spec.name, t0, ctl))]
            if can_ask:
                asking[0].start()
            if add_workers and add_after_s > 0:
                done_early = pool.wait_for(lambda p: len(p.finished) >= total,
                                           max(0.0, t0 + add_after_s - time.time()))
                if not done_early:
                    joined = pool.add(add_workers)
                    added_at = min(h.ready_t for h in joined) - t0  # consuming from here
            budget = seconds + total * duration / workers + 30
            pool.wait_for(lambda p: len(p.finished) >= total, budget,
                          progress=lambda p: progress and progress(len(p.finished), total))
            asking[0].cancel()  # not asked yet (every task done early): not mid-run
            if asking[0].ident:  # one at a time: each starts an Erlang VM
                asking[0].join(timeout=30)
            if can_ask:
                asking[1].start()
            if progress is not None:  # the last task may end after the last tick
                progress(len(pool.finished), total, "letting the management figures catch up")
            # The management figures trail the queue (a quorum queue's tick is 5 s by
            # default): let them show it empty, so the figure shows how late they were.
            sampler.wait_for(lambda s: s["messages_ready"] == 0
                             and s["messages_unacknowledged"] == 0, CATCH_UP_S)
        finally:
            for ask in asking:
                ask.cancel()  # not asked yet (an early end): not at all
                if ask.is_alive():
                    ask.join(timeout=30)
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
        "completed": int(df["finished_t"].notna().sum())}, sampler.source, ctl, t0)


def growth_answer(result: BacklogResult) -> str:
    """The backlog's prediction answered: how fast the exact ready count grew until the
    added workers consumed, against arrivals minus what the first workers can do, and when
    the management API's ready count first moved."""
    s, ready = result.summary, result.ready
    end = s["added_at_s"] if s["added_at_s"] is not None else float(ready["t_s"].max())
    part = ready[(ready["t_s"] >= 0) & (ready["t_s"] <= end)]
    slope = float(np.polyfit(part["t_s"], part["ready"], 1)[0]) if len(part) > 2 else np.nan
    gap = s["arrivals_per_s"] - s["capacity_before_per_s"]
    moved = refresh_s(result)
    return (f"Until the added workers consumed ({end:.2f} s) the queue grew by {slope:.1f} "
            f"tasks/s (a line fitted to the exact count), against {s['arrivals_per_s']:g} "
            f"arriving - {s['capacity_before_per_s']:g} done = {gap:g} per second. "
            + (f"The management API's figures first moved at {moved[0]:g} s."
               if moved else "The management API's figures never moved in this run."
               if result.source == "management" else ""))


def plot_backlog(result: BacklogResult):
    """Tasks waiting in the queue and in the workers' hands over time, exactly (solid), with
    what the management API showed at the time (dotted, its refresh observed in the run)."""
    fig, ax = plt.subplots(figsize=(11, 3.4))
    s = result.summary
    ax.step(result.ready["t_s"], result.ready["ready"], where="post", color="#1f77b4",
            linewidth=2, label="waiting in the queue\n(ready, AMQP, exact)")
    held = held_by_workers(result)
    ax.step(held["t_s"], held["unacked"], where="post", color="#ff7f0e", linewidth=2,
            label="in the workers' hands\n(unacked, their events)")
    if result.source == "management":
        mgmt, every = result.samples, refresh_interval_s(result)
        ax.step(mgmt["t_s"], mgmt["messages_ready"], where="post", color="#1f77b4",
                linestyle=":", label="ready, management API")
        ax.step(mgmt["t_s"], mgmt["messages_unacknowledged"], where="post", color="#ff7f0e",
                linestyle=":", label="unacked, management API\n" + (
                    f"(changed every {every:g} s here)" if every is not None
                    else f"(changed {len(refresh_s(result))} times here)"))
    ax.set_title(f"{s['arrivals_per_s']:g} tasks/s arrive; the workers can do "
                 f"{s['capacity_before_per_s']:g}/s, then {s['capacity_after_per_s']:g}/s")
    ax.set_ylabel("messages")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    plots.outside_legend(ax)
    ax.set_xlim(left=0)
    ax.margins(y=0.2)  # room above the curves for the label of the added workers
    ax.set_ylim(bottom=-0.5)  # counts: nothing below zero to show
    if s["added_at_s"] is not None:
        plots.mark_time(ax, s["added_at_s"], f"+{s['workers_added']} workers consuming "
                                             f"(started at {s['add_after_s']:g} s)")
    ax.set_xlabel("seconds since the first publish")
    return finish(fig)


def backlog_table(result: BacklogResult) -> pd.DataFrame:
    """The backlog run's numbers as a one-column table, ending with where each line of the
    figure came from."""
    by_api = result.source == "management"
    every, lag = refresh_interval_s(result), management_lag_s(result)
    if not by_api:
        every = lag = "none: no management API answered"
    elif every is None:
        every = "none: its figures changed fewer than twice in this run"
    if lag is None:
        lag = "none: too few samples to compare"
    elif not isinstance(lag, str) and not np.isfinite(lag):
        lag = "more than the 12 s searched"
    return value_table({**result.summary,
                        "management_changes_every_s": every, "management_lag_s": lag,
                        "solid lines from": "ready: passive queue.declare over AMQP every "
                        "0.1 s; unacked: the workers' events",
                        "dotted lines from": "the management API, sampled every 0.2 s"
                        if by_api else "none (no management API answered)"})


def backlog_report(result: BacklogResult) -> list:
    """What the backlog panel of notebook 04 shows."""
    return [plot_backlog(result), backlog_table(result)]


def backlog_panel(broker=None) -> Panel:
    """Notebook 04: tasks arriving faster than the workers take them; then more workers."""
    b = BACKLOG
    return Panel("When every worker is busy, the queue fills up",
                 declared_run(backlog, BACKLOG), backlog_report, {
                     "workers": int_slider("workers at first", b.workers, 1, 8),
                     "add_workers": int_slider("workers added", b.add_workers, 0, 8),
                     "add_after_s": float_slider("added after s", b.add_after_s, 0.0, 10.0,
                                                 0.5),
                     "rate": float_slider("tasks arriving per second", b.rate, 1.0, 30.0, 1.0),
                     "seconds": float_slider("arriving for s", b.seconds, 1.0, 20.0, 0.5),
                     "duration": float_slider("seconds per task", b.duration, 0.05, 2.0, 0.05),
                     "queue_type": queue_type(b.queue_type)},
                 fixed={"broker": broker})
