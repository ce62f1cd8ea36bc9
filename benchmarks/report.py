"""The table ``make bench`` prints: every figure with its spread, then each target of issue
14 as measured in the same run (ratios within a repeat, then their median), met or not."""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

#: The targets (issue 14): dispatch goal, start-up and confirms ratios, the big run's limits.
TARGETS = {"dispatch": 1.03, "vs_tutorial": 1.0, "zero_vs_tutorial": 1.0,
           "startup_vs_tutorial": 1.0, "confirmed_vs_unconfirmed": 0.7, "big_memory_mb": 500,
           "big_tps_32_over_8": 0.9, "frame_s": 2.0}
WORKLOADS = ("odd-heavy", "skewed")


def _finite(values):
    return [v for v in values or [] if v is not None and not math.isnan(v)]


def _median(values):
    values = _finite(values)
    return statistics.median(values) if values else float("nan")


def _cell(values, fmt: str) -> str:
    values = _finite(values)
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-" \
           f"{fmt.format(max(values))})"


def figures(out: dict) -> dict:
    """Per-repeat lists of every headline figure, keyed ``kind:what:peer``."""
    fig: dict = {}
    for kind, runs in out["runs"].items():
        for name in WORKLOADS:
            for peer, rows in runs[name].items():
                fig[f"{kind}:{name}:{peer}"] = [r["makespan_over_ideal"] if r["complete"]
                                                else float("nan") for r in rows]
                fig[f"{kind}:gap-{name}:{peer}"] = [r["gap_ms"] for r in rows]
                for what in ("first_start_ms", "tail_ms", "greedy_floor"):
                    fig[f"{kind}:{what}-{name}:{peer}"] = [r.get(what, float("nan"))
                                                           for r in rows]
                fig[f"{kind}:handed-{name}:{peer}"] = [r.get("handed_back", 0) for r in rows]
                fig[f"{kind}:dcount-{name}:{peer}"] = [r.get("max_delivery_count", 0)
                                                       for r in rows]
        for peer, rows in runs["zero-length"].items():
            fig[f"{kind}:zero:{peer}"] = [r["tasks"] / r["makespan_s"] if r["complete"]
                                          else float("nan") for r in rows]
        for peer, rows in runs["odd-heavy"].items():
            fig[f"{kind}:spawn8:{peer}"] = [r["spawn_s"] for r in rows]
    return fig


def target_checks(out: dict) -> list[tuple]:
    """(label, measured, target text, met) for each target of the issue; info rows: met None."""
    fig, checks = out.get("figures") or figures(out), []
    for kind in out["runs"]:
        for name in WORKLOADS:
            ours, theirs = fig[f"{kind}:{name}:project"], fig.get(f"{kind}:{name}:tutorial")
            if theirs:
                worst = max((a / b for a, b in zip(ours, theirs)), default=float("nan"))
                checks.append((f"{kind} {name} p1: project/tutorial, worst repeat", worst,
                               f"<= {TARGETS['vs_tutorial']}", worst <= TARGETS["vs_tutorial"]))
            for peer in ("project", "project-p2", "project-reserve"):
                v = _median(fig.get(f"{kind}:{name}:{peer}"))
                goal = peer == "project-reserve"
                mode = {"project": "p1", "project-p2": "p2"}.get(peer, "reserve")
                checks.append((f"  {kind} {name} {mode}: makespan/ideal",
                               v, f"<= {TARGETS['dispatch']}" if goal else "(info)",
                               v <= TARGETS["dispatch"] if goal else None))
        ours, theirs = fig.get(f"{kind}:zero:project"), fig.get(f"{kind}:zero:tutorial")
        if ours and theirs:
            v = _median([a / b for a, b in zip(ours, theirs)])
            checks.append((f"{kind} zero-length tasks/s, project/tutorial", v,
                           f">= {TARGETS['zero_vs_tutorial']}", v >= TARGETS["zero_vs_tutorial"]))
    for n, ways in (out.get("startup") or {}).items():
        v = _median([a / b for a, b in zip(ways["fork-cold"], ways["tutorial"])])
        checks.append((f"start-up of {n}: project (cold fork server)/tutorial", v,
                       f"<= {TARGETS['startup_vs_tutorial']}", v <= TARGETS["startup_vs_tutorial"]))
        v = _median([a / b for a, b in zip(ways["fork-warm"], ways["tutorial"])])
        checks.append((f"  start-up of {n}: warm fork server/tutorial", v, "(info)", None))
    for kind, modes in (out.get("publishing") or {}).items():
        rate = {m: [r["tasks"] / r["until_queued_s"] for r in rows] for m, rows in modes.items()}
        best = [max(a, b) for a, b in zip(rate["none"], rate["none-async"])]
        v = _median([a / b for a, b in zip(rate["pipelined"], best)])
        checks.append((f"{kind} confirms/fastest unconfirmed, until queued", v,
                       f">= {TARGETS['confirmed_vs_unconfirmed']}",
                       v >= TARGETS["confirmed_vs_unconfirmed"]))
    big = out.get("big") or []
    for kind in dict.fromkeys(r["queue_type"] for r in big):
        rows = sorted((r for r in big if r["queue_type"] == kind
                       and r.get("peer", "project") == "project"), key=lambda r: r["workers"])
        tutorial = sorted((r for r in big if r["queue_type"] == kind
                           and r.get("peer") == "tutorial" and "makespan_s" in r),
                          key=lambda r: r["workers"])
        most, least = rows[-1], rows[0]
        done = most.get("completed", 0) == most["tasks"]
        checks.append((f"{kind} big run on {most['workers']}: tasks completed", most.get(
            "completed", 0), f"= {most['tasks']}", done))
        if done:
            checks.append((f"  {kind} big run: parent peak memory, MB", most["parent_peak_mb"],
                           f"< {TARGETS['big_memory_mb']}",
                           most["parent_peak_mb"] < TARGETS["big_memory_mb"]))
            v = most["tasks_per_s"] / least["tasks_per_s"]
            checks.append((f"  {kind} tasks/s, {most['workers']} over {least['workers']} workers",
                           v, f">= {TARGETS['big_tps_32_over_8']}",
                           v >= TARGETS["big_tps_32_over_8"]))
            if len(tutorial) > 1:  # the same on the tutorial's workers: the machine's share
                checks.append((f"  {kind} same, tutorial's workers", tutorial[-1]["tasks_per_s"]
                               / tutorial[0]["tasks_per_s"], "(info)", None))
                for r in tutorial:
                    mine = [x for x in rows if x["workers"] == r["workers"] and "makespan_s" in x]
                    if mine:
                        checks.append((f"  {kind} tasks/s on {r['workers']}, project/tutorial",
                                       mine[0]["tasks_per_s"] / r["tasks_per_s"], "(info)", None))
            checks.append((f"  {kind} deliveries frame of {most['frame_rows']} rows, s",
                           most["frame_s"], f"< {TARGETS['frame_s']}",
                           most["frame_s"] < TARGETS["frame_s"]))
    return checks


def render(out: dict, peer_list) -> str:
    """The whole table as text."""
    meta, fig = out["meta"], out.get("figures") or figures(out)
    sizes = meta["sizes"]
    lines = [f"Benchmarks side by side, {meta['date']}",
             f"{meta['machine']}; RabbitMQ {meta['rabbitmq']}, Python {meta['python']}",
             f"median of {meta['repeats']} interleaved runs (min-max); ratios are taken within "
             "each run, then the median", ""]
    for kind, runs in out["runs"].items():
        peers = list(runs["odd-heavy"])
        width = 21
        head = f"{kind + ' queues':<34}" + "".join(f"{p:>{width}}" for p in peers)
        lines += [head, "-" * len(head)]
        rows = [(f"odd-heavy {sizes['odd_tasks']}/{sizes['odd_workers']}w, m/ideal", "odd-heavy",
                 "{:.3f}"),
                (f"skewed {sizes['skew_tasks']}/{sizes['skew_workers']}w, m/ideal", "skewed",
                 "{:.3f}"),
                ("  idle gap between tasks, ms", "gap-odd-heavy", "{:.2f}"),
                ("  first publish to first start, ms", "first_start_ms-odd-heavy", "{:.1f}"),
                ("  tail (last end - mean), ms", "tail_ms-odd-heavy", "{:.1f}"),
                ("  greedy floor at that gap+first", "greedy_floor-odd-heavy", "{:.3f}"),
                ("  same, skewed", "greedy_floor-skewed", "{:.3f}"),
                ("  handed back (odd-heavy)", "handed-odd-heavy", "{:.0f}"),
                ("  handed back (skewed)", "handed-skewed", "{:.0f}"),
                ("  most x-delivery-count seen", "dcount-odd-heavy", "{:.0f}"),
                (f"zero-length {sizes['zero_tasks']}/{sizes['zero_workers']}w, tasks/s", "zero",
                 "{:.0f}"),
                (f"start-up of {sizes['odd_workers']} in those runs, s", "spawn8", "{:.2f}")]
        for label, key, fmt in rows:
            lines.append(f"{label:<34}" + "".join(
                f"{_cell(fig.get(f'{kind}:{key}:{p}'), fmt):>{width}}" for p in peers))
        lines.append("")
    if out["runs"]:
        lines += ["greedy floor: makespan/ideal of dispatching the tasks in queue order, each to "
                  "the worker free first,", "with that run's own gap and first start as its only "
                  "costs (helpers.measure.timing.greedy_floor)", ""]
    if out.get("startup"):
        ways = list(next(iter(out["startup"].values())))
        lines.append(f"{'start-up to all consuming, s':<34}" + "".join(f"{w:>21}" for w in ways))
        for n, by_way in out["startup"].items():
            lines.append(f"{f'  {n} workers':<34}" + "".join(
                f"{_cell(by_way[w], '{:.3f}'):>21}" for w in ways))
        lines.append("")
    for kind, modes in (out.get("publishing") or {}).items():
        n = modes["pipelined"][0]["tasks"]
        lines.append(f"publishing {n:,} persistent tasks, {kind}: s until all queued "
                     "(s to last confirm or last byte sent)")
        for mode, rows in modes.items():
            lines.append(f"  {mode:<12}{_cell([r['until_queued_s'] for r in rows], '{:.3f}'):>24}"
                         f"   ({_cell([r['seconds'] for r in rows], '{:.3f}')})")
        lines.append("")
    if out.get("big"):
        lines.append("big runs (zero-length tasks, prefetch 1)             done    tasks/s  "
                     "parent MB  cpu s: parent broker workers  cores busy  frame s  load")
        for r in out["big"]:
            who = f"{r['queue_type']:<8}{r['workers']:>3} {r.get('peer', 'project'):<8}"
            if "makespan_s" not in r:
                lines.append(f"  {who} workers   FAILED")
                continue
            frame = f"{r['frame_s']:>8.2f}" if "frame_s" in r else f"{'-':>8}"
            lines.append(f"  {who} workers, {r['tasks']:>7} "
                         f"tasks  {r['completed']:>8} {r['tasks_per_s']:>9.0f} "
                         f"{r['parent_peak_mb']:>10} {r['parent_cpu_s']:>13} "
                         f"{r['broker_cpu_s']:>6} {r.get('workers_cpu_s', float('nan')):>7} "
                         f"{_cores_busy(r):>11.2f} {frame} {r['load']:>5}")
        lines.append("  (workers: all of them, spawn to exit; cores busy: the three CPU figures "
                     f"over the run's wall time; other jobs' load is not in them; {os.cpu_count()} "
                     "cores)")
        lines.append("")
    lines.append(f"{'target (ratios from this run)':<56}{'measured':>10}{'target':>10}  met")
    for label, value, target, met in target_checks(out):
        mark = "-" if met is None else ("yes" if met else "NO")
        shown = f"{value:>10d}" if isinstance(value, int) else f"{value:>10.3f}"
        lines.append(f"{label:<56}{shown}{target:>10}  {mark}")
    return "\n".join(lines)


def _cores_busy(row: dict) -> float:
    """Cores the run's own processes kept busy on average: their CPU seconds over the run's
    wall time (spawn to the workers' exit: the span the three CPU figures cover)."""
    cpu = row["parent_cpu_s"] + row["broker_cpu_s"] + row.get("workers_cpu_s", float("nan"))
    return cpu / row["wall_s"] if row.get("wall_s") else float("nan")


def plot(scaling: list[dict], runs: dict, path: Path, meta: dict) -> None:
    """Scaling (makespan against workers) and dispatch efficiency per peer, one figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    cores = os.cpu_count() or 1
    for kind, color in (("sleep", "#1b9e77"), ("cpu", "#d95f02")):
        rows = [r for r in scaling if r["kind"] == kind]
        if not rows:
            continue
        ks = [r["workers"] for r in rows]
        ax1.plot(ks, [r["makespan_s"] for r in rows], "o-", color=color,
                 label=f"{kind} tasks ({rows[0]['tasks']} x {rows[0]['task_s'] * 1000:.0f} ms)")
        floor = [r["ideal_makespan_s"] if kind == "sleep" else
                 r["tasks"] * r["task_s"] / min(r["workers"], cores) for r in rows]
        ax1.plot(ks, floor, "--", color=color, alpha=0.6,
                 label="ideal" if kind == "sleep" else f"ideal on {cores} cores")
    ax1.set_xlabel("workers")
    ax1.set_ylabel("makespan (s)")
    ax1.set_yscale("log")
    ax1.set_title(f"Scaling: the project's workers on {cores} cores")
    if scaling:
        ax1.legend(fontsize=8)
    names = [n for n in ("odd-heavy", "skewed") if n in runs]
    peer_list = list(next(iter(runs.values())).keys()) if runs else []
    width = 0.8 / max(1, len(peer_list))
    for j, peer in enumerate(peer_list):
        meds = [_median([r["makespan_over_ideal"] for r in runs[n][peer]]) for n in names]
        ax2.bar([i + j * width for i in range(len(names))], meds, width, label=peer)
    ax2.axhline(TARGETS["dispatch"], color="black", linestyle=":", label="target")
    ax2.set_xticks([i + width * (len(peer_list) - 1) / 2 for i in range(len(names))], names)
    ax2.set_ylim(0.95, None)
    ax2.set_ylabel("makespan / ideal (lower is better)")
    ax2.set_title("Dispatch efficiency, quorum queues (p1, p2, reserve)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{meta['date']}, {meta['machine']}, RabbitMQ {meta['rabbitmq']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


