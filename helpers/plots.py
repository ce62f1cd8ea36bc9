"""Matplotlib figures: per-worker timeline, per-worker load, queue depth, sweeps.

The one-panel functions (``timeline``, ``load``, ``counts``, ``queue_depth``, ``sweep``)
take an optional ``ax`` (so notebooks can put two side by side) and return the ``Axes``
they drew on; ``run_figure`` and ``compare_runs`` build a whole ``Figure`` and return it.
Nothing here talks to the broker.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

HEAVY = "#d95f02"
LIGHT = "#1b9e77"
CUT = "#e7298a"


def _ax(ax, size=(8, 3)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _seconds_per_char(ax, df: pd.DataFrame, fontsize: float = 7) -> float:
    """How many seconds of the time axis one label character needs (about 0.55 em)."""
    span = max(df["end_s"].max(), df["start_s"].max()) - min(0.0, df["start_s"].min())
    width_in = ax.figure.get_figwidth() * ax.get_position().width
    if not span > 0 or width_in <= 0:
        return 0.0
    return span / width_in * (0.55 * fontsize / 72)


def timeline(df: pd.DataFrame, ax=None, title: str = "Which worker did what, when") -> Axes:
    """Gantt chart: one row per worker, one bar per task from start to finish.

    Heavy tasks (longer than the median) are orange, light ones green; a task whose worker
    died half-way is a pink bar ending in a cross (at its ``end_s`` when the caller filled it
    in with the time of the kill); a redelivered task is hatched. Only bars wide enough for
    their task number are labelled, so short tasks do not pile their labels on each other.
    """
    ax = _ax(ax, (9, 0.6 + 0.45 * max(1, df["worker"].nunique())))
    workers = sorted(df["worker"].dropna().unique(), key=lambda w: (len(w), w))
    rows = {w: i for i, w in enumerate(workers)}
    durations = df.get("duration")
    median = durations.median() if durations is not None and durations.notna().any() else None
    label_tasks = len(df) <= 60  # beyond that, numbers are noise
    per_char = _seconds_per_char(ax, df)
    for r in df.itertuples():
        if pd.isna(r.started_t):
            continue
        start = r.start_s
        cut = pd.isna(r.finished_t)
        end = r.end_s
        if cut and pd.isna(end):
            crash_rows = df[(df["worker"] == r.worker) & df["end_s"].notna()]
            end = max(start + 0.01, crash_rows["end_s"].max() if len(crash_rows) else start)
        color = CUT if cut else (HEAVY if median is not None and r.duration > median else LIGHT)
        ax.barh(rows[r.worker], end - start, left=start, height=0.6, color=color,
                edgecolor="black", linewidth=0.4, hatch="//" if r.redelivered else None)
        if cut:
            ax.plot([end], [rows[r.worker]], marker="x", color="black", markersize=8)
        text = str(r.task).lstrip("t0") or "0"
        if label_tasks and (end - start) > 0 and (end - start) >= per_char * (len(text) + 2):
            ax.text(start + (end - start) / 2, rows[r.worker], text,
                    ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(workers)), workers)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first publish")
    ax.set_title(title)
    return ax


def load(per_worker: pd.DataFrame, ax=None, title: str = "Load per worker") -> Axes:
    """Bars of busy seconds per worker, annotated with the task count."""
    ax = _ax(ax, (6, 3))
    bars = ax.bar(per_worker["worker"], per_worker["busy_s"], color="#7570b3")
    for bar, tasks in zip(bars, per_worker["tasks"]):
        ax.annotate(f"{tasks} tasks", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    mean = per_worker["busy_s"].mean()
    ax.axhline(mean, color="black", linestyle="--", linewidth=0.8, label=f"mean {mean:.2f} s")
    # Name the mean in a corner kept free by the margin (a legend box would hide a bar).
    ax.text(0.01, 0.98, f"dashed: mean {mean:.2f} s", transform=ax.transAxes, ha="left",
            va="top", fontsize=8)
    ax.margins(y=0.25)
    ax.set_ylabel("busy seconds")
    ax.set_title(title)
    return ax


def counts(per_worker: pd.DataFrame, ax=None, title: str = "Tasks per worker") -> Axes:
    """Bars of tasks completed per worker."""
    ax = _ax(ax, (6, 3))
    ax.bar(per_worker["worker"], per_worker["tasks"], color="#66a61e")
    ax.set_ylabel("tasks")
    ax.set_title(title)
    return ax


def queue_depth(samples: pd.DataFrame, ax=None, title: str = "Queue depth over time") -> Axes:
    """Ready and unacknowledged messages against time (from a ``QueueMonitor``)."""
    ax = _ax(ax, (8, 3))
    ax.step(samples["t_s"], samples["messages_ready"], where="post", label="ready")
    ax.step(samples["t_s"], samples["messages_unacknowledged"], where="post",
            label="unacknowledged")
    ax.set_xlabel("seconds")
    ax.set_ylabel("messages")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def sweep(df: pd.DataFrame, x: str, ys: list[str], ax=None, title: str = "",
          xlabel: str | None = None) -> Axes:
    """Line plot of columns ``ys`` against ``x`` (e.g. makespan against prefetch)."""
    ax = _ax(ax, (6, 3))
    for y in ys:
        ax.plot(df[x].astype(str), df[y], marker="o", label=y)
    ax.set_xlabel(xlabel or x)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def run_figure(result, title: str = "") -> Figure:
    """Timeline and load of one ``RunResult`` side by side, as one figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.2),
                                      gridspec_kw={"width_ratios": [2.2, 1]})
    timeline(result.deliveries, ax=left, title=title or "Timeline")
    load(result.per_worker(), ax=right)
    fig.tight_layout()
    return fig


def compare_runs(results: dict) -> Figure:
    """One timeline row per labelled ``RunResult`` (same time axis), plus their loads."""
    n = len(results)
    fig, axes = plt.subplots(n, 2, figsize=(12, 2.6 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1]})
    xmax = max(r.deliveries["end_s"].max() for r in results.values())
    for (label, result), (left, right) in zip(results.items(), axes):
        s = result.summary
        timeline(result.deliveries, ax=left,
                 title=f"{label}: makespan {s['makespan_s']:.2f} s "
                       f"({s['makespan_over_ideal']:.2f}x ideal)")
        left.set_xlim(0, xmax * 1.02)
        load(result.per_worker(), ax=right, title=f"{label}: busy seconds")
    fig.tight_layout()
    return fig
