"""Notebook 02, part two: a worker that never acks.

``forgotten_ack`` runs a worker that never acks and samples the queue, as ``rabbitmqctl
list_queues`` would show it (through the management API, or over AMQP and the worker's own
events where none answers: ``helpers.measure.monitor``), while a backlog waits, the worker takes it,
more tasks arrive, and the worker is stopped (its messages come back).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.broker.model import Broker
from helpers.measure import monitor, plots
from helpers.publish import producer
from helpers import settings
from helpers.core import topology
from helpers.core import tasks as task_lists
from helpers.errors import BadInputError, HelpersError
from helpers.publish.pacing import PacedPublisher
from helpers.publish.options import PublishOptions
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.worker.config import WorkerConfig
from helpers.pool.pool import WorkerPool
from helpers.lessons.common import Text, finish, value_table
from helpers.lessons.panels import Panel, float_slider, int_slider, queue_type

#: The two figures of a queue that the lesson compares.
FIELDS = ("messages_ready", "messages_unacknowledged")


@dataclass
class ForgottenAckResult:
    """Queue figures over time while a worker never acks, then after it is stopped."""

    samples: pd.DataFrame
    started_s: float
    stopped_s: float
    listing: pd.DataFrame
    rabbitmqctl: str | None
    summary: dict
    #: which figures came from where (management API, or AMQP and the worker's events)
    sources: str = ""


def list_queues_ctl(broker: Broker, queue: str) -> str | None:
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


def stats_interval_s(broker: Broker) -> float | None:
    """How often the broker refreshes the statistics the management API serves (seconds):
    the private node's setting, else None (RabbitMQ's default is 5 s)."""
    if hasattr(broker, "rabbitmqctl"):  # a private node: we wrote its configuration
        return settings.STATS_INTERVAL_MS / 1000
    return None


def side_by_side(broker: Broker, queue: str, t0: float,
                 tries: int = 5) -> tuple[pd.DataFrame, str | None]:
    """The queue's figures from ``rabbitmqctl`` and from the management API, read back to
    back (until they agree, at most ``tries`` times); the table and rabbitmqctl's own text.

    rabbitmqctl asks the queue itself; the management API serves the statistics the queue
    last sent it, so while the figures move the two can differ by what changed since.
    """
    rows, text = [], None
    for _ in range(tries):
        read_ctl = time.time()
        text = list_queues_ctl(broker, queue)
        read_api = time.time()
        api = monitor.queue_stats(broker, queue) or {}
        rows = [{"source": "management API", "read_at_s": round(read_api - t0, 2),
                 **{k: api.get(k) for k in FIELDS}}]
        if text is None:
            break
        values = text.splitlines()[-1].split("\t")[1:3]
        ctl = dict(zip(FIELDS, (int(v) for v in values)))
        rows.insert(0, {"source": "rabbitmqctl", "read_at_s": round(read_ctl - t0, 2), **ctl})
        if ctl == {k: api.get(k) for k in FIELDS}:
            break
        time.sleep(0.3)
    return pd.DataFrame(rows).set_index("source"), text


def forgotten_ack(backlog: int = 20, more: int = 15, rate: float = 5.0,
                  duration: float = 0.05, prefetch: int = 0,
                  queue_type: str = DEFAULT_QUEUE_KIND, *, broker=None,
                  progress=None) -> ForgottenAckResult:
    """A backlog waits; a worker that never acks starts; more tasks arrive; it is stopped.

    Parameters
    ----------
    backlog: tasks in the queue before the worker starts.
    more: tasks published afterwards, ``rate`` per second.
    prefetch: 0 (no limit, as in the tutorial) lets the worker take everything; with a
        limit it stops receiving once that many unacked messages sit with it.
    progress: told the tasks published so far, and what the run is doing meanwhile.
    """
    if backlog < 0 or more < 0 or backlog + more == 0 or rate <= 0:
        raise BadInputError("Give at least one task (backlog + more) and a rate above 0.")
    broker = broker or broker_mod.get()
    work = task_lists.equal(backlog + more, duration)
    say = progress or (lambda done, total, phase=None: None)

    with topology.scratch_queue(broker.url, "forgotten-ack", dead_letter=False,
                                kind=queue_type) as spec:
        pool = WorkerPool(broker.url, spec, WorkerConfig(prefetch=prefetch, ack="never"))
        sampler = monitor.QueueMonitor(broker, spec.name, interval=0.25, pool=pool).start()
        try:
            say(0, len(work), "publishing the backlog")
            first = producer.publish(broker.url, spec, work[:backlog],
                                     PublishOptions(declare_queue=False)) if backlog else None
            t0 = first.t_first if first else time.time()
            sampler.wait_for(lambda s: s["messages_ready"] >= backlog, 5)
            time.sleep(0.5)
            say(backlog, len(work), "starting the worker that never acks")
            pool.start(1)
            started = time.time() - t0
            later = PacedPublisher(broker.url, spec, work[backlog:],
                                   PublishOptions(batch=1, pace_s=1 / rate))
            later.start()  # one task every 1 / rate seconds, in its own thread
            while later.is_alive():
                say(backlog + len(later.result.published), len(work), "more tasks arriving")
                later.join(0.1)
            if later.error:
                raise HelpersError(f"Publishing the later tasks failed ({later.error}): "
                                   "check the broker and run again.")
            say(len(work), len(work), "reading the queue's figures")
            held = len(work) if not prefetch else min(prefetch, len(work))
            sampler.wait_for(lambda s: s["messages_unacknowledged"] >= held, 5)
            time.sleep(0.5)
            if sampler.source == "management":
                listing, ctl = side_by_side(broker, spec.name, t0)
            else:  # no management API: the figures over AMQP and the worker's events
                listing = monitor.list_queues(broker, prefix=spec.name, pool=pool)
                ctl = list_queues_ctl(broker, spec.name)
            done = len(pool.finished)
            say(len(work), len(work), "stopping the worker: its messages go back to ready")
        finally:
            pool.stop()
        stopped = time.time() - t0
        sampler.wait_for(lambda s: s["messages_unacknowledged"] == 0
                         and s["messages_ready"] == len(work), 6)
        time.sleep(0.5)
        sampler.stop()
    samples = sampler.frame(t0=t0)
    peak = samples["messages_unacknowledged"].max() if len(samples) else 0
    return ForgottenAckResult(samples, started, stopped, listing, ctl, {
        "published": len(work), "prefetch": prefetch or "unlimited",
        "finished_by_the_worker": done, "acked_by_the_worker": 0,
        "peak_unacknowledged": int(peak),
        "ready_after_stop": int(samples["messages_ready"].iloc[-1]) if len(samples) else None,
        "stats_interval_s": stats_interval_s(broker),
        "figures_from": sampler.source}, sampler.where())


def refresh_note(interval_s: float | None) -> str:
    """How stale the management API's figures can be, in a few words."""
    if interval_s is None:
        return "refreshed every few seconds (RabbitMQ's default: 5 s)"
    return f"refreshed every {interval_s:g} s"


def plot_forgotten_ack(result: ForgottenAckResult):
    """Ready and unacknowledged over time; when the worker started and when it was stopped."""
    fig, ax = plt.subplots(figsize=(11, 3.2))
    plots.queue_depth(result.samples, ax=ax,
                      title="A worker that never acks: its messages stay unacknowledged")
    ax.set_xlim(0, max(result.samples["t_s"].max(), result.stopped_s) * 1.03)
    for t, text in ((result.started_s, "worker starts"), (result.stopped_s, "worker stopped")):
        plots.mark_time(ax, t, text)
    if result.summary["figures_from"] == "management":
        where = "management API figures, " + refresh_note(result.summary.get("stats_interval_s"))
    else:
        where = "ready over AMQP, unacknowledged from the worker's events"
    ax.set_xlabel(f"seconds since the first publish ({where})")
    return finish(fig)


def forgotten_ack_report(result: ForgottenAckResult) -> list:
    """What the Run button of the forgotten-ack panel shows."""
    items = [plot_forgotten_ack(result), Text(result.sources), result.listing]
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
        "prefetch": int_slider("prefetch (0 = no limit)", 0, 0, 20),
        "queue_type": queue_type()},
        fixed={"broker": broker})
