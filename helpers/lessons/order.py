"""Notebook 08, section 3: related tasks in order. Competing consumers finish the steps of
one account out of order; a single active consumer keeps them in order, and the next
consumer takes over when its worker is killed. The measurement is
``helpers.faults.single_active`` (``python -m helpers fault single-active``)."""
from __future__ import annotations

from dataclasses import dataclass

from helpers import faults
from helpers.broker import resolve as broker_mod
from helpers.core.tasks import equal
from helpers.lessons import retries_plots as plots
from helpers.lessons.common import Declared, Text


@dataclass(frozen=True)
class Accounts(Declared):
    """3 accounts x ``steps`` steps each, on ``workers`` workers."""

    workers: int = 3
    steps: int = 20


#: Notebook 08's order run
ACCOUNTS = Accounts()


def measure(plan: Accounts = ACCOUNTS, *, broker=None):
    """Run ``plan`` (steps of about 0.02 s) both ways: competing consumers, then a single
    active consumer whose worker is killed."""
    workers, steps = plan.workers, plan.steps
    return faults.run_fault("single-active", workers, 1, equal(steps, 0.02),
                            broker=broker or broker_mod.get())


def figure(result):
    return plots.order(result)


def story(result) -> Text:
    """What the run showed, every number from it."""
    s = result.summary
    return Text(
        f"{s['accounts']} accounts x {s['steps']} steps, {s['workers'] // 2} workers each run: "
        f"{s['out_of_order_competing']} steps finished after a later step of their account "
        f"with competing consumers, {s['out_of_order_single']} with a single active consumer.\n"
        f"Workers that did any task under single active consumer, in turn: "
        f"{', '.join(s['active_workers_single'])}; {s['killed']} was killed (SIGKILL) and the "
        f"next consumer had its first delivery {s['takeover_s']} s later; lost "
        f"{s['tasks_lost']}, done twice {s['duplicates']}, on RabbitMQ {s['broker_version']}.")
