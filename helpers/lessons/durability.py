"""Notebook 03, durability: what survives a broker restart, and a queue redeclared with
other arguments. Publisher confirms while the broker goes down, the notebook's last section, are in
``helpers.lessons.durability_confirms``.

Restarts go through ``Broker.restart()`` (clean stop, start) or ``Broker.crash()`` (SIGKILL,
start); on a broker that cannot be restarted from here (``can_restart`` is False) each
function still runs what it can and says in its ``note`` why the restart was skipped.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.broker.model import Broker
from helpers.measure import plots
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers import settings
from helpers.core import topology
from helpers.errors import BadInputError, TopologyError
from helpers.core.tasks import Task
from helpers.lessons.common import Declared, Text, finish
from helpers.lessons.panels import Panel, declared_run, dropdown, int_slider


#: The four set-ups of the survival table: label, queue options, persistent messages.
CASES = (
    ("non-durable queue", {"durable": False, "kind": "classic"}, True),
    ("durable queue, transient messages", {"durable": True, "kind": "classic"}, False),
    ("durable queue, persistent messages", {"durable": True, "kind": "classic"}, True),
    ("quorum queue", {"kind": "quorum"}, True),
)
HOW = ("restart", "crash")


def cannot_restart_note(broker: Broker) -> str:
    """The one sentence a notebook shows when this broker is not ours to restart."""
    return (f"This {broker.kind} broker cannot be restarted from here (unset AMQP_URL to use "
            "a private node), so the restart is skipped and only the counts before it are "
            "shown.")


def take_down(broker: Broker, how: str) -> float:
    """Restart (``restart``) or crash-and-start (``crash``) the broker; return seconds taken."""
    if how not in HOW:
        raise BadInputError(f"how must be one of {', '.join(HOW)} (got {how!r}).")
    started = time.monotonic()
    getattr(broker, how)()
    return time.monotonic() - started


@dataclass
class SurvivalResult:
    """Messages in each of the four queues before and after one restart."""

    table: pd.DataFrame
    restarted: bool
    how: str
    restart_s: float | None
    note: str
    #: Seconds from the last queue declaration to the moment the broker went down.
    declared_before_s: float | None = None

    def headline(self) -> str:
        """One sentence: how the broker went down and how long it took, or why it did not."""
        if not self.restarted:
            return self.note
        what = "restarted cleanly" if self.how == "restart" else "crashed (SIGKILL) and started"
        text = f"The broker was {what} in {self.restart_s:.1f} s"
        if self.declared_before_s is None:
            return text + "."
        return text + f", {self.declared_before_s:.1f} s after the queues were declared."


@dataclass(frozen=True)
class Survival(Declared):
    """``messages`` to each of the four set-ups, the broker taken down ``how`` once. A crash
    comes at least ``settle_s`` after the last queue declaration (``settings.SETTLE_S``; 0
    shows what a crash right after declaring does to a quorum queue)."""

    messages: int = 100
    how: str = "restart"
    settle_s: float = settings.SETTLE_S


#: Notebook 03's survival run, and its panel's defaults.
SURVIVAL = Survival()


def survival(plan: Survival = SURVIVAL, *, broker=None, progress=None) -> SurvivalResult:
    """Publish to each of the four set-ups, take the broker down once, count what is left."""
    messages, how, settle_s = plan.messages, plan.how, plan.settle_s
    if messages < 1:
        raise BadInputError(f"messages must be at least 1 (got {messages}).")
    if settle_s < 0:
        raise BadInputError(f"settle_s must be at least 0 (got {settle_s}).")
    broker = broker or broker_mod.get()
    tag = uuid.uuid4().hex[:6]
    rows, names = [], []
    declared_at, declared_before_s = time.monotonic(), None
    say = progress or (lambda done, total, phase=None: None)
    total = messages * len(CASES)  # the bar counts messages published and confirmed
    try:
        for n, (label, options, persistent) in enumerate(CASES):
            spec = topology.QueueSpec(f"wq-survive-{n + 1}-{tag}", dead_letter=False, **options)
            row = {"case": label, "queue": spec.name, "published": messages,
                   "quorum": spec.kind == "quorum"}
            try:
                topology.setup(broker.url, spec)
            except TopologyError as exc:
                rows.append({**row, "confirmed": 0, "before": "refused", "after": "-",
                             "survived": "-", "why": str(exc)})
                continue
            declared_at = time.monotonic()
            names.append(spec.name)
            sent = producer.publish(broker.url, spec, [Task(f"m{i:05d}", 0.0)
                                                      for i in range(messages)],
                                    PublishOptions(persistent=persistent, declare_queue=False,
                                                   confirms="each"))  # BlockingConnection confirms (shown)
            rows.append({**row, "confirmed": len(sent.confirmed),
                         "before": topology.count(broker.url, spec.name)})
            say((n + 1) * messages, total, f"published to {n + 1} of {len(CASES)} queues")
        restart_s, note = None, ""
        if broker.can_restart:
            say(total, total, "restarting the broker" if how == "restart"
                else "crashing the broker (SIGKILL), then starting it")
            if how == "crash":  # a clean stop writes the declarations down itself
                declared_before_s = topology.wait_settled_declarations(declared_at, settle_s)
            restart_s = take_down(broker, how)
        else:
            note = cannot_restart_note(broker)
        say(total, total, "counting what survived")
        for row in rows:
            if row["before"] == "refused":
                continue
            after = (None if restart_s is None
                     else topology.count_recovered(broker.url, row["queue"], row["confirmed"])
                     if row["quorum"] else topology.count(broker.url, row["queue"]))
            row["after"] = ("queue gone" if after is None and restart_s is not None
                            else after if after is not None else "-")
            row["survived"] = (f"{after}/{row['confirmed']}" if isinstance(after, int)
                               else "0 (no queue)" if restart_s is not None else "-")
    finally:
        topology.discard(broker.url, *names)
    table = pd.DataFrame(rows).set_index("case").drop(columns=["queue", "quorum"])
    return SurvivalResult(table, restart_s is not None, how, restart_s, note,
                          declared_before_s)


def plot_survival(result: SurvivalResult):
    """Messages in each queue before and after the restart, side by side."""
    t = result.table
    number = lambda v: v if isinstance(v, (int, float)) else 0  # noqa: E731
    before = [number(v) for v in t["before"]]
    after = [number(v) for v in t["after"]]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    x = range(len(t))
    ax.bar([i - 0.2 for i in x], before, width=0.4, label="before", color="#7570b3")
    ax.bar([i + 0.2 for i in x], after, width=0.4, color="#1b9e77",
           label="after the restart" if result.restarted else "after (not restarted)")
    for i, (b, a) in enumerate(zip(t["before"], t["after"])):
        for dx, value in ((-0.2, b), (0.2, a)):
            ax.annotate(str(value), (i + dx, number(value)), ha="center", va="bottom",
                        fontsize=plots.LABEL_SIZE)
    ax.set_xticks(list(x), [label.replace(", ", ",\n") for label in t.index],
                  fontsize=plots.LABEL_SIZE)
    ax.set_ylabel("messages in the queue")
    ax.margins(y=0.3)
    ax.set_title("What survives a broker " + ("restart" if result.how == "restart"
                                              else "crash"))
    plots.outside_legend(ax)
    return finish(fig)


def answer(result: SurvivalResult) -> Text:
    """The answer to notebook 03's prediction (which queues give their messages back), from
    this run's table."""
    if not result.restarted:
        return Text(result.note)
    t = result.table
    kept = [case for case, row in t.iterrows()
            if isinstance(row["after"], int) and row["after"] == row["confirmed"] > 0]
    rest = [f"{case} ({row['survived']})" for case, row in t.iterrows() if case not in kept]
    return Text(f"All their messages came back in: {', '.join(kept) or 'none'}. "
                f"Not in: {', '.join(rest) or 'none'}.")


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
    broker = broker or broker_mod.get()
    base = topology.QueueSpec(f"wq-orders-{uuid.uuid4().hex[:6]}", dead_letter=False,
                              kind="classic")
    renamed = dataclasses.replace(base, name=base.name + "-v2", kind="quorum")
    rows = []
    try:
        topology.setup(broker.url, base)
        rows.append({"declare": f"{base.name} (durable classic)", "answer": "ok"})
        for label, change in CHANGES:
            try:
                topology.setup(broker.url, dataclasses.replace(base, **change))
                answer = "ok (accepted!)"
            except TopologyError as exc:
                answer = str(exc)
            rows.append({"declare": f"{base.name} again, {label}", "answer": answer})
        topology.setup(broker.url, renamed)
        rows.append({"declare": f"{renamed.name} (a new name, quorum)", "answer": "ok"})
    finally:
        topology.discard(broker.url, base.name, renamed.name)
    return pd.DataFrame(rows)


# -- panels ------------------------------------------------------------------------------

HOW_OPTIONS = [("clean restart", "restart"), ("crash (SIGKILL), then start", "crash")]


def survival_panel(broker=None) -> Panel:
    """Notebook 03: four queues, one restart."""
    return Panel("What survives a restart", declared_run(survival, SURVIVAL), survival_report, {
        "messages": int_slider("messages per queue", SURVIVAL.messages, 1, 5000, 1),
        "how": dropdown("how the broker goes down", HOW_OPTIONS, SURVIVAL.how)},
        fixed={"broker": broker}, unit="messages")
