"""Notebook 02, part two: a worker that never acks.

``forgotten_ack`` runs ``FORGOTTEN``: a worker that never acks takes a waiting backlog, more
tasks arrive, the worker is stopped (its messages come back). It draws and waits on exact
figures: ready over AMQP (a passive declare), unacknowledged from the worker's events. Where
a management API answers, it samples that too, as the management UI (and, for a quorum
queue, ``rabbitmqctl list_queues``) shows it: counts published on a timer it measures.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.broker import node_control
from helpers.broker.model import Broker
from helpers.measure import monitor, plots
from helpers.publish import producer
from helpers.core import topology
from helpers.core import tasks as task_lists
from helpers.errors import BadInputError, HelpersError
from helpers.publish.pacing import PacedPublisher
from helpers.publish.options import PublishOptions
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.worker.config import WorkerConfig
from helpers.pool.pool import WorkerPool
from helpers.lessons.common import Declared, Text, finish, value_table
from helpers.lessons.panels import Panel, declared_run, float_slider, int_slider, queue_type

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
    #: which figures came from where (AMQP and the worker's events)
    sources: str = ""
    #: the management API's figures sampled beside them (None: no management API)
    shown: pd.DataFrame | None = None
    #: when the last task had arrived (seconds since the first publish)
    arrived_s: float | None = None


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


def configured_tick_s(broker: Broker, queue_type: str) -> float | None:
    """How often a quorum queue publishes its counts, as the running node says (seconds): its
    ``rabbit.quorum_tick_interval``, 5 s where unset (a node started before the private config
    set it runs with that). None for a classic queue or a broker not ours to ask."""
    if queue_type != "quorum" or not node_control.can_control(broker):
        return None
    try:
        tick_ms = node_control.get_env(broker, "quorum_tick_interval").get("quorum_tick_interval")
    except HelpersError:
        return None
    return (tick_ms or 5000) / 1000  # RabbitMQ's own default where none is set


def side_by_side(broker: Broker, queue: str, t0: float, exact: dict,
                 tries: int = 5) -> tuple[pd.DataFrame, str | None]:
    """The queue's figures three ways, read back to back: exact (AMQP and the worker's
    events, ``exact``: the last such sample), ``rabbitmqctl`` and the management API (until
    the last two agree with the first, at most ``tries`` times); the table and rabbitmqctl's
    own text. For a quorum queue the last two read the counts the queue last published.
    """
    rows, text = [], None
    first = {"source": "AMQP + worker events", "read_at_s": round(exact["t"] - t0, 2),
             **{k: exact.get(k) for k in FIELDS}}
    want = {k: exact.get(k) for k in FIELDS}
    for _ in range(tries):
        read_ctl = time.time()
        text = list_queues_ctl(broker, queue)
        read_api = time.time()
        api = monitor.queue_stats(broker, queue) or {}
        rows = [first, {"source": "management API", "read_at_s": round(read_api - t0, 2),
                        **{k: api.get(k) for k in FIELDS}}]
        ctl = None
        if text is not None:
            values = text.splitlines()[-1].split("\t")[1:3]
            ctl = dict(zip(FIELDS, (int(v) for v in values)))
            rows.insert(1, {"source": "rabbitmqctl", "read_at_s": round(read_ctl - t0, 2),
                            **ctl})
        if {k: api.get(k) for k in FIELDS} == want and ctl in (None, want):
            break
        time.sleep(0.5)
    return pd.DataFrame(rows).set_index("source"), text


@dataclass(frozen=True)
class Forgotten(Declared):
    """``backlog`` tasks wait, then ``more`` arrive, ``rate`` a second; ``prefetch`` 0 (no
    limit, as in the tutorial) lets the worker take them all, a limit stops it there."""

    backlog: int = 20
    more: int = 15
    rate: float = 5.0
    duration: float = 0.05
    prefetch: int = 0
    queue_type: str = DEFAULT_QUEUE_KIND


#: Notebook 02's forgotten ack, and its panel's defaults.
FORGOTTEN = Forgotten()


def forgotten_ack(plan: Forgotten = FORGOTTEN, *, broker=None,
                  progress=None) -> ForgottenAckResult:
    """Run ``plan``; ``progress`` is told the tasks published, and what the run is doing."""
    backlog, more, rate, prefetch = plan.backlog, plan.more, plan.rate, plan.prefetch
    if backlog < 0 or more < 0 or backlog + more == 0 or rate <= 0:
        raise BadInputError("Give at least one task (backlog + more) and a rate above 0.")
    broker = broker or broker_mod.get()
    work = task_lists.equal(backlog + more, plan.duration)
    say = progress or (lambda done, total, phase=None: None)
    with topology.scratch_queue(broker.url, "forgotten-ack", dead_letter=False,
                                kind=plan.queue_type) as spec:
        pool = WorkerPool(broker.url, spec, WorkerConfig(prefetch=prefetch, ack="never"))
        exact = monitor.QueueMonitor(broker, spec.name, interval=0.1, pool=pool,
                                     source="amqp").start()
        view = monitor.QueueMonitor(broker, spec.name, interval=0.1)
        view = view.start() if view.source == "management" else None
        try:
            say(0, len(work), "publishing the backlog")
            first = producer.publish(broker.url, spec, work[:backlog],
                                     PublishOptions(declare_queue=False)) if backlog else None
            t0 = first.t_first if first else time.time()
            _must(exact.wait_for(lambda s: s["messages_ready"] >= backlog, 10),
                  f"the backlog of {backlog} to be ready")
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
            arrived = time.time() - t0
            if later.error:
                raise HelpersError(f"Publishing the later tasks failed ({later.error}): "
                                   "check the broker and run again.")
            say(len(work), len(work), "reading the queue's figures")
            held = len(work) if not prefetch else min(prefetch, len(work))
            _must(exact.wait_for(lambda s: (s["messages_unacknowledged"] or 0) >= held, 10),
                  f"{held} unacknowledged messages with the worker")
            time.sleep(0.5)
            listing = monitor.list_queues(broker, prefix=spec.name, pool=pool)
            ctl = list_queues_ctl(broker, spec.name)
            if view is not None:
                listing, ctl = side_by_side(broker, spec.name, t0, exact.samples[-1])
            done = len(pool.finished)
            say(len(work), len(work), "stopping the worker: its messages go back to ready")
        finally:
            stopped = time.time() - t0  # not after stop(): its messages are back by then
            pool.stop(ack_grace_s=0)  # it never acks: no ack to wait for
        _must(exact.wait_for(lambda s: s["messages_ready"] == len(work), 10),
              f"all {len(work)} messages ready again")
        if view is not None:  # the management view catches up within a refresh or two
            view.wait_for(lambda s: s["messages_ready"] == len(work), 12)
            view.stop()
        time.sleep(0.3)
        exact.stop()
    samples = exact.frame(t0=t0)
    shown = view.frame(t0=t0) if view is not None else None
    gaps = monitor.refresh_gaps_s(shown) if shown is not None else []
    refresh = float(pd.Series(gaps).median()) if gaps else None
    peak = samples["messages_unacknowledged"].max() if len(samples) else 0
    return ForgottenAckResult(samples, started, stopped, listing, ctl, {
        "published": len(work), "prefetch": prefetch or "unlimited",
        "finished_by_the_worker": done, "acked_by_the_worker": 0,
        "peak_unacknowledged": int(peak),
        "ready_after_stop": int(samples["messages_ready"].iloc[-1]) if len(samples) else None,
        "management_refresh_observed_s": None if refresh is None else round(refresh, 2),
        "management_refresh_gaps_s": gaps,
        "quorum_tick_configured_s": configured_tick_s(broker, plan.queue_type),
        "figures_from": "AMQP and the worker's events"},
        _sources(broker, view is not None), shown, arrived)


def _sources(broker: Broker, with_view: bool) -> str:
    """Which figures came from where, in one sentence."""
    exact = ("messages_ready comes over AMQP (a passive queue.declare, exact when it answers) "
             "and messages_unacknowledged from the worker's own events (delivered, not acked)")
    if not with_view:
        return ("No management API answered (set HELPERS_MANAGEMENT_URL if the broker has "
                f"one): {exact}.")
    return f"The solid lines: {exact}. The dotted ones: the management API at " \
           f"{broker.management_url}, sampled every 0.1 s."


def _must(held: bool, what: str) -> None:
    if not held:
        raise HelpersError(f"The run waited in vain for {what}: the broker or the worker is "
                           "stuck; run it again.")


def refresh_note(summary: dict) -> str:
    """The management API's refresh interval as this run observed it, in a few words."""
    seen = summary.get("management_refresh_observed_s")
    if seen is None:
        return "its refresh interval could not be observed in this run"
    tick = summary.get("quorum_tick_configured_s")
    why = f"; quorum tick set to {tick:g} s here" if tick else ""
    n = len(summary.get("management_refresh_gaps_s") or ())
    return f"changing every {seen:g} s in this run (median of {n} gaps{why})"


def plot_forgotten_ack(result: ForgottenAckResult):
    """Ready and unacknowledged over time, exact (solid) and as the management API showed
    them (dotted); when the worker started and when it was stopped."""
    fig, ax = plt.subplots(figsize=(11, 3.8))
    plots.queue_depth(result.samples, ax=ax,
                      title="A worker that never acks: its messages stay unacknowledged")
    if result.shown is not None:
        colours = [line.get_color() for line in ax.get_lines()[:2]]
        for field, colour, name in zip(FIELDS, colours, ("ready", "unacknowledged")):
            ax.step(result.shown["t_s"], result.shown[field], where="post", color=colour,
                    linestyle=":", linewidth=1.6, label=f"{name}, management API")
        plots.outside_legend(ax)
    ax.set_xlim(0, max(result.samples["t_s"].max(), result.stopped_s) * 1.03)
    for t, text in ((result.started_s, "worker starts"), (result.stopped_s, "worker stopped")):
        plots.mark_time(ax, t, text)
    label = ("seconds since the first publish\nsolid (exact): ready over AMQP, unacknowledged "
             "from the worker's events")
    if result.shown is not None:
        label += f"\ndotted: the management API, {refresh_note(result.summary)}"
    ax.set_xlabel(label)
    return finish(fig)


def answer(result: ForgottenAckResult) -> Text:
    """The answer to notebook 02's forgotten-ack prediction, from this run's exact figures."""
    s, df = result.summary, result.samples
    running = df[(df["t_s"] >= result.started_s) & (df["t_s"] < result.stopped_s)]
    last_running = running.iloc[-1] if len(running) else None
    after = df.iloc[-1]
    text = (f"While the worker ran, it finished {s['finished_by_the_worker']} of "
            f"{s['published']} tasks and acked {s['acked_by_the_worker']}")
    if last_running is not None:
        text += (f"; just before it was stopped the queue had "
                 f"{int(last_running['messages_ready'])} ready and "
                 f"{int(last_running['messages_unacknowledged'] or 0)} unacknowledged")
    text += (f" (peak unacknowledged: {s['peak_unacknowledged']}). After the stop: "
             f"{int(after['messages_ready'])} ready, "
             f"{int(after['messages_unacknowledged'] or 0)} unacknowledged.")
    if s.get("management_refresh_observed_s") is not None:
        text += (f" The management API's figures changed every "
                 f"{s['management_refresh_observed_s']:g} s (median of "
                 f"{len(s['management_refresh_gaps_s'])} gaps in this run).")
    return Text(text)


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
    f = FORGOTTEN
    return Panel("A forgotten ack", declared_run(forgotten_ack, f), forgotten_ack_report, {
        "backlog": int_slider("tasks waiting at start", f.backlog, 0, 100),
        "more": int_slider("tasks arriving later", f.more, 0, 60),
        "rate": float_slider("arriving per second", f.rate, 1.0, 20.0, 1.0),
        "prefetch": int_slider("prefetch (0 = no limit)", f.prefetch, 0, 20),
        "queue_type": queue_type(f.queue_type)},
        fixed={"broker": broker})
