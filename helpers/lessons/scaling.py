"""Notebook 05, second part: scaling out, until the CPUs or the broker say stop.

Three experiments on the run skeleton (``helpers.experiment.skeleton``): the same work on 1, 2, 4 ...
workers, sleeping (I/O-like) and CPU-bound, makespan against the ideal; a backlog drained
by workers that join mid-run (the ``AddWorkers`` step); and zero-length tasks, where the
tasks per second level off at what the broker, the workers and this process can move
together on this machine's cores.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.experiment.steps import Run, Step
from helpers.core import tasks as task_lists
from helpers.measure import figures
from helpers.lessons.common import Declared, chain_progress, finish, full_text


def cores() -> int:
    """The CPUs this process may run on (what the broker and all workers share here)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def load() -> float:
    """The 1-minute load average (runnable processes, all users); NaN where unknown."""
    try:
        return round(os.getloadavg()[0], 1)
    except OSError:
        return float("nan")


@dataclass(frozen=True)
class ScaleOut(Declared):
    """``tasks`` equal tasks of ``kind`` (``sleep`` or ``cpu``) and ``task_ms``."""

    kind: str = "sleep"
    tasks: int = 32
    task_ms: float = 40.0
    prefetch: int = 1


#: Notebook 05's scale-out runs: sleeping (I/O-like) tasks, and CPU-bound ones.
SLEEPING, BURNING = ScaleOut("sleep"), ScaleOut("cpu", tasks=12, task_ms=25.0)


def scale_out(worker_counts=(1, 8), plan: ScaleOut = SLEEPING, *, broker=None,
              progress=None) -> pd.DataFrame:
    """The same tasks of ``plan`` on each worker count: one row per run."""
    kind, tasks, task_ms, prefetch = plan.kind, plan.tasks, plan.task_ms, plan.prefetch
    rows = []
    for n, k in enumerate(worker_counts):
        work = task_lists.equal(tasks, task_ms / 1000, kind=kind)
        exp = Experiment(k, work, WorkerConfig(prefetch=prefetch), save=False,
                         label=f"scale-{kind}{k}")
        s = runner.run(exp, broker=broker,
                       progress=chain_progress(progress, n * tasks,
                                               len(worker_counts) * tasks)).summary
        on_cores = max(tasks * task_ms / 1000 / min(k, cores()), task_ms / 1000)
        rows.append({"kind": kind, "workers": k, "makespan_s": s["makespan_s"],
                     "ideal_s": s["ideal_makespan_s"],
                     "ideal_on_cores_s": round(on_cores, 4) if kind == "cpu" else None,
                     "makespan_over_ideal": s["makespan_over_ideal"],
                     "tasks_per_s": s["throughput_tps"], "spawn_s": s["spawn_s"],
                     "lost": s["tasks_lost"]})
    return pd.DataFrame(rows)


def scale_table(*tables: pd.DataFrame) -> pd.DataFrame:
    """The scale-out runs side by side, one row per task kind and worker count (an empty
    cell says why it is empty)."""
    table = pd.concat(tables, ignore_index=True).set_index(["kind", "workers"])
    return full_text(figures.explained(
        table, {"ideal_s": "ideal_makespan_s", "tasks_per_s": "throughput_tps"},
        {"ideal_on_cores_s": "as ideal_s: sleeping takes no core"}))


def plot_scale_out(*tables: pd.DataFrame):
    """Makespan against workers, measured and ideal, one panel per task kind."""
    table = pd.concat(tables, ignore_index=True)
    kinds = list(dict.fromkeys(table["kind"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 3.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        part = table[table["kind"] == kind]
        ax.plot(part["workers"], part["makespan_s"], "o-", color="#d95f02", label="measured")
        ax.plot(part["workers"], part["ideal_s"], ":", color="black",
                label="ideal (work / workers)")
        fewest = part.iloc[0]
        ax.plot(part["workers"], fewest["makespan_s"] * fewest["workers"] / part["workers"],
                "-.", color="grey", label=f"perfect scaling ({fewest['workers']:g} worker"
                f"{'' if fewest['workers'] == 1 else 's'}'s makespan / k)")
        if kind == "cpu":
            ax.plot(part["workers"], part["ideal_on_cores_s"], "--", color="#1b9e77",
                    label=f"ideal on {cores()} cores")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(part["workers"]), [str(k) for k in part["workers"]])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("workers")
        ax.set_ylabel("makespan, s")
        ax.set_title(f"{'Sleeping (I/O-like)' if kind == 'sleep' else 'CPU-bound'} tasks")
        ax.legend(fontsize=8)
    return finish(fig)


class AddWorkers(Step):
    """A run-skeleton step: ``add`` more workers join ``after_s`` seconds after publishing."""

    def __init__(self, add: int, after_s: float):
        self.add, self.after_s = add, after_s
        self.started_t: float | None = None  # when the added workers were started
        self.joined_t: float | None = None  # when the first added worker was consuming
        self.all_joined_t: float | None = None  # and when the last one was
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def started(self, run: Run) -> None:
        def join():
            if not self._stop.wait(self.after_s):
                self.started_t = time.time()
                handles = run.pool.add(self.add)
                self.joined_t = min(h.ready_t for h in handles)
                self.all_joined_t = max(h.ready_t for h in handles)
        self._thread = threading.Thread(target=join, name="add-workers", daemon=True)
        self._thread.start()

    def finished(self, run: Run, done: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self, run: Run) -> dict:
        since = lambda t: round(t - run.published.t_first, 3) if t else None
        return {"workers_added": self.add if self.joined_t else 0,
                "started_s": since(self.started_t), "joined_s": since(self.joined_t),
                "all_joined_s": since(self.all_joined_t)}


@dataclass(frozen=True)
class Drain(Declared):
    """A backlog of ``tasks`` published at once to ``workers``; ``add`` join after
    ``after_s`` s."""

    workers: int = 2
    add: int = 6
    tasks: int = 240
    task_ms: float = 40.0
    after_s: float = 1.0


#: Notebook 05's drain run.
DRAIN = Drain()


def drain(plan: Drain = DRAIN, *, broker=None, progress=None) -> runner.RunResult:
    """Run ``plan`` (the ``AddWorkers`` step adds the workers)."""
    step = AddWorkers(plan.add, plan.after_s)
    exp = Experiment(plan.workers, task_lists.equal(plan.tasks, plan.task_ms / 1000),
                     WorkerConfig(prefetch=1), label="drain", save=False)
    return runner.run(exp, steps=[step], broker=broker, progress=progress)


def drain_rates(result: runner.RunResult) -> dict:
    """Tasks per second before the first added worker consumed, and after the last did."""
    s, df = result.summary, result.deliveries
    ends = df["end_s"].dropna().sort_values()
    joined, all_joined = s.get("joined_s"), s.get("all_joined_s")
    if joined is None or ends.empty:
        return {"joined_s": None}
    before, after = ends[ends <= joined], ends[ends > all_joined]
    rate = lambda part, span: round(len(part) / span, 1) if span > 0 else float("nan")
    return {"workers_before": s["workers"], "workers_after": s["workers"] + s["workers_added"],
            "started_s": s["started_s"], "joined_s": joined, "all_joined_s": all_joined,
            "tasks_per_s_before": rate(before, joined),
            "tasks_per_s_after": rate(after, float(ends.max()) - all_joined),
            "makespan_s": s["makespan_s"]}


def plot_drain(result: runner.RunResult):
    """Tasks still to do over time; the slope steepens when the added workers join."""
    df, s = result.deliveries, result.summary
    ends = df["end_s"].dropna().sort_values().reset_index(drop=True)
    total = s["tasks_published"]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ax.step([0.0, *ends], [total, *(total - ends.index - 1)], where="post", color="#1f77b4")
    if s.get("joined_s") is not None:
        ax.axvline(s["started_s"], color="grey", linestyle=":", linewidth=0.8)
        ax.annotate(f" {s['workers_added']} started ", (s["started_s"], 0.12 * total),
                    ha="right", fontsize=8, color="grey")
        ax.axvspan(s["joined_s"], s["all_joined_s"], color="black", alpha=0.08)
        ax.axvline(s["all_joined_s"], color="black", linestyle="--", linewidth=0.8)
        ax.annotate(f" all {s['workers_added']} consuming", (s["all_joined_s"], total),
                    va="top", fontsize=8)
    ax.set_xlabel("seconds since the first publish")
    ax.set_ylabel("tasks not yet done")
    ax.set_title(f"A backlog of {total} tasks: {s['workers']} workers, then "
                 f"{s['workers'] + s.get('workers_added', 0)}")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    return finish(fig)


def saturation(worker_counts=(1, 2, 4), tasks: int = 6000, prefetch: int = 100, *,
               broker=None, progress=None) -> pd.DataFrame:
    """Zero-length tasks on each worker count: how many tasks per second get through.

    The fewest workers run twice, first and last, and keep the better rate. Their run is
    the one a shared machine disturbs most: it lasts under a second, and one worker has no
    other to cover for it while it waits for a CPU, so one pause can cut its rate several
    times over (658 and 2,784 tasks/s back to back at a load of 9 on 2 cores). A pause only
    ever lowers a rate, so the better of two is the nearer to what one worker can do. Each
    run is ``tasks`` long (about a second for one worker): with 2,000 tasks (0.3 s) two
    disturbed runs of one worker once read 2,579 tasks/s against 8,845 for four."""
    rows, order = {}, [*worker_counts, worker_counts[0]]
    for n, k in enumerate(order):
        started = time.monotonic()
        exp = Experiment(k, task_lists.equal(tasks, 0.0), WorkerConfig(prefetch=prefetch),
                         save=False, label=f"zero-k{k}")
        result = runner.run(exp, broker=broker,
                            progress=chain_progress(progress, n * tasks, len(order) * tasks))
        s = result.summary
        row = {"workers": k, "tasks": s["tasks_completed"], "makespan_s": s["makespan_s"],
               "tasks_per_s": s["throughput_tps"], "runs_tasks_per_s": [s["throughput_tps"]],
               "run_s": round(time.monotonic() - started, 2), "lost": s["tasks_lost"]}
        if k in rows:  # the fewest again: keep the better run, note both
            row["runs_tasks_per_s"] = rows[k]["runs_tasks_per_s"] + row["runs_tasks_per_s"]
            row["lost"] += rows[k]["lost"]
            if rows[k]["tasks_per_s"] > row["tasks_per_s"]:
                row = {**rows[k], "runs_tasks_per_s": row["runs_tasks_per_s"],
                       "lost": row["lost"]}
        rows[k] = row
    return pd.DataFrame(list(rows.values()))


def plot_saturation(table: pd.DataFrame):
    """Tasks per second against workers, for tasks that take no time at all."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(table["workers"], table["tasks_per_s"], "o-", color="#7570b3",
            label="measured (the fewest: the better of two runs)")
    fewest = table.iloc[0]
    ax.plot(table["workers"], fewest["tasks_per_s"] / fewest["workers"] * table["workers"],
            "-.", color="grey", label="perfect scaling (k times the fewest's rate)")
    ax.legend(fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(table["workers"]), [str(k) for k in table["workers"]])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("workers")
    ax.set_ylabel("tasks / s")
    ax.set_title(f"Zero-length tasks: broker, workers and this kernel on {cores()} cores",
                 fontsize=10)
    return finish(fig)
