"""Experiments of notebook 03: what survives a broker restart, a queue redeclared with other
arguments, and publisher confirms while the broker goes down.

Restarts go through ``Broker.restart()`` (clean stop, start) or ``Broker.crash()`` (SIGKILL,
start); on a broker that cannot be restarted from here (``can_restart`` is False) each
function still runs what it can and says in its ``note`` why the restart was skipped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from . import broker as broker_mod
from . import producer, topology
from .errors import BadInputError, HelpersError, TopologyError
from .experiments import Text, finish
from .tasks import Task

#: The four set-ups of the survival table: label, queue options, persistent messages.
CASES = (
    ("non-durable queue", {"durable": False}, True),
    ("durable queue, transient messages", {"durable": True}, False),
    ("durable queue, persistent messages", {"durable": True}, True),
    ("quorum queue", {"kind": "quorum"}, True),
)
HOW = ("restart", "crash")


def cannot_restart_note(found: broker_mod.Broker) -> str:
    """The one sentence a notebook shows when this broker is not ours to restart."""
    return (f"This {found.kind} broker cannot be restarted from here (unset AMQP_URL to use "
            "a private node), so the restart is skipped and only the counts before it are "
            "shown.")


def version_note(found: broker_mod.Broker) -> str:
    """What this broker's version means for the four cases."""
    version = found.version_tuple()
    text = f"This broker runs RabbitMQ {found.version()}. "
    if version >= (4, 3):
        return text + ("From 4.3 on, RabbitMQ refuses non-durable queues that are not "
                       "exclusive unless its configuration allows them, so the first case "
                       "is expected to be refused.")
    if version >= (4, 0):
        return text + ("RabbitMQ 4 marks non-durable, non-exclusive queues as deprecated but "
                       "still accepts them (4.3 will refuse them by default).")
    return text + ("RabbitMQ 3 accepts non-durable queues; they simply do not come back "
                   "after a restart. (4.3 and later refuse them by default.)")


def _declare(found: broker_mod.Broker, spec: topology.QueueSpec) -> None:
    import pika.exceptions as pe

    with broker_mod.connect(found.url, name=f"declare {spec.name}") as conn:
        try:
            topology.declare(conn.channel(), spec)
        except pe.ChannelClosedByBroker as exc:  # a refusal topology does not translate
            raise TopologyError(f"The broker refused queue '{spec.name}' "
                                f"({exc.reply_code}: {exc.reply_text}).") from exc


def count(found: broker_mod.Broker, name: str) -> int | None:
    """Messages ready in queue ``name``, or None when the queue does not exist."""
    import pika.exceptions as pe

    with broker_mod.connect(found.url, name=f"count {name}") as conn:
        try:
            return topology.message_count(conn.channel(), name)
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise


def _delete(found: broker_mod.Broker, names) -> None:
    with contextlib.suppress(HelpersError):
        with broker_mod.connect(found.url, name="cleanup") as conn:
            channel = conn.channel()
            for name in names:
                channel.queue_delete(queue=name)


def take_down(found: broker_mod.Broker, how: str) -> float:
    """Restart (``restart``) or crash-and-start (``crash``) the broker; return seconds taken."""
    if how not in HOW:
        raise BadInputError(f"how must be one of {', '.join(HOW)} (got {how!r}).")
    started = time.monotonic()
    getattr(found, how)()
    return time.monotonic() - started


@dataclass
class SurvivalResult:
    """Messages in each of the four queues before and after one restart."""

    table: pd.DataFrame
    restarted: bool
    how: str
    restart_s: float | None
    note: str

    def headline(self) -> str:
        """One sentence: how the broker went down and how long it took, or why it did not."""
        if not self.restarted:
            return self.note
        what = "restarted cleanly" if self.how == "restart" else "crashed (SIGKILL) and started"
        return f"The broker was {what} in {self.restart_s:.1f} s."


def survival(messages: int = 100, how: str = "restart", *, broker=None,
             progress=None) -> SurvivalResult:
    """Publish ``messages`` to each of the four set-ups, restart the broker once, count."""
    if messages < 1:
        raise BadInputError(f"messages must be at least 1 (got {messages}).")
    found = broker or broker_mod.get()
    tag = uuid.uuid4().hex[:6]
    rows, names = [], []
    step = progress or (lambda done, total: None)
    try:
        for n, (label, options, persistent) in enumerate(CASES):
            spec = topology.QueueSpec(f"wq-survive-{n + 1}-{tag}", dead_letter=False, **options)
            row = {"case": label, "queue": spec.name, "published": messages}
            try:
                _declare(found, spec)
            except TopologyError as exc:
                rows.append({**row, "confirmed": 0, "before": "refused", "after": "-",
                             "survived": "-", "why": str(exc)})
                continue
            names.append(spec.name)
            sent = producer.publish(found.url, spec, [Task(f"m{i:05d}", 0.0)
                                                      for i in range(messages)],
                                    persistent=persistent, declare_queue=False)
            rows.append({**row, "confirmed": len(sent.confirmed),
                         "before": count(found, spec.name)})
            step(n + 1, 6)
        restart_s, note = None, ""
        if found.can_restart:
            restart_s = take_down(found, how)
        else:
            note = cannot_restart_note(found)
        step(5, 6)
        for row in rows:
            if row["before"] == "refused":
                continue
            after = count(found, row["queue"]) if restart_s is not None else None
            row["after"] = ("queue gone" if after is None and restart_s is not None
                            else after if after is not None else "-")
            row["survived"] = (f"{after}/{row['confirmed']}" if isinstance(after, int)
                               else "0 (no queue)" if restart_s is not None else "-")
        step(6, 6)
    finally:
        _delete(found, names)
    table = pd.DataFrame(rows).set_index("case").drop(columns=["queue"])
    return SurvivalResult(table, restart_s is not None, how, restart_s, note)


def plot_survival(result: SurvivalResult):
    """Messages in each queue before and after the restart, side by side."""
    t = result.table
    number = lambda v: v if isinstance(v, (int, float)) else 0  # noqa: E731
    before = [number(v) for v in t["before"]]
    after = [number(v) for v in t["after"]]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    x = range(len(t))
    ax.bar([i - 0.2 for i in x], before, width=0.4, label="before", color="#7570b3")
    ax.bar([i + 0.2 for i in x], after, width=0.4, color="#1b9e77",
           label="after the restart" if result.restarted else "after (not restarted)")
    for i, (b, a) in enumerate(zip(t["before"], t["after"])):
        for dx, value in ((-0.2, b), (0.2, a)):
            ax.annotate(str(value), (i + dx, number(value)), ha="center", va="bottom",
                        fontsize=8)
    ax.set_xticks(list(x), [label.replace(", ", ",\n") for label in t.index], fontsize=8)
    ax.set_ylabel("messages in the queue")
    ax.margins(y=0.3)
    ax.set_title("What survives a broker " + ("restart" if result.how == "restart"
                                              else "crash"))
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return finish(fig)


def survival_report(result: SurvivalResult) -> list:
    """What the Run button of the survival panel shows."""
    return [plot_survival(result), Text(result.headline()), result.table]


# -- redeclaring ---------------------------------------------------------------------------

#: Ways a newer version of an application might redeclare an existing durable classic queue.
CHANGES = (
    ("durable -> not durable", {"durable": False}),
    ("classic -> quorum", {"kind": "quorum"}),
)


def redeclare(*, broker=None) -> pd.DataFrame:
    """Declare a durable classic queue, then the same name with other arguments; then the
    usual way out, a new name. One row per attempt with what the broker answered."""
    found = broker or broker_mod.get()
    base = topology.QueueSpec(f"wq-orders-{uuid.uuid4().hex[:6]}", dead_letter=False)
    renamed = dataclasses.replace(base, name=base.name + "-v2", kind="quorum")
    rows = []
    try:
        _declare(found, base)
        rows.append({"declare": f"{base.name} (durable classic)", "answer": "ok"})
        for label, change in CHANGES:
            try:
                _declare(found, dataclasses.replace(base, **change))
                answer = "ok (accepted!)"
            except TopologyError as exc:
                answer = str(exc)
            rows.append({"declare": f"{base.name} again, {label}", "answer": answer})
        _declare(found, renamed)
        rows.append({"declare": f"{renamed.name} (a new name, quorum)", "answer": "ok"})
    finally:
        _delete(found, [base.name, renamed.name])
    return pd.DataFrame(rows)


# -- publisher confirms through a restart ---------------------------------------------------

@dataclass
class ConfirmsResult:
    """What a publisher with confirms saw while the broker went down, and what survived."""

    summary: dict
    chunks: pd.DataFrame
    down_s: float | None
    up_s: float | None
    note: str


def _drain(found: broker_mod.Broker, name: str) -> list[str]:
    """Take every message out of queue ``name``; return their ids."""
    ids = []
    with broker_mod.connect(found.url, name=f"drain {name}") as conn:
        channel = conn.channel()
        for method, props, _body in channel.consume(name, auto_ack=True,
                                                    inactivity_timeout=1.0):
            if method is None:
                break
            ids.append(props.message_id)
        channel.cancel()
    return ids


def publish_through_restart(lead_s: float = 1.0, how: str = "crash", chunk: int = 5000, *,
                            broker=None, progress=None) -> ConfirmsResult:
    """Publish persistent messages with confirms, in chunks, and take the broker down
    ``lead_s`` seconds in; stop publishing at the first failure, wait for the broker,
    then count which messages survived.
    """
    if lead_s <= 0 or chunk < 1:
        raise BadInputError("lead_s must be above 0 and chunk at least 1.")
    found = broker or broker_mod.get()
    spec = topology.QueueSpec(f"wq-confirms-{uuid.uuid4().hex[:6]}", dead_letter=False)
    step = progress or (lambda done, total: None)
    _declare(found, spec)
    restarter, times, note = None, {}, ""

    def go_down():
        times["down"] = time.time()
        try:
            take_down(found, how)
        finally:
            times["up"] = time.time()

    confirmed, published, nacked, chunks = set(), [], set(), []
    t0 = time.time()
    try:
        if found.can_restart:
            restarter = threading.Timer(lead_s, go_down)
            restarter.start()
        else:
            note = cannot_restart_note(found)
        n = 0
        while True:
            if restarter is None and time.time() - t0 > lead_s:
                break
            batch = [Task(f"m{n + i:06d}", 0.0) for i in range(chunk)]
            n += chunk
            try:
                sent = producer.publish(found.url, spec, batch, declare_queue=False, timeout=20,
                                        name=f"producer {spec.name}")
            except HelpersError:  # could not even connect: the broker is going down
                break
            published += sent.published
            confirmed |= sent.confirmed
            nacked |= sent.nacked
            chunks.append({"t_s": time.time() - t0, "published": len(published),
                           "confirmed": len(confirmed)})
            step(1, 3)
            if sent.error:
                break
        if restarter is not None:
            restarter.join()
        step(2, 3)
        survivors = set(_drain(found, spec.name))
    finally:
        if restarter is not None:
            restarter.cancel()
            restarter.join()
        _delete(found, [spec.name])
    step(3, 3)
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
    return ConfirmsResult(summary, pd.DataFrame(chunks), down, up, note)


def confirms_table(result: ConfirmsResult) -> pd.DataFrame:
    """The summary as a one-column table."""
    return pd.DataFrame({"messages": pd.Series(result.summary, dtype=object)})


def plot_confirms(result: ConfirmsResult):
    """Published and confirmed over time with the outage shaded; what survived, as bars."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2),
                                      gridspec_kw={"width_ratios": [1.6, 1]})
    c = pd.concat([pd.DataFrame([{"t_s": 0.0, "published": 0, "confirmed": 0}]),
                   result.chunks], ignore_index=True)
    left.step(c["t_s"], c["published"], where="post", label="published")
    left.step(c["t_s"], c["confirmed"], where="post", label="confirmed")
    title = "Publishing with confirms"
    if result.down_s is not None:
        end = max(c["t_s"].max(), result.down_s) + 0.5
        left.axvspan(result.down_s, end, color="grey", alpha=0.2, label="broker down")
        left.set_xlim(0, end)
        title += f" (broker down at {result.down_s:.1f} s, back at {result.up_s:.1f} s)"
    left.set_xlabel("seconds")
    left.set_ylabel("messages")
    left.set_title(title, fontsize=10)
    left.legend(fontsize=8, loc="upper left")
    s = result.summary
    names = ["confirmed", "unconfirmed", "survived", "confirmed_and_lost"]
    bars = right.bar(["confirmed", "unconfirmed", "survived", "confirmed\nbut lost"],
                     [s[k] for k in names], color=["#1b9e77", "#d95f02", "#7570b3", "#e7298a"])
    for bar, key in zip(bars, names):
        right.annotate(str(s[key]), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                       ha="center", va="bottom", fontsize=8)
    right.margins(y=0.15)
    right.set_title("After the restart")
    return finish(fig)


def confirms_report(result: ConfirmsResult) -> list:
    """What the Run button of the confirms panel shows."""
    items = [plot_confirms(result), confirms_table(result)]
    return items + [Text(result.note)] if result.note else items
