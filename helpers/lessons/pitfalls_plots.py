"""Notebook 06's figures: one per scenario, from the result of ``helpers.lessons.pitfalls``.

Times are seconds since each run's first publish. Timelines are ``helpers.measure.plots.timeline``
(pink with a cross: cut off; hatched: redelivered); red lines mark the moments a worker
lost its connection or consumer, named by what the run's own events say happened (``ends``).
The consumer-timeout figure (``timeout_timelines``) draws every delivery, the work each one
got, and what became of its ack.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from helpers.measure import plots
from helpers.lessons.common import finish

LOST = "#b00020"
#: what ended a worker's consumer, from its events: a "disconnected" event's reason (pika's
#: exception), or the worker's "cancelled" event (a basic.cancel from the broker)
END_WORDS = {"channel": "the broker closed the channel",
             "cancel": "the broker cancelled the consumer",
             "connection": "the worker lost its connection"}


def ends(events: list[dict]) -> list[tuple[float, str]]:
    """When and how each consumer of ``events`` was ended: ``(t, kind)``, ``kind`` a key of
    ``END_WORDS``. A cancel is followed by the worker's own "disconnected" (it closes and
    consumes again): that one is the same end, not a second."""
    out = []
    for e in sorted(events, key=lambda e: e["t"]):
        reason = str(e.get("reason", ""))
        if e["event"] == "cancelled":
            out.append((e["t"], "cancel"))
        elif e["event"] == "disconnected" and "ConsumerCancelled" not in reason:
            out.append((e["t"], "channel" if "ChannelClosedByBroker" in reason
                        else "connection"))
    return out


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
        for t, _kind in ends(events):
            ax.axvline(t - t0, color=LOST, linewidth=1.2)
        cut = result.summary.get("broker_cut_s")
        if cut and label == "blocking":
            for start in df["start_s"].dropna():
                ax.axvline(start + cut, color="black", linestyle=":", linewidth=2, zorder=5)
        ax.set_xlabel("")
        xmax = max(xmax, end)
    axes[-1, 0].set_xlim(0, xmax * 1.03 or 1)
    dotted = "; dotted: the broker gives up" if result.summary.get("broker_cut_s") else ""
    kinds = sorted({kind for _t, kind in ends(result.events)})
    red = " or ".join(END_WORDS[k].replace("the worker ", "") for k in kinds) or "nothing"
    axes[-1, 0].set_xlabel(f"seconds since the first publish (red: {red}{dotted}; pink: cut "
                           "off; hatched: redelivered)")
    return finish(fig)


def deliveries_of(events: list[dict]) -> list[dict]:
    """Each delivery of one worker's ``events``, in order: when it came (``delivered``),
    its work (``started``, ``finished``), when the broker took it back (``taken_back``: the
    first end of the consumer after it came) and its fate: ``acked``, ``ack lost``,
    ``dropped`` (never started: its channel was gone first) or ``cut off`` (the run ended)."""
    events = sorted(events, key=lambda e: e["t"])
    stops = [t for t, _kind in ends(events)]
    out: dict = {}
    for e in events:
        if e["event"] == "delivered":
            out[e["delivery"]] = {"delivered": e["t"], "redelivered": bool(e.get("redelivered")),
                                  "taken_back": next((t for t in stops if t > e["t"]), None)}
        elif e.get("delivery") in out:
            fate = {"acked": "acked", "abandoned": "dropped"}.get(e["event"])
            if e["event"] == "failed" and "ack lost" in str(e.get("reason", "")):
                fate = "ack lost"
            if e["event"] in ("started", "finished"):
                out[e["delivery"]][e["event"]] = e["t"]
            elif fate:
                out[e["delivery"]]["fate"] = fate
    for d in out.values():
        d.setdefault("fate", "cut off")
    return list(out.values())


FATE_MARKS = {"acked": ("o", plots.LIGHT, "ack accepted"),
              "ack lost": ("x", LOST, "ack refused: its channel was gone"),
              "dropped": ("s", "grey", "dropped unstarted: its channel was gone first"),
              "cut off": ("|", "black", "still in hand when the run ended")}


def timeout_timelines(result, titles: dict | None = None):
    """The consumer-timeout runs: every delivery (a numbered triangle), the work it got
    (green while the delivery was the worker's, pink once the broker had taken it back),
    the wait of a delivery queued behind work in hand (dotted), and its ack's fate."""
    labels = result.summary["runs"]
    fig, axes = plt.subplots(len(labels), 1, figsize=(10, 1.6 + 1.25 * len(labels)),
                             squeeze=False, sharex=True)
    xmax, kinds, fates = 0.0, set(), set()
    for ax, label in zip(axes[:, 0], labels):
        events = _run_events(result, label)
        t0 = _t0(result.deliveries[result.deliveries["run"] == label])
        end = max(e["t"] for e in events) if events else t0
        mine = deliveries_of(events)
        for n, d in enumerate(mine, start=1):
            ax.plot(d["delivered"] - t0, 0.6, marker="v", color="black", markersize=7)
            ax.text(d["delivered"] - t0, 1.0, str(n), ha="center", va="center", fontsize=8)
            began = d.get("started")
            stop = d.get("finished", end)
            waited = began if began is not None else stop
            if waited - d["delivered"] > 0.02:  # queued behind the work in hand
                ax.plot([d["delivered"] - t0, waited - t0], [0.6, 0.6], ":", color="grey")
            if began is not None:
                back = d["taken_back"] if d["taken_back"] is not None else stop
                for a, b, colour in ((began, min(back, stop), plots.LIGHT),
                                     (max(began, back), stop, plots.CUT)):
                    if b > a:
                        ax.barh(0, b - a, left=a - t0, height=0.5, color=colour,
                                edgecolor="black", linewidth=0.4,
                                hatch="//" if d["redelivered"] else None)
            marker, colour, _words = FATE_MARKS[d["fate"]]
            ax.plot(stop - t0, 0.6 if d["fate"] == "dropped" else 0, marker=marker,
                    color=colour, markersize=7, mew=2, zorder=6)
            fates.add(d["fate"])
        acked = sum(d["fate"] == "acked" for d in mine)
        done = sum("finished" in d for d in mine)
        title = (titles or {}).get(label, label)
        for t, kind in ends(events):
            ax.axvline(t - t0, color=LOST, linewidth=1.2, linestyle="-" if kind != "cancel"
                       else "--")
            kinds.add(kind)
        ax.set_ylim(-0.45, 1.25)
        ax.set_yticks([])
        ax.set_title(f"{title}: {len(mine)} deliver{'y' if len(mine) == 1 else 'ies'}, "
                     f"work done {done}, acked {acked}", fontsize=10)
        xmax = max(xmax, end - t0)
    axes[-1, 0].set_xlim(-0.08, xmax * 1.03 or 1)
    axes[-1, 0].set_xlabel("seconds since the run's first publish")
    handles = [Line2D([], [], marker="v", color="black", ls="none", label="a delivery (numbered)"),
               Patch(facecolor=plots.LIGHT, edgecolor="black", label="work, delivery held"),
               Patch(facecolor=plots.CUT, edgecolor="black",
                     label="work on after the broker took it back"),
               Patch(facecolor="white", edgecolor="black", hatch="//", label="redelivered"),
               Line2D([], [], ls=":", color="grey", label="waiting behind the work in hand")]
    handles += [Line2D([], [], color=LOST, ls="--" if k == "cancel" else "-", label=END_WORDS[k])
                for k in sorted(kinds)]
    handles += [Line2D([], [], marker=FATE_MARKS[f][0], color=FATE_MARKS[f][1], mew=2,
                       ls="none", label=FATE_MARKS[f][2]) for f in FATE_MARKS if f in fates]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.01 + 0.04 * ((len(handles) + 2) // 3), 1, 1))
    plt.close(fig)
    return fig


def poison_curves(result, titles: dict | None = None):
    """Per run: the poison's deliveries and the good tasks done, counted over time."""
    labels = result.summary["runs"]
    fig, axes = plt.subplots(1, len(labels), figsize=(11, 3), squeeze=False, sharey=True,
                             sharex=True)  # one time axis: the runs compare at a glance
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
    if name == "consumer-timeout":
        return timeout_timelines(result, titles)
    return timelines(result, titles)
