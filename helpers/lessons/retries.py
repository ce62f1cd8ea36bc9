"""Notebook 08, section 1: a failing task retried after 1, 4 and 16 s (shortened), against
the hot loop of requeueing it at once. The measurement is ``helpers.faults.retry``
(``python -m helpers fault retry``); this module runs it for the notebook, says what it
showed in words whose every number comes from the run, and builds the panel."""
from __future__ import annotations

from dataclasses import dataclass

from helpers import faults
from helpers.broker import delayed_retry
from helpers.broker import resolve as broker_mod
from helpers.core.tasks import equal
from helpers.faults import retry as fault
from helpers.lessons import retries_plots as plots
from helpers.lessons.common import Declared, Text
from helpers.lessons.panels import Panel, declared_run, float_slider

#: The production back-off, and the notebook's: the same shape, four times shorter.
PRODUCTION_DELAYS_S = (1, 4, 16)


def delays(first_s: float, factor: float, retries: int = 3) -> tuple:
    """``first_s``, then each delay ``factor`` times the one before."""
    return tuple(round(first_s * factor ** i, 3) for i in range(retries))


@dataclass(frozen=True)
class BackOff(Declared):
    """Retries after ``first_s``, then each delay ``factor`` times the one before, on
    ``workers`` workers."""

    first_s: float = 0.25
    factor: float = 4.0
    workers: int = 2


#: Notebook 08's retry run, and its panel's defaults: ``PRODUCTION_DELAYS_S``, four times shorter
BACK_OFF = BackOff()


def measure(plan: BackOff = BACK_OFF, *, broker=None, progress=None):
    """The hot loop and ``plan``'s delayed retries, 20 good tasks of 0.05 s around the
    failing one."""
    first_s, factor, workers = plan.first_s, plan.factor, plan.workers
    result = faults.run_fault("retry", workers, 1, equal(20, 0.05), delays=delays(first_s, factor),
                              broker=broker or broker_mod.get())
    if progress is not None:
        progress(1, 1)
    return result


def attempts(result) -> list[dict]:
    """The failing task's attempts in the delayed run."""
    return fault.attempts_of(result, "delayed")


def figure(result):
    return plots.retries(result, attempts(result))


def story(result) -> Text:
    """What the run showed, every number from it."""
    s, h = result.summary, result.summary["head_of_line"]
    late = [round(g - d, 3) for g, d in zip(s["gaps_s"], s["delays_s"])]
    return Text(
        f"Requeued at once, the failing task was delivered {s['hot_loop_deliveries']} times in "
        f"{s['window_s']} s: {s['hot_loop_deliveries_per_s']} deliveries a second, for nothing.\n"
        f"With delays of {s['delays_s']} s it was tried {s['attempts']} times, waiting "
        f"{s['gaps_s']} s between attempts (later than configured by {late} s: after its TTL it "
        f"joins the work queue at the back), then parked ({s['parked']} in "
        f"<queue>.parked): {s['delayed_deliveries_per_s']} deliveries a second.\n"
        f"One queue with per-message TTLs instead: a {h['short_ttl_s']} s message behind a "
        f"{h['long_ttl_s']} s one came back after {h['short_back_after_s']} s "
        f"(a message expires only at the head of its queue).\n"
        f"Good tasks done: {s['good_completed']}; lost: {s['tasks_lost']}; on RabbitMQ "
        f"{s['broker_version']}.")


def broker_delay(result) -> Text:
    """What this broker did when asked to delay a quorum queue's redeliveries itself."""
    found, version = result.summary["delayed_retry"], result.summary["broker_version"]
    held = [way for way, got in found.items() if got["outcome"] == "honoured"]
    if held:
        gaps = found[held[0]]["gaps_s"]
        growing = all(b > a for a, b in zip(gaps, gaps[1:]))
        verdict = (f"So RabbitMQ {version} delays redeliveries itself ({', '.join(held)}): "
                   + ("each return waited longer than the one before" if growing else
                      "the returns waited") + f" ({gaps} s, {held[0]}).")
    else:
        verdict = (f"So RabbitMQ {version} does not delay a redelivery itself: retry queues "
                   "with a TTL, as above, are the way here.")
    return Text(delayed_retry.sentence(found, version) + "\n" + verdict)


def report(result) -> list:
    return [figure(result), story(result)]


def panel(broker=None) -> Panel:
    """Other delays: the first one, and the factor between two."""
    plan = BACK_OFF
    return Panel("Retry with back-off", declared_run(measure, plan), report, {
        "first_s": float_slider("first delay, s", plan.first_s, 0.1, 1.0, 0.05),
        "factor": float_slider("back-off factor", plan.factor, 1.5, 4.0, 0.5)},
        fixed={"broker": broker}, unit="runs")
