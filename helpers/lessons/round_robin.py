"""Notebook 01, round robin: K workers, N equal tasks, no prefetch limit.

``round_robin`` runs the experiment through the run skeleton (``helpers.experiment.skeleton``); the other
functions read the result: who got which task, the deal as a table, the check that task
*i* and task *i + K* went to the same worker, and the figure.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.measure import plots
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.core import tasks as task_lists
from helpers.lessons.common import Declared, Text, finish
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.lessons.panels import Panel, declared_run, float_slider, int_slider, queue_type


@dataclass(frozen=True)
class RoundRobin(Declared):
    """``workers`` consumers with no prefetch limit, ``tasks`` equal tasks of ``duration`` s."""

    workers: int = 3
    tasks: int = 12
    duration: float = 0.3
    queue_type: str = DEFAULT_QUEUE_KIND


#: Notebook 01's run, and its panel's defaults.
ROUND_ROBIN = RoundRobin()


def round_robin(plan: RoundRobin = ROUND_ROBIN, *, broker=None,
                progress=None) -> runner.RunResult:
    """Notebook 01: run ``plan``."""
    work = task_lists.equal(plan.tasks, plan.duration)
    exp = Experiment(plan.workers, work, WorkerConfig(prefetch=0), save=False,
                     label="round-robin", queue_type=plan.queue_type)
    return runner.run(exp, broker=broker, progress=progress)


def first_deliveries(result: runner.RunResult) -> pd.DataFrame:
    """One row per task, in publish order: its number ``i`` and the worker it went to first."""
    df = result.deliveries.sort_values("delivered_t").drop_duplicates("task")
    df = df.sort_values("task").reset_index(drop=True)
    df["i"] = range(1, len(df) + 1)
    return df[["i", "task", "worker"]]


def sequence(result: runner.RunResult, limit: int = 24) -> str:
    """``1→w2  2→w3  3→w1 ...``: the worker each task went to, in publish order."""
    rows = first_deliveries(result)
    text = "  ".join(f"{r.i}→{r.worker}" for r in rows.head(limit).itertuples())
    return text + ("  ..." if len(rows) > limit else "")


def deal_table(result: runner.RunResult) -> pd.DataFrame:
    """Tasks as dealt: one row per round of K tasks, one column per worker."""
    rows = first_deliveries(result)
    k = result.summary["workers"]
    rows["round"] = (rows["i"] - 1) // k + 1
    table = rows.pivot_table(index="round", columns="worker", values="i",
                             aggfunc=lambda s: ", ".join(map(str, s)))
    ordered = sorted(table.columns, key=lambda w: (len(w), w))
    return table[ordered].fillna("").rename_axis(columns=None)


def is_round_robin(result: runner.RunResult) -> bool:
    """True when task ``i`` and task ``i + K`` always went to the same worker."""
    workers = list(first_deliveries(result)["worker"])
    k = result.summary["workers"]
    return all(workers[i] == workers[i - k] for i in range(k, len(workers)))


def counts_table(result: runner.RunResult) -> pd.DataFrame:
    """Tasks per worker against the round-robin share ``N/K``."""
    pw = result.per_worker()[["worker", "tasks", "busy_s"]].copy()
    n, k = result.summary["tasks_published"], result.summary["workers"]
    pw["N/K"] = round(n / k, 2)
    pw["busy_s"] = pw["busy_s"].round(2)
    return pw.set_index("worker")


def plot_round_robin(result: runner.RunResult):
    """Timeline of the run beside the number of tasks each worker did."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.2),
                                      gridspec_kw={"width_ratios": [2.4, 1]})
    s = result.summary
    plots.timeline(result.deliveries, ax=left,
                   title=f"{s['workers']} workers, {s['tasks_published']} equal tasks, "
                         "no prefetch limit")
    left.set_xlim(left=0)
    plots.counts(result.per_worker(), ax=right)
    plots.reference_line(right, s["tasks_published"] / s["workers"], "N/K")
    right.margins(y=0.15)
    return finish(fig)


def answer(result: runner.RunResult, task: int = 7) -> Text:
    """The answer to notebook 01's prediction (who got task ``task``, how many each did),
    from this run's numbers."""
    rows = first_deliveries(result)
    k = result.summary["workers"]
    counts = result.per_worker().set_index("worker")["tasks"]
    each = ", ".join(f"{w} {n}" for w, n in counts.items())
    if task > len(rows):
        return Text(f"Tasks per worker: {each}.")
    worker = rows.iloc[task - 1]["worker"]
    earlier = [int(i) for i in rows[rows["worker"] == worker]["i"] if i < task]
    before = (f"the worker of task{'s' if len(earlier) > 1 else ''} "
              f"{', '.join(map(str, earlier))}" if earlier else "as its first task")
    return Text(f"Task {task} went to {worker}, {before}. Tasks per worker: {each} "
                f"(N/K = {result.summary['tasks_published'] / k:g}).")


def round_robin_report(result: runner.RunResult) -> list:
    """What the Run button of notebook 01 shows."""
    return [plot_round_robin(result), Text(sequence(result)), counts_table(result)]


def round_robin_panel(broker=None) -> Panel:
    """Notebook 01: workers, tasks, task duration."""
    rr = ROUND_ROBIN
    return Panel("Round robin: K workers, N equal tasks, no prefetch limit",
                 declared_run(round_robin, rr), round_robin_report, {
                     "workers": int_slider("workers (K)", rr.workers, 1, 8),
                     "tasks": int_slider("tasks (N)", rr.tasks, 1, 60),
                     "duration": float_slider("seconds per task", rr.duration, 0.05, 2.0, 0.05),
                     "queue_type": queue_type(rr.queue_type)},
                 fixed={"broker": broker})
