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

from helpers.measure import figures

HEAVY = "#d95f02"
LIGHT = "#1b9e77"
CUT = "#e7298a"
#: Font sizes (points) of the task numbers in timeline bars and of labels on a plot, large
#: enough to read in a notebook at its default zoom.
TASK_SIZE = 9
LABEL_SIZE = 9


def _ax(ax, size=(8, 3)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _seconds_per_char(ax, df: pd.DataFrame, fontsize: float = TASK_SIZE) -> float:
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
                    ha="center", va="center", fontsize=TASK_SIZE)
    ax.set_yticks(range(len(workers)), workers)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first publish")
    ax.set_title(title)
    return ax


def reference_line(ax, y: float, text: str) -> None:
    """A dashed horizontal line at ``y``, named just outside the frame on the right, where
    no bar or bar label can be under it."""
    ax.axhline(y, color="black", linestyle="--", linewidth=0.8)
    ax.annotate(text, (1, y), xycoords=("axes fraction", "data"), xytext=(3, 0),
                textcoords="offset points", ha="left", va="center", fontsize=LABEL_SIZE)


def _worker_ticks(ax, workers, counts) -> None:
    """Each bar's worker name with its task count under it (never crossed by a line)."""
    ax.set_xticks(range(len(workers)),
                  [f"{w}\n{n} task{'s' if n != 1 else ''}" for w, n in zip(workers, counts)])


def load(per_worker: pd.DataFrame, ax=None, title: str = "Load per worker") -> Axes:
    """Bars of busy seconds per worker; the task count under each bar, the mean beside."""
    ax = _ax(ax, (6, 3))
    ax.bar(range(len(per_worker)), per_worker["busy_s"], color="#7570b3")
    _worker_ticks(ax, list(per_worker["worker"]), list(per_worker["tasks"]))
    mean = per_worker["busy_s"].mean()
    reference_line(ax, mean, f"mean\n{mean:.2f} s")
    ax.margins(y=0.1)
    ax.set_ylabel("busy seconds")
    ax.set_title(title)
    return ax


def counts(per_worker: pd.DataFrame, ax=None, title: str = "Tasks per worker") -> Axes:
    """Bars of tasks completed per worker."""
    ax = _ax(ax, (6, 3))
    ax.bar(range(len(per_worker)), per_worker["tasks"], color="#66a61e")
    ax.set_xticks(range(len(per_worker)), list(per_worker["worker"]))
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
    outside_legend(ax)
    return ax


def outside_legend(ax) -> None:
    """The legend to the right of the frame, where it covers no line."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=LABEL_SIZE, frameon=False)


def mark_time(ax, t: float, text: str) -> None:
    """A dashed vertical line at ``t`` with ``text`` inside the frame, beside the line (to
    its left near the right edge), in a band added above the data so it covers no curve."""
    if not getattr(ax, "_headroom", False):  # once per axes: a band above the data
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top + 0.15 * (top - bottom))
        ax._headroom = True
    ax.axvline(t, color="black", linestyle="--", linewidth=0.8)
    left, right = ax.get_xlim()
    near_right = t > left + 0.75 * (right - left)
    ax.annotate(text, (t, 1), xycoords=("data", "axes fraction"),
                xytext=(-4 if near_right else 4, -4), textcoords="offset points",
                ha="right" if near_right else "left", va="top", fontsize=LABEL_SIZE,
                bbox={"boxstyle": "square,pad=0.15", "facecolor": "white",
                      "edgecolor": "none", "alpha": 0.85})


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
                 title=f"{label}: {figures.text(s, 'makespan_s', '.2f')} "
                       + (f"({s['makespan_over_ideal']:.2f}x ideal)"
                          if figures.defined(s["makespan_over_ideal"]) else "(no ideal)"))
        left.set_xlim(0, xmax * 1.02)
        load(result.per_worker(), ax=right, title=f"{label}: busy seconds")
    fig.tight_layout()
    return fig


def task_legend(fig: Figure, durations) -> None:
    """A legend for the timeline's colours above ``fig``: heavy (longer than the median)
    and light tasks, with their lengths; only the kinds present (one colour for equal
    tasks)."""
    from matplotlib.patches import Patch

    lengths = pd.Series(durations, dtype=float).dropna()
    if lengths.empty:
        return
    median = lengths.median()
    heavy, light = lengths[lengths > median], lengths[lengths <= median]
    span = lambda part: (f"{part.min():g} s" if part.min() == part.max()
                         else f"{part.min():g} to {part.max():g} s")
    handles = [Patch(facecolor=HEAVY, edgecolor="black", label=f"heavy task ({span(heavy)})")
               ] if len(heavy) else []
    handles.append(Patch(facecolor=LIGHT, edgecolor="black",
                         label=f"{'light ' if len(heavy) else ''}task ({span(light)})"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
               fontsize=LABEL_SIZE, bbox_to_anchor=(0.5, 1.0))
    fig.subplots_adjust(top=fig.subplotpars.top - 0.3 / fig.get_figheight())
