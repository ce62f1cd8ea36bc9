"""Notebook 08's figures, one per scenario, each drawn from a fault run's summary and events
(``helpers.faults.retry``, ``priority``, ``single_active``, ``overflow``, ``shutdown``)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from helpers.lessons.common import finish

COLOURS = {"a": "tab:blue", "b": "tab:orange", "c": "tab:green"}


def retries(result, attempts: list[dict]):
    """Left: the failing task's attempts against the configured delays; right: deliveries
    per second of the hot loop against the delayed retries (log scale)."""
    s = result.summary
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4), width_ratios=[2.2, 1])
    t0 = attempts[0]["started_t"]
    for i, a in enumerate(attempts, 1):
        left.plot([a["started_t"] - t0], [0], "o", color="tab:red")
        left.annotate(str(i), (a["started_t"] - t0, 0), (0, 7), textcoords="offset points",
                      ha="center", fontsize=8)
    rows = []
    for i, (a, b, delay) in enumerate(zip(attempts, attempts[1:], s["delays_s"]), 1):
        x0 = a["failed_t"] - t0
        left.plot([x0, x0 + delay], [-i + 0.12] * 2, color="tab:gray", lw=5,
                  label="configured delay" if i == 1 else None)
        left.plot([x0, b["started_t"] - t0], [-i - 0.12] * 2, color="tab:red", lw=3,
                  label="measured wait" if i == 1 else None)
        rows.append(f"wait {i}")
    left.set_yticks([0] + [-i for i in range(1, len(rows) + 1)], ["attempts"] + rows)
    left.set_ylim(-len(rows) - 0.6, 0.6)
    left.legend(fontsize=8, loc="upper center")
    left.set_xlabel("seconds since the first attempt")
    left.set_title(f"delayed retry: {s['attempts']} attempts, then parked ({s['parked']})")
    rates = [s["hot_loop_deliveries_per_s"], s["delayed_deliveries_per_s"]]
    right.bar(["requeue at once", "delayed retry"], rates, color=["tab:red", "tab:green"])
    right.set_yscale("log")
    right.set_ylabel("deliveries of the failing task / s")
    for x, rate in enumerate(rates):
        right.annotate(f"{rate:g}", (x, rate), ha="center", va="bottom", fontsize=9)
    right.set_title("the same failing task")
    return finish(fig)


def priorities(summary: dict):
    """When each urgent task started, per run (seconds after the first publish)."""
    runs = {"classic, no priority": summary["urgent_start_s_without"],
            "classic, x-max-priority": summary["urgent_start_s_with"],
            "quorum (tasks carry a priority)": summary["urgent_start_s_quorum"],
            f"classic priority, prefetch {summary['big_prefetch']}":
                summary["urgent_start_s_prefetch"]}
    fig, ax = plt.subplots(figsize=(9, 3))
    for y, (label, starts) in enumerate(runs.items()):
        ax.plot(starts, [y] * len(starts), "|", markersize=18, mew=2)
    ax.set_yticks(range(len(runs)), list(runs))
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.set_xlabel("urgent task started, s after the first publish")
    ax.set_title(f"{summary['urgent']} urgent tasks published behind {summary['backlog']} others")
    return finish(fig)


def order(result, runs=("competing", "single-active")):
    """Completion time against step number, per account, for each run."""
    fig, axes = plt.subplots(1, len(runs), figsize=(11, 3.2), sharey=True)
    t0 = result.publish.t_first
    for ax, label in zip(axes, runs):
        done = sorted((e for e in result.events if e["event"] == "finished"
                       and e["worker"].startswith(f"{label}/")), key=lambda e: e["t"])
        for account, colour in COLOURS.items():
            mine = [e for e in done if e["task"].rsplit("-", 2)[-2] == account]
            ax.plot([e["t"] - t0 for e in mine], [int(e["task"][-3:]) for e in mine], ".-",
                    color=colour, lw=0.8, label=f"account {account}")
        key = "out_of_order_competing" if label == "competing" else "out_of_order_single"
        ax.set_title(f"{label}: {result.summary[key]} steps out of order")
        ax.set_xlabel("finished, s")
    axes[0].set_ylabel("step of the account")
    axes[0].legend(fontsize=8)
    return finish(fig)


def backpressure(summary: dict):
    """Confirmed, nacked and lost for each overflow behaviour."""
    rows = {"reject-publish": (summary["confirmed"], summary["nacked"],
                               summary["lost_reject_publish"]),
            "drop-head": (summary["confirmed_drop_head"], 0, summary["lost_drop_head"])}
    fig, ax = plt.subplots(figsize=(8, 3))
    for i, (what, colour) in enumerate((("confirmed", "tab:green"), ("nacks", "tab:orange"),
                                        ("lost", "tab:red"))):
        values = [v[i] for v in rows.values()]
        bars = ax.bar([x + (i - 1) * 0.27 for x in range(2)], values, 0.27, label=what,
                      color=colour)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(2), list(rows))
    ax.set_title(f"{summary['flood']} tasks into a queue of at most {summary['max_length']}")
    ax.legend(fontsize=8)
    return finish(fig)


def shutdown(summary: dict):
    """The rolling restart, each way: redelivered, begun twice, done twice, lost."""
    keys = {"plain (dies)": ("redelivered_sigterm_plain", "started_twice_plain",
                             "duplicates_plain"),
            "graceful": ("redelivered_graceful", "started_twice_graceful", "duplicates_graceful")}
    fig, ax = plt.subplots(figsize=(8, 3))
    for i, (what, colour) in enumerate((("redelivered", "tab:orange"),
                                        ("work begun twice", "tab:red"),
                                        ("done twice", "tab:purple"))):
        values = [summary[k[i]] for k in keys.values()]
        bars = ax.bar([x + (i - 1) * 0.27 for x in range(2)], values, 0.27, label=what,
                      color=colour)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(2), list(keys))
    ax.set_title(f"SIGTERM to each of {summary['restarts']} workers in turn, "
                 f"{summary['rolling_tasks']} tasks")
    ax.legend(fontsize=8)
    return finish(fig)
