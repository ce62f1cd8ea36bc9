"""Notebook 08, section 5: SIGTERM on deploy. A worker that dies mid-task against one that
stops consuming, finishes, acks and closes (``helpers.worker.shutdown``), alone and in a
rolling restart. The measurement is ``helpers.faults.shutdown`` (``fault shutdown``)."""
from __future__ import annotations

from dataclasses import dataclass

from helpers import faults
from helpers.broker import resolve as broker_mod
from helpers.core.tasks import equal
from helpers.lessons import retries_plots as plots
from helpers.lessons.common import Declared, Text


@dataclass(frozen=True)
class Deploy(Declared):
    """One task of ``task_s`` s stopped each way; a rolling restart of ``workers`` workers
    during ``tasks`` tasks."""

    workers: int = 3
    tasks: int = 300
    task_s: float = 1.0


#: Notebook 08's shutdown run
DEPLOY = Deploy()


def measure(plan: Deploy = DEPLOY, *, broker=None):
    """Run ``plan`` (the rolling restart's tasks of 0.05 s)."""
    workers, tasks, task_s = plan.workers, plan.tasks, plan.task_s
    return faults.run_fault("shutdown", workers, 1, equal(tasks, 0.05), task_s=task_s,
                            broker=broker or broker_mod.get())


def figure(result):
    return plots.shutdown(result.summary)


def story(result) -> Text:
    """What the run showed, every number from it."""
    s = result.summary
    return Text(
        f"SIGTERM a third of the way into a {s['task_s']} s task: the plain worker exited "
        f"with status {s['single_plain_exit']} at once (its task redelivered "
        f"{s['single_plain_redelivered']} time(s), to start again); the graceful one finished, "
        f"acked and exited with status {s['single_graceful_exit']} {s['single_graceful_exit_after_s']}"
        f" s after the signal (redelivered {s['single_graceful_redelivered']}).\n"
        f"Rolling restart, {s['restarts']} workers during {s['rolling_tasks']} tasks: plain "
        f"{s['redelivered_sigterm_plain']} redelivered, {s['started_twice_plain']} begun twice, "
        f"{s['duplicates_plain']} done twice; graceful {s['redelivered_graceful']} redelivered, "
        f"{s['started_twice_graceful']} begun twice, {s['duplicates_graceful']} done twice. "
        f"Lost: {s['tasks_lost']} (RabbitMQ {s['broker_version']}).")
