"""Notebook 03, last section: publisher confirms while the broker goes down.

``publish_through_restart`` publishes persistent messages with confirms, in chunks, takes
the broker down mid-way (``durability.take_down``), waits for it, then counts which
messages survived: every confirmed one must, the unconfirmed ones may or may not.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.broker.model import Broker
from helpers.measure import plots
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.core import topology
from helpers.core.connection import connect
from helpers.errors import BadInputError, HelpersError
from helpers.core.tasks import Task
from helpers.lessons.common import Declared, Text, finish, value_table
from helpers.lessons.durability import HOW_OPTIONS, cannot_restart_note, take_down
from helpers.lessons.panels import Panel, declared_run, dropdown, float_slider, int_slider


@dataclass
class ConfirmsResult:
    """What a publisher with confirms saw while the broker went down, and what survived."""

    summary: dict
    chunks: pd.DataFrame
    down_s: float | None
    up_s: float | None
    note: str
    counted_s: float | None = None  #: when the survivors had been counted

def _drain(broker: Broker, name: str) -> list[str]:
    """Take every message out of queue ``name``; return their ids."""
    ids = []
    with connect(broker.url, name=f"drain {name}") as conn:
        channel = conn.channel()
        for method, props, _body in channel.consume(name, auto_ack=True,
                                                    inactivity_timeout=1.0):
            if method is None:
                break
            ids.append(props.message_id)
        channel.cancel()
    return ids


@dataclass(frozen=True)
class Outage(Declared):
    """Persistent messages published with confirms, ``chunk`` per connection, the broker
    taken down ``how`` ``lead_s`` seconds in."""

    lead_s: float = 1.0
    how: str = "crash"
    chunk: int = 5000


#: Notebook 03's confirms run, and its panel's defaults.
OUTAGE = Outage()


def publish_through_restart(plan: Outage = OUTAGE, *, broker=None,
                            progress=None) -> ConfirmsResult:
    """Run ``plan``: stop publishing at the first failure, wait for the broker, then count
    which messages survived."""
    lead_s, how, chunk = plan.lead_s, plan.how, plan.chunk
    if lead_s <= 0 or chunk < 1:
        raise BadInputError("lead_s must be above 0 and chunk at least 1.")
    broker = broker or broker_mod.get()
    # A durable classic queue: what the prose says a confirm means (written to disk).
    spec = topology.unique_spec("confirms", dead_letter=False, kind="classic")
    say = progress or (lambda done, total, phase=None: None)
    topology.setup(broker.url, spec)
    if how == "crash" and broker.can_restart:
        # A node SIGKILLed within about a second of a declaration can come back without the
        # queue (settings.SETTLE_S); real queues are older than that, so let it reach the disk.
        say(0, 0, "letting the queue's declaration reach the disk")
        topology.wait_settled_declarations(time.monotonic())
    restarter, times, note = None, {}, ""

    def go_down():
        times["down"] = time.time()
        try:
            take_down(broker, how)
        finally:
            times["up"] = time.time()

    confirmed, published, nacked, chunks = set(), [], set(), []
    t0 = time.time()
    say(0, 0, "publishing with confirms")
    try:
        if broker.can_restart:
            restarter = threading.Timer(lead_s, go_down)
            restarter.start()
        else:
            note = cannot_restart_note(broker)
        n = 0
        while True:
            if restarter is None and time.time() - t0 > lead_s:
                break
            batch = [Task(f"m{n + i:06d}", 0.0) for i in range(chunk)]
            n += chunk
            try:
                sent = producer.publish(broker.url, spec, batch, PublishOptions(
                    declare_queue=False, timeout=20, name=f"producer {spec.name}"))
            except HelpersError:  # could not even connect: the broker is going down
                break
            published += sent.published
            confirmed |= sent.confirmed
            nacked |= sent.nacked
            chunks.append({"t_s": time.time() - t0, "published": len(published),
                           "confirmed": len(confirmed)})
            say(len(confirmed), len(published), "publishing with confirms")
            if sent.error:
                break
        if restarter is not None:
            say(len(confirmed), len(published), "waiting for the broker to be back")
            restarter.join()
        say(len(confirmed), len(published), "counting the messages that survived")
        survivors = set(_drain(broker, spec.name))
        times["counted"] = time.time()
    finally:
        if restarter is not None:
            restarter.cancel()
            restarter.join()
        topology.discard(broker.url, spec.name)
    unconfirmed = set(published) - confirmed - nacked
    summary = {"published": len(set(published)), "confirmed": len(confirmed),
               "nacked": len(nacked), "unconfirmed": len(unconfirmed),
               "survived": len(survivors), "confirmed_and_lost": len(confirmed - survivors),
               "unconfirmed_but_survived": len(unconfirmed & survivors),
               "unconfirmed_and_lost": len(unconfirmed - survivors),
               "broker": ("restarted" if how == "restart" else "crashed (SIGKILL), started")
               if "down" in times else "not restarted"}
    down = times["down"] - t0 if "down" in times else None
    up = times["up"] - t0 if "up" in times else None
    return ConfirmsResult(summary, pd.DataFrame(chunks), down, up, note,
                          times["counted"] - t0)


def confirms_table(result: ConfirmsResult) -> pd.DataFrame:
    """The summary as a one-column table."""
    return value_table(result.summary, "messages")


def plot_confirms(result: ConfirmsResult):
    """Published and confirmed over time, the outage shaded up to the broker's return, and
    the survivors counted after it; below, published minus confirmed at the end of each
    connection (the messages whose fate the publisher does not know); what survived, as bars."""
    fig = plt.figure(figsize=(12, 4.4))
    grid = fig.add_gridspec(2, 2, width_ratios=[1.6, 1], height_ratios=[2, 1])
    left = fig.add_subplot(grid[0, 0])
    gap = fig.add_subplot(grid[1, 0], sharex=left)
    right = fig.add_subplot(grid[:, 1])
    c = pd.concat([pd.DataFrame([{"t_s": 0.0, "published": 0, "confirmed": 0}]),
                   result.chunks], ignore_index=True)
    s = result.summary
    end = max([c["t_s"].max()] + [t for t in (result.up_s, result.counted_s) if t])
    last = c.iloc[-1]  # carry the totals on to the end of the plot
    c = pd.concat([c, pd.DataFrame([{**last.to_dict(), "t_s": end}])], ignore_index=True)
    left.step(c["t_s"], c["published"], where="post", label="published")
    left.step(c["t_s"], c["confirmed"], where="post", label="confirmed", linestyle="--")
    gap.step(c["t_s"], c["published"] - c["confirmed"], where="post", color="#d95f02",
             label="published − confirmed")
    title = "Publishing with confirms"
    if result.down_s is not None and result.up_s is not None:
        for ax in (left, gap):
            ax.axvspan(result.down_s, result.up_s, color="grey", alpha=0.2,
                       label="broker down" if ax is left else None)
        title += f": broker down at {result.down_s:.1f} s, back at {result.up_s:.1f} s"
    if result.counted_s is not None:
        left.plot([result.counted_s], [s["survived"]], marker="o", color="#7570b3",
                  linestyle="none", label="survived (counted)")
    left.set_xlim(0, end * 1.03)
    left.tick_params(labelbottom=False)
    left.set_ylabel("messages")
    left.set_title(title)
    plots.outside_legend(left)
    gap.set_ylim(0, max(1, int(s["unconfirmed"]) + s["nacked"]) * 1.3)
    gap.set_ylabel("not confirmed")
    gap.set_xlabel("seconds since publishing began (a point per connection, at its end)")
    plots.outside_legend(gap)
    names = ["confirmed", "unconfirmed", "survived", "confirmed_and_lost"]
    bars = right.bar(["confirmed", "un-\nconfirmed", "survived", "confirmed\nbut lost"],
                     [s[k] for k in names], color=["#1b9e77", "#d95f02", "#7570b3", "#e7298a"])
    for bar, key in zip(bars, names):
        right.annotate(str(s[key]), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                       ha="center", va="bottom", fontsize=plots.LABEL_SIZE)
    right.margins(y=0.15)
    right.set_title(f"After the broker {s['broker']}" if result.up_s is not None
                    else "Not restarted")
    return finish(fig)


def answer(result: ConfirmsResult) -> Text:
    """The answer to the notebook's prediction, from this run's numbers."""
    s = result.summary
    if result.up_s is None:
        return Text(f"The broker was not taken down: {s['confirmed']} of {s['published']} "
                    "confirmed, nothing to lose.")
    return Text(f"Of {s['published']} published, {s['confirmed']} were confirmed and "
                f"{s['confirmed_and_lost']} of those were lost; {s['unconfirmed']} were in "
                f"flight without a confirm when the broker went down, and "
                f"{s['unconfirmed_but_survived']} of them survived anyway "
                f"({s['unconfirmed_and_lost']} did not).")


def confirms_report(result: ConfirmsResult) -> list:
    """What the Run button of the confirms panel shows."""
    items = [plot_confirms(result), confirms_table(result)]
    return items + [Text(result.note)] if result.note else items


def confirms_panel(broker=None) -> Panel:
    """Notebook 03: publish with confirms while the broker goes down."""
    return Panel("Publisher confirms while the broker goes down",
                 declared_run(publish_through_restart, OUTAGE), confirms_report, {
                     "lead_s": float_slider("publish for s before", OUTAGE.lead_s, 0.2, 5.0, 0.1),
                     "how": dropdown("how the broker goes down", HOW_OPTIONS, OUTAGE.how),
                     "chunk": int_slider("messages per connection", OUTAGE.chunk, 10, 20000,
                                         10)},
                 fixed={"broker": broker}, unit="messages confirmed")
