"""Notebook 06's figures: one per scenario, from the result of ``helpers.lessons.pitfalls``.

Times are seconds since each run's first publish. Timelines are ``helpers.measure.plots.timeline``
(pink with a cross: cut off; hatched: redelivered); red lines mark the moments a worker
lost its connection or consumer.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from helpers.measure import plots
from helpers.lessons.common import finish

LOST = "#b00020"


def _run_events(result, label: str) -> list[dict]:
    return [e for e in result.events if str(e.get("worker", "")).startswith(f"{label}/")]


def _t0(df: pd.DataFrame) -> float:
    """A run's first publish, from its deliveries (``started_t - start_s``)."""
    started = df.dropna(subset=["started_t", "start_s"])
    return float((started["started_t"] - started["start_s"]).iloc[0]) if len(started) else 0.0


def _with_cuts_ended(df: pd.DataFrame, end_s: float) -> pd.DataFrame:
    """Bars cut off by the end of the run (never finished) drawn up to that end."""
    df = df.copy()
    open_rows = df["started_t"].notna() & df["finished_t"].isna()
    df.loc[open_rows, "end_s"] = end_s
    return df


def timelines(result, titles: dict | None = None):
    """One timeline per run of a scenario, one time axis; red lines: connection lost.

    With ``broker_cut_s`` in the summary (the heartbeat scenario), a grey dotted line marks
    where the broker gave up on each blocking delivery (that long after it began).
    """
    labels = result.summary["runs"]
    fig, axes = plt.subplots(len(labels), 1, figsize=(10, 1.2 + 1.1 * len(labels)),
                             squeeze=False, sharex=True)
    xmax = 0.0
    for ax, label in zip(axes[:, 0], labels):
        df = result.deliveries[result.deliveries["run"] == label]
        t0 = _t0(df)
        events = _run_events(result, label)
        end = max(e["t"] for e in events) - t0 if events else 0.0
        plots.timeline(_with_cuts_ended(df, end), ax=ax, title=(titles or {}).get(label, label))
        for e in events:
            if e["event"] in ("disconnected", "cancelled"):
                ax.axvline(e["t"] - t0, color=LOST, linewidth=1.2)
        cut = result.summary.get("broker_cut_s")
        if cut and label == "blocking":
            for start in df["start_s"].dropna():
                ax.axvline(start + cut, color="black", linestyle=":", linewidth=2, zorder=5)
        ax.set_xlabel("")
        xmax = max(xmax, end)
    axes[-1, 0].set_xlim(0, xmax * 1.03 or 1)
    dotted = "; dotted: the broker gives up" if result.summary.get("broker_cut_s") else ""
    axes[-1, 0].set_xlabel("seconds since the first publish (red: the worker lost its "
                           f"connection{dotted}; pink: cut off; hatched: redelivered)")
    return finish(fig)


def poison_curves(result, titles: dict | None = None):
    """Per run: the poison's deliveries and the good tasks done, counted over time."""
    labels = result.summary["runs"]
    fig, axes = plt.subplots(1, len(labels), figsize=(11, 3), squeeze=False, sharey=True)
    for ax, label in zip(axes[0], labels):
        df = result.deliveries[result.deliveries["run"] == label]
        t0 = _t0(df)
        events = sorted(_run_events(result, label), key=lambda e: e["t"])
        poison = [e["t"] - t0 for e in events
                  if e["event"] == "delivered" and "poison" in str(e["task"])]
        good = sorted({e["task"]: e["t"] - t0 for e in reversed(events)
                       if e["event"] == "finished" and "poison" not in str(e["task"])}.values())
        end = events[-1]["t"] - t0 if events else 0.0
        for times, name, color in ((poison, "poison deliveries", LOST),
                                   (good, "good tasks done", plots.LIGHT)):
            ax.step([0.0, *times, end], [*range(len(times) + 1), len(times)], where="post",
                    label=name, color=color)
        ax.set_title((titles or {}).get(label, label), fontsize=10)
        ax.set_xlabel("seconds")
    axes[0, 0].set_ylabel("count")
    axes[0, 0].legend(fontsize=8)
    return finish(fig)


def duplicate_figure(result):
    """The run's timeline: a cross where a worker died after the work, before the ack."""
    df = result.deliveries
    fig, ax = plt.subplots(figsize=(10, 1 + 0.4 * df["worker"].nunique()))
    plots.timeline(df, ax=ax, title="Workers dying between a task's side effect and its ack "
                                    "(hatched: delivered again, done again)")
    t0 = _t0(df)
    rows = {w: i for i, w in enumerate(sorted(df["worker"].dropna().unique(),
                                              key=lambda w: (len(w), w)))}
    for e in result.events:
        if e["event"] == "crashed" and e["worker"] in rows:
            ax.plot([e["t"] - t0], [rows[e["worker"]]], marker="x", color=LOST, markersize=10)
    return finish(fig)


def alarm_figure(result):
    """Tasks confirmed to the producer and done by the workers over time; the alarm shaded."""
    s = result.summary
    df = result.deliveries
    done = sorted(df.dropna(subset=["end_s"]).drop_duplicates("task")["end_s"])
    confirmed = s["confirmed_at_s"]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.axvspan(s["alarm_raised_at_s"], s["alarm_cleared_at_s"], color="#fdd0a2",
               label="disk alarm on")
    if s["blocked_s"] > 0:
        ax.axvspan(s["blocked_at_s"], s["unblocked_at_s"], ymax=0.08, color=LOST,
                   label="producer blocked")
    ax.step([0.0, *confirmed], range(len(confirmed) + 1), where="post",
            label="published (confirmed)", color="#7570b3")
    ax.step([0.0, *done], range(len(done) + 1), where="post", label="done by the workers",
            color=plots.LIGHT)
    ax.set_xlabel("seconds since the first publish")
    ax.set_ylabel("tasks")
    ax.set_title("A disk alarm: publishing stops, the workers go on")
    ax.legend(fontsize=8, loc="upper left")
    return finish(fig)


def figure(result, titles: dict | None = None):
    """The figure of any scenario's result (``titles``: of the runs, for timelines)."""
    name = result.summary["fault"]
    if name == "poison":
        return poison_curves(result, titles)
    if name == "duplicate":
        return duplicate_figure(result)
    if name == "alarm":
        return alarm_figure(result)
    return timelines(result, titles)
