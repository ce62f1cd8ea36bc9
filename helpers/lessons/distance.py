"""Notebook 05, first part: prefetch against the distance between workers and broker.

Workers "on a host N ms away" (the pool's latency proxy, ``helpers.net.proxy``) take short
equal tasks at several prefetch values, one run per (round trip, prefetch); each run's
tasks per second and busy fraction (per worker) stand beside the bound of
``helpers.measure.prefetch``, and ``recommend_prefetch`` is checked against them. The panel runs one
point and draws it on the curves. The price of a large prefetch on skewed tasks is in
``helpers.lessons.skew``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.core import tasks as task_lists
from helpers.measure.prefetch import busy_bound, recommend_prefetch, throughput_bound
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.lessons.common import Declared, chain_progress, finish
from helpers.lessons.panels import Panel, declared_run, float_slider, int_slider, queue_type

#: The full grid of notebook 05 (``FULL = True``, or ``python -m benchmarks.prefetch_distance``).
PREFETCHES = (1, 2, 5, 10, 20, 50, 100, 300)
ROUND_TRIPS_MS = (0, 5, 20, 50)
#: The part of it the notebook measures by default (8 runs).
DEFAULT_PREFETCHES = (1, 5, 20, 100)
DEFAULT_ROUND_TRIPS_MS = (0, 50)


def tasks_for(seconds: float, workers: int, prefetch: int, round_trip_ms: float,
              task_s: float, least: int = 32, most: int = 2000) -> int:
    """How many tasks keep ``workers`` busy about ``seconds`` at the bound's rate."""
    rate = throughput_bound(workers, prefetch, round_trip_ms / 1000, task_s)
    wanted = most if math.isinf(rate) else round(seconds * rate)
    return max(least, min(most, wanted)) // workers * workers


def busy_in(deliveries: pd.DataFrame, workers: int, window_s: float = 0.1) -> float:
    """The workers' busy fraction in the median ``window_s`` slice of the run (first start to
    last end): one pause of a busy machine (a process waiting for a CPU) does not decide it."""
    done = deliveries.dropna(subset=["start_s", "end_s"])
    if done.empty:
        return math.nan
    lo, hi = done["start_s"].to_numpy(), done["end_s"].to_numpy()
    edges = np.arange(lo.min(), hi.max(), window_s)
    if len(edges) < 3:  # too short to slice: the whole run
        edges = np.array([lo.min(), hi.max()])
    low, high = edges[:-1, None], edges[1:, None]  # windows x tasks
    overlap = (np.minimum(high, hi) - np.maximum(low, lo)).clip(min=0).sum(axis=1)
    return round(float(np.median(overlap / (workers * (high - low)[:, 0]))), 3)


@dataclass(frozen=True)
class FarRun(Declared):
    """Equal tasks of ``task_ms``, ``workers`` at ``prefetch``, ``round_trip_ms`` away."""

    workers: int = 2
    prefetch: int = 5
    round_trip_ms: float = 20.0
    task_ms: float = 5.0
    #: how many tasks; None: enough for about half a second at the bound's rate
    tasks: int | None = None
    queue_type: str = DEFAULT_QUEUE_KIND


#: The panel's run of notebook 05 (its task length: the grid's).
FAR = FarRun()


def measure(run: FarRun, *, broker=None, progress=None) -> dict:
    """One run of ``run``'s equal tasks: one row of figures (tasks per second per worker, so
    that runs with other worker counts compare)."""
    workers, prefetch, round_trip_ms, task_ms = (run.workers, run.prefetch, run.round_trip_ms,
                                                 run.task_ms)
    tasks = run.tasks if run.tasks is not None else tasks_for(0.5, workers, prefetch,
                                                              round_trip_ms, task_ms / 1000)
    exp = Experiment(workers, task_lists.equal(tasks, task_ms / 1000),
                     WorkerConfig(prefetch=prefetch), latency_ms=round_trip_ms,
                     queue_type=run.queue_type, save=False,
                     label=f"far-r{round_trip_ms:g}-p{prefetch}")
    result = runner.run(exp, broker=broker, progress=progress)
    s = result.summary
    busy_s = sum(w["busy_s"] for w in s["per_worker"])
    ends = result.deliveries["end_s"].dropna()
    # first to last completion: the start-up (half a round trip, the first publish) left out
    steady = float((len(ends) - 1) / (ends.max() - ends.min())) if len(ends) > 1 else math.nan
    return {"round_trip_ms": round_trip_ms, "prefetch": prefetch, "workers": workers,
            "task_ms": task_ms, "tasks": s["tasks_completed"], "makespan_s": s["makespan_s"],
            "tasks_per_s": s["throughput_tps"],
            "tasks_per_s_per_worker": round(steady / workers, 1),
            "busy": busy_in(result.deliveries, workers),
            # what a task really took (a sleep wakes late on a busy machine)
            "task_took_ms": round(1000 * busy_s / max(1, s["tasks_completed"]), 2),
            "lost": s["tasks_lost"], "queue_type": run.queue_type}


def calibrate_own_round_trip_ms(workers: int = 1, tasks: int = 200, *,
                                queue_type: str = DEFAULT_QUEUE_KIND, broker=None) -> float:
    """The round trip this machine adds by itself (network stack, broker, client, waiting for
    a CPU), measured on its own: tasks of no length at prefetch 1 with nothing added, so
    each cycle of a worker is that round trip alone (less the little a task of no length
    took)."""
    row = measure(FarRun(workers, 1, 0, 0.0, tasks, queue_type), broker=broker)
    cycle_ms = 1000 / row["tasks_per_s_per_worker"]
    return round(max(0.0, cycle_ms - row["task_took_ms"]), 2)


def prefetch_grid(round_trips_ms=DEFAULT_ROUND_TRIPS_MS, prefetches=DEFAULT_PREFETCHES,
                  workers: int = 1, task_ms: float = 5.0, seconds: float = 0.4, *,
                  recommended: bool = True, queue_type: str = DEFAULT_QUEUE_KIND,
                  broker=None, progress=None) -> pd.DataFrame:
    """One run per (round trip, prefetch), in that order: a row of figures per run.

    This machine's own round trip is measured first, by a run of its own
    (``calibrate_own_round_trip_ms``), never from a point of the grid, so every point can
    be compared with the bound; it is the ``own_round_trip_ms`` column. With
    ``recommended``, each round trip also runs at ``recommend_prefetch`` for it plus that
    own round trip."""
    own_ms = calibrate_own_round_trip_ms(workers, queue_type=queue_type, broker=broker)
    cells = []
    for r in round_trips_ms:
        extra = {recommend_prefetch((r + own_ms) / 1000, task_ms / 1000)} if recommended \
            else set()
        cells += [(r, p) for p in sorted(set(prefetches) | extra)]
    sizes = [tasks_for(seconds, workers, p, r, task_ms / 1000) for r, p in cells]
    rows, done = [], 0
    for (r, p), n in zip(cells, sizes):
        rows.append(measure(FarRun(workers, p, r, task_ms, n, queue_type), broker=broker,
                            progress=chain_progress(progress, done, sum(sizes))))
        done += n
    return pd.DataFrame(rows).assign(own_round_trip_ms=own_ms)


def own_round_trip_ms(grid: pd.DataFrame) -> float:
    """The round trip this machine added by itself when ``grid`` was measured (its own run,
    ``calibrate_own_round_trip_ms``; the median over grids put together)."""
    return round(float(grid["own_round_trip_ms"].median()), 2)


def best_prefetch(grid: pd.DataFrame, share: float = 0.9) -> pd.DataFrame:
    """Per round trip: the best busy fraction measured, the smallest prefetch within ``share``
    of it, and ``recommend_prefetch`` for that round trip plus this machine's own (with the
    grid's prefetch at or above it, and what was measured there)."""
    own_ms = own_round_trip_ms(grid)
    rows = []
    for r, part in grid.groupby("round_trip_ms"):
        part = part.sort_values("prefetch").set_index("prefetch")
        task_s = float(part["task_ms"].iloc[0]) / 1000
        recommended = recommend_prefetch((r + own_ms) / 1000, task_s)
        above = [p for p in part.index if p >= recommended]
        there = above[0] if above else part.index[-1]
        best = part["busy"].max()
        rows.append({"round_trip_ms": r, "recommended": recommended, "grid_prefetch": there,
                     "busy_there": part.at[there, "busy"], "best_busy": best,
                     "busy_there / best": round(part.at[there, "busy"] / best, 2),
                     "smallest_within_90pct": int(part.index[part["busy"] >= share * best][0]),
                     "tasks_per_s_there": part.at[there, "tasks_per_s"],
                     "best_tasks_per_s": part["tasks_per_s"].max()})
    return pd.DataFrame(rows).set_index("round_trip_ms")


def grid_table(grid: pd.DataFrame, value: str = "tasks_per_s") -> pd.DataFrame:
    """``value`` by prefetch (rows) and added round trip (columns); a prefetch run at one
    round trip only (the one recommended there) says so at the others."""
    table = grid.pivot_table(index="prefetch", columns="round_trip_ms", values=value)
    table.columns = [f"{c:g} ms" for c in table.columns]
    table = table.round(1 if value == "tasks_per_s" else 3).astype(object)
    return table.where(table.notna(), "not run at this round trip")


def _bound(ax, prefetches, r_ms: float, task_s: float, rate: bool, **style):
    low, high = min(prefetches), max(prefetches)
    fine = sorted({low, high} | {round(1.2 ** k) for k in range(40)})
    fine = [p for p in fine if low <= p <= high]
    bound = [busy_bound(p, r_ms / 1000, task_s) for p in fine]
    ax.plot(fine, [b / task_s for b in bound] if rate else bound, ":", **style)


def plot_grid(grid: pd.DataFrame, point: dict | None = None):
    """Each worker's tasks/s and busy fraction against its prefetch, one colour per added
    round trip; dotted: the bound ``min(1, p·t / (r + t))`` with this machine's own round
    trip added to ``r``. ``point`` (a ``measure`` row) is a black star, with its bound."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.9))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    own_ms = own_round_trip_ms(grid)
    task_s = float(grid["task_ms"].iloc[0]) / 1000
    prefetches = list(grid["prefetch"]) + ([point["prefetch"]] if point else [])
    for colour, (r, part) in zip(colours, grid.groupby("round_trip_ms")):
        part = part.sort_values("prefetch")
        for ax, key in ((left, "tasks_per_s_per_worker"), (right, "busy")):
            ax.plot(part["prefetch"], part[key], "o-", color=colour, label=f"+{r:g} ms")
            _bound(ax, prefetches, r + own_ms, task_s, ax is left, color=colour)
    if point is not None:
        for ax, key in ((left, "tasks_per_s_per_worker"), (right, "busy")):
            ax.plot([point["prefetch"]], [point[key]], "*", color="black", markersize=15,
                    label=f"your run: +{point['round_trip_ms']:g} ms, prefetch "
                          f"{point['prefetch']}, {point['workers']} workers, "
                          f"{point['task_ms']:g} ms tasks")
            _bound(ax, prefetches, point["round_trip_ms"] + own_ms, point["task_ms"] / 1000,
                   ax is left, color="black")
    workers = int(grid["workers"].iloc[0])
    left.set_title(f"{workers} worker{'s' * (workers > 1)}, tasks of {task_s * 1000:g} ms: "
                   "tasks per second per worker", fontsize=10)
    right.set_title("Busy fraction of the workers", fontsize=10)
    right.set_ylim(0, 1.1)
    ticks = sorted(set(prefetches))
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(p) for p in ticks])
        ax.minorticks_off()
        ax.set_xlabel(f"prefetch_count (dotted: the bound, own round trip {own_ms:g} ms added)")
    left.set_ylabel("tasks / s")
    left.set_ylim(bottom=0)
    right.legend(fontsize=8, loc="lower right", title="round trip added")
    return finish(fig)


# -- the panel ---------------------------------------------------------------------------

def far_panel(grid: pd.DataFrame, broker=None) -> Panel:
    """Notebook 05: one run at a round trip, prefetch, worker count and task length, drawn
    as a star on the measured curves."""
    def report(point: dict) -> list:
        return [plot_grid(grid, point), pd.DataFrame([point]).set_index("round_trip_ms")]

    far = FAR.replace(task_ms=float(grid["task_ms"].iloc[0]),
                      queue_type=str(grid["queue_type"].iloc[0]) if "queue_type" in grid
                      else DEFAULT_QUEUE_KIND)
    return Panel("Workers on a far host: one run, drawn on the curves",
                 declared_run(measure, far), report, {
                     "round_trip_ms": float_slider("round trip added, ms", far.round_trip_ms,
                                                   0.0, 100.0, 1.0),
                     "prefetch": int_slider("prefetch", far.prefetch, 1, 300),
                     "workers": int_slider("workers", far.workers, 1, 8),
                     "task_ms": float_slider("task length, ms", far.task_ms, 1.0, 50.0, 1.0),
                     "queue_type": queue_type(far.queue_type)}, fixed={"broker": broker})
