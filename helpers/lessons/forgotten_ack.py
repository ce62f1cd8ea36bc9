"""Notebook 02, part two: a worker that never acks.

``forgotten_ack`` runs a worker that never acks and samples the queue through the
management API, as ``rabbitmqctl list_queues`` would show it, while a backlog waits, the
worker takes it, more tasks arrive, and the worker is stopped (its messages come back).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from .. import broker as broker_mod
from .. import monitor, plots, producer, topology
from .. import tasks as task_lists
from ..errors import BadInputError, HelpersError
from ..pacing import PacedPublisher
from ..pool import WorkerPool
from .common import Text, finish, value_table
from .panels import Panel, float_slider, int_slider


@dataclass
class ForgottenAckResult:
    """Queue figures over time while a worker never acks, then after it is stopped."""

    samples: pd.DataFrame
    started_s: float
    stopped_s: float
    listing: pd.DataFrame
    rabbitmqctl: str | None
    summary: dict


def list_queues_ctl(broker: broker_mod.Broker, queue: str) -> str | None:
    """``rabbitmqctl list_queues name messages_ready messages_unacknowledged``, our queue's
    line only; None when rabbitmqctl cannot reach this broker (it is not our node)."""
    if not hasattr(broker, "rabbitmqctl"):
        return None
    try:
        proc = broker.rabbitmqctl("-q", "list_queues", "name", "messages_ready",
                                 "messages_unacknowledged", timeout=30)
    except (OSError, ValueError):
        return None
    if proc.returncode != 0:
        return None
    lines = proc.stdout.splitlines()
    keep = [line for line in lines[:1] if line.startswith("name")]
    keep += [line for line in lines if line.split("\t")[0] == queue]
    return "\n".join(keep)


def forgotten_ack(backlog: int = 20, more: int = 15, rate: float = 5.0,
                  duration: float = 0.05, prefetch: int = 0, *, broker=None,
                  progress=None) -> ForgottenAckResult:
    """A backlog waits; a worker that never acks starts; more tasks arrive; it is stopped.

    Parameters
    ----------
    backlog: tasks in the queue before the worker starts.
    more: tasks published afterwards, ``rate`` per second.
    prefetch: 0 (no limit, as in the tutorial) lets the worker take everything; with a
        limit it stops receiving once that many unacked messages sit with it.
    """
    if backlog < 0 or more < 0 or backlog + more == 0 or rate <= 0:
        raise BadInputError("Give at least one task (backlog + more) and a rate above 0.")
    broker = broker or broker_mod.get()
    work = task_lists.equal(backlog + more, duration)
    steps = 6

    def step(n):
        if progress is not None:
            progress(n, steps)

    with topology.scratch_queue(broker.url, "forgotten-ack", dead_letter=False) as spec:
        sampler = monitor.QueueMonitor(broker, spec.name, interval=0.25).start()
        pool = WorkerPool(broker.url, spec, prefetch=prefetch, ack="never")
        try:
            first = producer.publish(broker.url, spec, work[:backlog],
                                     declare_queue=False) if backlog else None
            t0 = first.t_first if first else time.time()
            sampler.wait_for(lambda s: s["messages_ready"] >= backlog, 5)
            time.sleep(0.5)
            step(1)
            pool.start(1)
            started = time.time() - t0
            step(2)
            later = PacedPublisher(broker.url, spec, work[backlog:], every_s=1 / rate)
            later.run()  # one task every 1 / rate seconds, here in this thread
            if later.error:
                raise HelpersError(f"Publishing the later tasks failed ({later.error}): "
                                   "check the broker and run again.")
            held = len(work) if not prefetch else min(prefetch, len(work))
            sampler.wait_for(lambda s: s["messages_unacknowledged"] >= held, 5)
            time.sleep(0.5)
            step(3)
            listing = monitor.list_queues(broker, prefix=spec.name)
            ctl = list_queues_ctl(broker, spec.name)
            done = len(pool.finished)
            step(4)
        finally:
            pool.stop()
        stopped = time.time() - t0
        sampler.wait_for(lambda s: s["messages_unacknowledged"] == 0
                         and s["messages_ready"] == len(work), 6)
        time.sleep(0.5)
        sampler.stop()
        step(steps)
    samples = sampler.frame(t0=t0)
    peak = samples["messages_unacknowledged"].max() if len(samples) else 0
    return ForgottenAckResult(samples, started, stopped, listing, ctl, {
        "published": len(work), "prefetch": prefetch or "unlimited",
        "finished_by_the_worker": done, "acked_by_the_worker": 0,
        "peak_unacknowledged": int(peak),
        "ready_after_stop": int(samples["messages_ready"].iloc[-1]) if len(samples) else None})


def plot_forgotten_ack(result: ForgottenAckResult):
    """Ready and unacknowledged over time; when the worker started and when it was stopped."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    plots.queue_depth(result.samples, ax=ax,
                      title="A worker that never acks: its messages stay unacknowledged")
    for t, text in ((result.started_s, " worker starts"), (result.stopped_s, " worker stopped")):
        ax.axvline(t, color="black", linestyle="--", linewidth=0.8)
        ax.annotate(text, (t, ax.get_ylim()[1]), va="top", fontsize=8)
    ax.set_xlabel("seconds since the first publish (management API figures, about 1 s late)")
    ax.set_xlim(left=0)
    return finish(fig)


def forgotten_ack_report(result: ForgottenAckResult) -> list:
    """What the Run button of the forgotten-ack panel shows."""
    items = [plot_forgotten_ack(result), result.listing]
    if result.rabbitmqctl:
        items.append(Text("$ rabbitmqctl list_queues name messages_ready "
                          "messages_unacknowledged\n" + result.rabbitmqctl))
    items.append(value_table(result.summary))
    return items


def forgotten_ack_panel(broker=None) -> Panel:
    """Notebook 02: a worker that never acks."""
    return Panel("A forgotten ack", forgotten_ack, forgotten_ack_report, {
        "backlog": int_slider("tasks waiting at start", 20, 0, 100),
        "more": int_slider("tasks arriving later", 15, 0, 60),
        "rate": float_slider("arriving per second", 5.0, 1.0, 20.0, 1.0),
        "prefetch": int_slider("prefetch (0 = no limit)", 0, 0, 20)},
        fixed={"broker": broker})
