"""Notebook 05: the price of a large prefetch, on skewed tasks (some long, most short).

A prefetch large enough to hide the round trip also hands tasks out before anyone knows who
will be free: with a few long tasks among many short ones, the worker that was dealt more
long ones finishes last, as round robin did in notebook 04. Makespan / ideal against
prefetch shows both costs: the round trip on the left, unfair dispatch on the right.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.measure.prefetch import recommend_prefetch
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.core.tasks import Task
from helpers.lessons.common import Declared, chain_progress, finish


def skewed_tasks(n: int = 48, long_share: float = 0.125, long_ms: float = 200.0,
                 short_ms: float = 5.0, seed: int = 3) -> list[Task]:
    """``n`` tasks, each long with probability ``long_share`` (drawn with ``seed``)."""
    rng = random.Random(seed)
    return [Task(f"t{i:05d}", (long_ms if rng.random() < long_share else short_ms) / 1000)
            for i in range(1, n + 1)]


@dataclass(frozen=True)
class Skew(Declared):
    """The skewed workload of notebook 05, its workers ``round_trip_ms`` away."""

    round_trip_ms: float = 20.0
    workers: int = 2
    tasks: int = 48
    long_ms: float = 200.0
    short_ms: float = 5.0
    #: draws which tasks are long
    seed: int = 3
    queue_type: str = DEFAULT_QUEUE_KIND


#: Notebook 05's skewed run.
SKEW = Skew()


def skew_sweep(skew: Skew = SKEW, prefetches=(1, 5, 20, 100), *, broker=None,
               progress=None) -> pd.DataFrame:
    """The same skewed workload at each prefetch, workers ``skew.round_trip_ms`` away."""
    work = skewed_tasks(skew.tasks, long_ms=skew.long_ms, short_ms=skew.short_ms,
                        seed=skew.seed)
    long_ids = {t.id for t in work if t.duration * 1000 == skew.long_ms}
    workers, tasks, round_trip_ms = skew.workers, skew.tasks, skew.round_trip_ms
    rows = []
    for n, prefetch in enumerate(prefetches):
        exp = Experiment(workers, work, WorkerConfig(prefetch=prefetch), latency_ms=round_trip_ms,
                         queue_type=skew.queue_type, save=False, label=f"skew-p{prefetch}")
        result = runner.run(exp, broker=broker,
                            progress=chain_progress(progress, n * tasks,
                                                    len(prefetches) * tasks))
        s, df = result.summary, result.deliveries
        done = df[df["finished_t"].notna()]
        longs = done[done["task"].isin(long_ids)].groupby("worker").size()
        rows.append({"prefetch": prefetch, "round_trip_ms": round_trip_ms,
                     "makespan_s": s["makespan_s"], "ideal_s": s["ideal_makespan_s"],
                     "makespan_over_ideal": s["makespan_over_ideal"],
                     "imbalance": s["imbalance"], "tasks_per_s": s["throughput_tps"],
                     "long tasks per worker": " ".join(
                         f"{w['worker']}:{int(longs.get(w['worker'], 0))}"
                         for w in s["per_worker"]),
                     "long_tasks": len(long_ids), "lost": s["tasks_lost"]})
    return pd.DataFrame(rows)


def skew_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The sweep's figures, one row per prefetch."""
    return sweep.drop(columns=["round_trip_ms", "long_tasks"]).set_index("prefetch").round(3)


def plot_skew(sweep: pd.DataFrame, own_round_trip_ms: float = 0.0, short_ms: float = 5.0):
    """Makespan / ideal against prefetch, with ``recommend_prefetch`` for the short tasks."""
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    r = float(sweep["round_trip_ms"].iloc[0])
    ax.plot(sweep["prefetch"], sweep["makespan_over_ideal"], "o-", color="#d95f02")
    ax.axhline(1, color="black", linestyle=":", linewidth=0.8)
    recommended = recommend_prefetch((r + own_round_trip_ms) / 1000, short_ms / 1000)
    ax.axvline(recommended, color="#1b9e77", linestyle="--", linewidth=1)
    ax.annotate(f" recommend_prefetch = {recommended}", (recommended, ax.get_ylim()[1]),
                va="top", fontsize=8, color="#1b9e77")
    ax.set_xscale("log")
    ticks = sorted(set(sweep["prefetch"]))
    ax.set_xticks(ticks, [str(p) for p in ticks])
    ax.minorticks_off()
    ax.set_ylim(bottom=0.9)
    ax.set_xlabel("prefetch_count")
    ax.set_ylabel("makespan / ideal")
    ax.set_title(f"Skewed tasks, workers {r:g} ms away: waiting on the left, unfair dealing "
                 "on the right", fontsize=10)
    return finish(fig)
