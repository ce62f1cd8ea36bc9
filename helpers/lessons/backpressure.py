"""Notebook 08, section 4: a flood into a queue with a length limit: ``reject-publish``
(the producer is told, waits, publishes again) against ``drop-head`` (the oldest go, without
a word). The measurement is ``helpers.faults.overflow`` (``python -m helpers fault overflow``)."""
from __future__ import annotations

from dataclasses import dataclass

from helpers import faults
from helpers.broker import resolve as broker_mod
from helpers.core.tasks import equal
from helpers.lessons import retries_plots as plots
from helpers.lessons.common import Declared, Text
from helpers.lessons.panels import Panel, declared_run, int_slider


@dataclass(frozen=True)
class Flood(Declared):
    """``flood`` tasks at once into a queue of at most ``max_length``, ``workers`` workers
    draining it."""

    max_length: int = 20
    flood: int = 200
    workers: int = 2


#: Notebook 08's back-pressure run, and its panel's defaults
FLOOD = Flood()


def measure(plan: Flood = FLOOD, *, broker=None, progress=None):
    """Run ``plan`` (tasks of 0.01 s) both ways: reject-publish, then drop-head."""
    max_length, flood, workers = plan.max_length, plan.flood, plan.workers
    result = faults.run_fault("overflow", workers, 1, equal(flood, 0.01), max_length=max_length,
                              broker=broker or broker_mod.get())
    if progress is not None:
        progress(1, 1)
    return result


def figure(result):
    return plots.backpressure(result.summary)


def story(result) -> Text:
    """What the run showed, every number from it."""
    s = result.summary
    return Text(
        f"{s['flood']} tasks into a classic queue of at most {s['max_length']}, two workers "
        f"draining it.\n"
        f"reject-publish: the broker nacked {s['nacked_first']} publishes of the first pass; "
        f"the producer waited and published them again ({s['republish_rounds']} rounds, "
        f"{s['nacked']} nacks in all): {s['confirmed']} confirmed, {s['lost_reject_publish']} "
        f"lost.\ndrop-head: {s['confirmed_drop_head']} confirmed, and {s['lost_drop_head']} "
        f"of them lost, dropped from the head without a word (RabbitMQ {s['broker_version']}).\n"
        + burst(s))


def burst(s: dict) -> str:
    """The same flood at once into a quorum queue with the same limit, no consumer."""
    b = s["quorum_burst"]
    return (f"A quorum queue, the same limit and reject-publish, the same {s['flood']} tasks "
            f"published at once with no consumer: {b['confirmed']} confirmed, {b['nacked']} "
            f"nacked, {b['depth']} in the queue"
            + (f" ({b['depth'] - s['max_length']} over its limit)." if b["depth"] > s["max_length"]
               else "."))


def report(result) -> list:
    return [figure(result), story(result)]


def panel(broker=None) -> Panel:
    """Another length limit, another flood."""
    plan = FLOOD
    return Panel("Back-pressure", declared_run(measure, plan), report, {
        "max_length": int_slider("max length", plan.max_length, 5, 100, 5),
        "flood": int_slider("tasks in the flood", plan.flood, 50, 400, 50)},
        fixed={"broker": broker}, unit="runs")
