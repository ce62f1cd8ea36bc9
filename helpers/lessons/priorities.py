"""Notebook 08, section 2: urgent tasks behind a backlog, with and without priorities, on a
classic and a quorum queue, and at a large prefetch. The measurement is
``helpers.faults.priority`` (``python -m helpers fault priority``)."""
from __future__ import annotations

from dataclasses import dataclass

from helpers import faults
from helpers.broker import resolve as broker_mod
from helpers.core.tasks import equal
from helpers.lessons import retries_plots as plots
from helpers.lessons.common import Declared, Text
from helpers.lessons.panels import Panel, declared_run, int_slider


@dataclass(frozen=True)
class Urgent(Declared):
    """``backlog`` tasks at priority 1, then ``urgent`` at priority 9, on ``workers``
    workers."""

    urgent: int = 5
    backlog: int = 200
    workers: int = 2


#: Notebook 08's priority run, and its panel's defaults
URGENT = Urgent()


def measure(plan: Urgent = URGENT, *, broker=None, progress=None):
    """Run ``plan``, the backlog's tasks of 0.01 s."""
    urgent, backlog, workers = plan.urgent, plan.backlog, plan.workers
    result = faults.run_fault("priority", workers, 1, equal(backlog, 0.01), urgent=urgent,
                              broker=broker or broker_mod.get())
    if progress is not None:
        progress(1, 1)
    return result


def figure(result):
    return plots.priorities(result.summary)


def story(result) -> Text:
    """What the run showed, every number from it."""
    s = result.summary
    levels = s["levels"]
    refused = s["quorum_max_priority_refused"]
    return Text(
        f"The last urgent task started {max(s['urgent_start_s_without']):.2f} s after the first "
        f"publish without priorities, {max(s['urgent_start_s_with']):.2f} s on a classic queue "
        f"with x-max-priority, {max(s['urgent_start_s_quorum']):.2f} s on a quorum queue, and "
        f"{max(s['urgent_start_s_prefetch']):.2f} s with priorities but prefetch "
        f"{s['big_prefetch']} (what a worker holds already is not re-ordered).\n"
        f"Priority levels honoured on RabbitMQ {s['broker_version']}: classic queue with "
        f"x-max-priority {levels['classic']} (priorities 0..{s['probe_top']['classic']} sent), "
        f"quorum queue {levels['quorum']} (0..{s['probe_top']['quorum']} sent)"
        + (f"; a quorum queue with x-max-priority was refused: {refused}" if refused else
           f"; quorum queue declared with x-max-priority: {levels['quorum with x-max-priority']}")
        + ".")


def report(result) -> list:
    return [figure(result), story(result)]


def panel(broker=None) -> Panel:
    """Other numbers of urgent and backlog tasks."""
    plan = URGENT
    return Panel("Urgent tasks behind a backlog", declared_run(measure, plan), report, {
        "urgent": int_slider("urgent tasks", plan.urgent, 1, 20),
        "backlog": int_slider("backlog tasks", plan.backlog, 50, 400, 50)},
        fixed={"broker": broker}, unit="runs")
