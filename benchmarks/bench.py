"""The project's workers beside their peers, on one broker, in one run (``make bench``).

Measures, for the project's workers (``helpers.runner``), minimal tutorial-style pika
workers (``benchmarks/tutorial_worker.py``) and Celery (``benchmarks/celery_app.py``):

* dispatch efficiency, makespan / ideal makespan at prefetch 1, on an odd-heavy workload
  (400 tasks, 8 workers, 50 ms / 5 ms) and a skewed one (300 tasks, 6 workers,
  log-normal durations around 20 ms, seeded);
* overhead: 2,000 zero-length tasks on 4 workers, tasks per second (the project records
  every event of every task while doing it);
* start-up: from spawn to all 8 workers consuming (taken from the odd-heavy runs);

and then publishing (``publish_confirms``) and scaling (makespan against 1 to 16 of the
project's workers, sleeping and CPU-bound tasks). The machine is shared and noisy, so each
comparison is repeated with the peers interleaved, and the table reports medians, the
spread (min-max) and ratios taken within the same run, never a lone absolute time.

Run: ``python -m benchmarks.bench [--repeats 3] [--quick] [--json PATH] [--plot PATH]``.
"""
from __future__ import annotations

import argparse
import compileall
import datetime
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

from helpers import broker, producer, runner, timing, topology
from helpers.connection import connect
from helpers.pool import WorkerPool
from helpers.settings import CHECKOUT
from helpers.tasks import Task, odd_heavy  # odd tasks heavy: the fair-dispatch workload

from . import peers, publish_confirms

PEERS = ("project", "tutorial", "celery")
FIGURES = CHECKOUT / "docs" / "figures"

#: Full sizes (the issue's) and the quick ones the test uses so the harness cannot rot.
SIZES = {
    "full": dict(odd_tasks=400, odd_workers=8, heavy=0.05, light=0.005, skew_tasks=300,
                 skew_workers=6, skew_median=0.02, zero_tasks=2000, zero_workers=4,
                 publish_tasks=10_000, scale_workers=list(range(1, 17)), scale_tasks=48,
                 scale_sleep=0.04, scale_cpu=0.02),
    "quick": dict(odd_tasks=16, odd_workers=2, heavy=0.02, light=0.002, skew_tasks=12,
                  skew_workers=2, skew_median=0.005, zero_tasks=40, zero_workers=2,
                  publish_tasks=200, scale_workers=[1, 2], scale_tasks=4, scale_sleep=0.01,
                  scale_cpu=0.005),
}

TARGETS = {"dispatch": 1.03, "zero_vs_tutorial": 1.0, "startup_vs_tutorial": 1.0,
           "confirmed_vs_unconfirmed": 0.7}


# -- workloads ---------------------------------------------------------------------------
def skewed(n: int, median: float, seed: int = 5, sigma: float = 0.6) -> list[Task]:
    """Log-normal durations with the given median, rounded to 0.1 ms, from a fixed seed."""
    rng = random.Random(seed)
    return [Task(f"s{i:05d}", round(rng.lognormvariate(math.log(median), sigma), 4))
            for i in range(1, n + 1)]


# -- one measurement per peer ------------------------------------------------------------
def run_once(peer: str, found: broker.Broker, tasks: list[Task], workers: int) -> dict:
    """Makespan, ideal and spawn time of ``tasks`` on ``workers`` workers of ``peer``."""
    if peer != "project":
        return peers.run_peer(peer, found, tasks, workers)
    result = runner.run(workers, 1, tasks, broker=found, save=False, label="bench")
    s, d = result.summary, result.deliveries
    done = d[d["finished_t"].notna()]
    return {"peer": peer, "workers": workers, "tasks": len(tasks),
            "tasks_completed": s["tasks_completed"], "complete": s["completed_in_time"],
            "makespan_s": s["makespan_s"], "ideal_makespan_s": s["ideal_makespan_s"],
            "makespan_over_ideal": s["makespan_over_ideal"], "spawn_s": s["spawn_s"],
            **peers.gaps(list(zip(done["worker"], done["started_t"], done["finished_t"])),
                         result.publish.t_first)}


def compare(found: broker.Broker, sizes: dict, repeats: int, peer_list, log) -> dict:
    """Dispatch, overhead and start-up for every peer, interleaved ``repeats`` times."""
    workloads = {
        "odd-heavy": (odd_heavy(sizes["odd_tasks"], sizes["heavy"], sizes["light"]),
                      sizes["odd_workers"]),
        "skewed": (skewed(sizes["skew_tasks"], sizes["skew_median"]), sizes["skew_workers"]),
        "zero-length": ([Task(f"z{i:05d}", 0.0) for i in range(1, sizes["zero_tasks"] + 1)],
                        sizes["zero_workers"]),
    }
    runs: dict = {name: {p: [] for p in peer_list} for name in workloads}
    for r in range(repeats):
        order = list(peer_list) if r % 2 == 0 else list(reversed(peer_list))
        for name, (tasks, workers) in workloads.items():
            for peer in order:
                t = time.monotonic()
                row = run_once(peer, found, tasks, workers)
                runs[name][peer].append(row)
                log(f"  [{r + 1}/{repeats}] {name:<11} {peer:<8} makespan/ideal "
                    f"{row['makespan_over_ideal']:.3f}  gap {row['gap_ms']:.2f} ms  "
                    f"first {row['first_start_ms']:.1f} ms  spawn {row['spawn_s']:.2f} s  "
                    f"({'complete' if row['complete'] else 'INCOMPLETE'}, "
                    f"{time.monotonic() - t:.1f} s)")
    return runs


def measure_publishing(found: broker.Broker, n: int, log) -> dict:
    """``publish_confirms``: pipelined, one confirm per message, none (two ways)."""
    rows = {}
    for mode in publish_confirms.MODES:
        rows[mode] = publish_confirms.measure(found.url, n, mode)
        log(f"  publish {mode:<10} {rows[mode]['per_s']:>7} tasks/s")
    return rows


def measure_scaling(found: broker.Broker, sizes: dict, log) -> list[dict]:
    """Makespan against the number of the project's workers, sleeping and CPU-bound tasks.

    One pool grows one worker at a time; at each size every worker is consuming before
    the round's first publish, and each round has its own task ids.
    """
    spec = topology.QueueSpec(f"bench-scaling-{uuid.uuid4().hex[:8]}", kind="classic")
    rows = []
    with connect(found.url, name="bench scaling setup") as conn:
        topology.declare(conn.channel(), spec)
    try:
        with WorkerPool(found.url, spec, prefetch=1) as pool:
            for k in sizes["scale_workers"]:
                pool.add(k - len(pool.alive()))
                names = [h.name for h in pool.alive()]
                for kind, seconds in (("sleep", sizes["scale_sleep"]),
                                      ("cpu", sizes["scale_cpu"])):
                    tasks = [Task(f"k{k}-{kind}-{i:03d}", seconds, kind)
                             for i in range(sizes["scale_tasks"])]
                    ids = {t.id for t in tasks}
                    published = producer.publish(found.url, spec, tasks, declare_queue=False,
                                                 name=f"producer {spec.name}")
                    pool.wait_for(lambda p: all(p.finished[i] for i in ids),
                                  timeout=120)
                    events = [e for e in pool.snapshot() if e.get("task") in ids]
                    s = timing.summarize(events, published.published, published.confirmed,
                                         {t.id: t.duration for t in tasks}, names,
                                         published.t_first)
                    rows.append({"workers": k, "kind": kind, "tasks": len(tasks),
                                 "task_s": seconds, "makespan_s": s["makespan_s"],
                                 "ideal_makespan_s": s["ideal_makespan_s"],
                                 "completed": s["tasks_completed"]})
                log(f"  scaling k={k:<2} sleep {rows[-2]['makespan_s']:.3f} s  "
                    f"cpu {rows[-1]['makespan_s']:.3f} s")
    finally:
        with connect(found.url, name="bench scaling cleanup") as conn:
            topology.delete(conn.channel(), spec)
    return rows


# -- the report --------------------------------------------------------------------------
def _median(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def figures(runs: dict, publishing: dict, scaling: list[dict]) -> dict:
    """The headline figures and ratios, each a median over the repeats."""
    out: dict = {}
    for name in ("odd-heavy", "skewed"):
        for peer, rows in runs[name].items():
            out[f"{name}:{peer}"] = [r["makespan_over_ideal"] if r["complete"] else float("nan")
                                     for r in rows]
    for peer, rows in runs["zero-length"].items():
        out[f"zero:{peer}"] = [r["tasks"] / r["makespan_s"] if r["complete"] else float("nan")
                               for r in rows]
    for name in ("odd-heavy", "skewed", "zero-length"):
        for peer, rows in runs[name].items():
            out[f"gap-{name}:{peer}"] = [r["gap_ms"] for r in rows]
    for peer, rows in runs["odd-heavy"].items():
        out[f"first-odd-heavy:{peer}"] = [r["first_start_ms"] for r in rows]
        out[f"startup:{peer}"] = [r["spawn_s"] for r in rows]
    # Ratios within the same repeat (same minute, same load), then their median.
    for peer in ("tutorial", "celery"):
        if f"zero:{peer}" in out:
            out[f"zero:project/{peer}"] = [a / b for a, b in zip(out["zero:project"],
                                                                 out[f"zero:{peer}"])]
            out[f"startup:project/{peer}"] = [a / b for a, b in zip(out["startup:project"],
                                                                    out[f"startup:{peer}"])]
    return out


def _cell(values, fmt: str) -> str:
    values = [v for v in values or [] if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-" \
           f"{fmt.format(max(values))})"


def render(fig: dict, publishing: dict, peer_list, meta: dict, repeats: int) -> str:
    """One text table: every figure with its spread, then the targets with the ratios."""
    sizes = meta["sizes"]
    lines = [f"Benchmarks side by side, {meta['date']}",
             f"{meta['machine']}; RabbitMQ {meta['rabbitmq']}, Python {meta['python']}",
             f"median of {repeats} interleaved runs (min-max); ratios are taken within each "
             "run, then the median", ""]
    if fig:
        width = 24
        head = f"{'':<36}" + "".join(f"{p:>{width}}" for p in peer_list)
        lines += [head, "-" * len(head)]
        rows = [
            (f"odd-heavy {sizes['odd_tasks']}/{sizes['odd_workers']}w, makespan/ideal",
             "odd-heavy", "{:.3f}"),
            (f"skewed {sizes['skew_tasks']}/{sizes['skew_workers']}w, makespan/ideal",
             "skewed", "{:.3f}"),
            (f"zero-length {sizes['zero_tasks']}/{sizes['zero_workers']}w, tasks/s",
             "zero", "{:.0f}"),
            (f"start-up of {sizes['odd_workers']} workers, s", "startup", "{:.2f}"),
            ("where dispatch time goes (odd-heavy):", None, None),
            ("  idle gap between tasks, ms", "gap-odd-heavy", "{:.2f}"),
            ("  first publish to first start, ms", "first-odd-heavy", "{:.1f}"),
            ("  zero-length: gap between tasks, ms", "gap-zero-length", "{:.2f}"),
        ]
        for label, key, fmt in rows:
            if key is None:
                lines.append(label)
                continue
            lines.append(f"{label:<36}" + "".join(f"{_cell(fig.get(f'{key}:{p}'), fmt):>{width}}"
                                                  for p in peer_list))
        lines.append("")
    if publishing:
        n = next(iter(publishing.values()))["tasks"]
        lines.append(f"publishing {n:,} persistent tasks   tasks/s   (s to last confirm or "
                     "last byte sent; s until all queued)")
        for mode, r in publishing.items():
            lines.append(f"  {mode:<32}{r['per_s']:>7}   ({r['seconds']:.2f} s; "
                         f"{r['until_queued_s']:.2f} s)")
        lines.append("")
    lines.append(f"{'target (ratios from this run)':<50}{'measured':>10}{'target':>10}  met")
    for label, value, target, met in target_checks(fig, publishing):
        mark = "-" if target == "(info)" else ("yes" if met else "NO")
        lines.append(f"{label:<50}{value:>10.3f}{target:>10}  {mark}")
    return "\n".join(lines)


def target_checks(fig: dict, publishing: dict) -> list[tuple]:
    """(label, measured, target text, met) for each target of the issue."""
    checks = []
    if fig:
        for name in ("odd-heavy", "skewed"):
            v = _median(fig.get(f"{name}:project", []))
            checks.append((f"project {name}: makespan/ideal", v, f"<= {TARGETS['dispatch']}",
                           v <= TARGETS["dispatch"]))
            for peer in ("tutorial", "celery"):
                if f"{name}:{peer}" in fig:
                    v = _median(fig[f"{name}:{peer}"])
                    checks.append((f"  {peer} {name}: makespan/ideal", v, "(info)", True))
    if "zero:project/tutorial" in fig:
        v = _median(fig["zero:project/tutorial"])
        t = TARGETS["zero_vs_tutorial"]
        checks.append(("zero-length tasks/s, project / tutorial", v, f">= {t}", v >= t))
    if "zero:project/celery" in fig:
        v = _median(fig["zero:project/celery"])
        checks.append(("  zero-length tasks/s, project / celery", v, "(info)", True))
    if "startup:project/tutorial" in fig:
        v = _median(fig["startup:project/tutorial"])
        t = TARGETS["startup_vs_tutorial"]
        checks.append(("start-up time, project / tutorial", v, f"<= {t}", v <= t))
    if publishing:
        p = publishing
        best = max(p["none"]["per_s"], p["none-async"]["per_s"])
        v = p["pipelined"]["per_s"] / best
        t = TARGETS["confirmed_vs_unconfirmed"]
        checks.append(("pipelined confirms / fastest unconfirmed", v, f">= {t}", v >= t))
        queued = {m: r["tasks"] / r["until_queued_s"] for m, r in p.items()}
        v = queued["pipelined"] / max(queued["none"], queued["none-async"])
        checks.append(("  the same, both timed until all queued", v, "(info)", True))
        v = p["pipelined"]["per_s"] / p["none"]["per_s"]
        checks.append(("  pipelined / unconfirmed tutorial-style", v, "(info)", True))
        v = p["pipelined"]["per_s"] / p["each"]["per_s"]
        checks.append(("  pipelined / one confirm per message", v, "(info)", True))
    return checks


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
    ax2.set_title("Dispatch efficiency at prefetch 1")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{meta['date']}, {meta['machine']}, RabbitMQ {meta['rabbitmq']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> str:
    """A short description of this machine, for the table and the README."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({model}), " \
           f"load {load:.2f} at start"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per measure")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test)")
    parser.add_argument("--no-celery", action="store_true", help="leave Celery out")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["compare", "publishing", "scaling"])
    parser.add_argument("--json", default=str(CHECKOUT / "build" / "bench.json"))
    parser.add_argument("--plot", default=str(FIGURES / "bench-side-by-side.png"))
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    args = parser.parse_args(argv)
    sizes = SIZES["quick" if args.quick else "full"]

    def log(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    # Start-up is measured for an installed package, as users run it: with its bytecode
    # cached. Where PYTHONDONTWRITEBYTECODE is set (this project's sessions set it), each of
    # the project's workers would otherwise compile helpers/ from source as it starts, a
    # cost the tutorial worker, whose only import is the already compiled pika, never pays.
    compileall.compile_dir(str(CHECKOUT / "helpers"), quiet=1)
    compileall.compile_dir(str(CHECKOUT / "benchmarks"), quiet=1)
    found = broker.get()
    peer_list = [p for p in PEERS
                 if not (p == "celery" and (args.no_celery or not peers.celery_available()))]
    if "celery" not in peer_list and not args.no_celery:
        log("Celery is not installed (pip install -e '.[bench]'): leaving it out.")
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": machine(), "rabbitmq": found.version(),
            "python": platform.python_version(), "sizes": sizes, "repeats": args.repeats}
    started = time.monotonic()
    runs, publishing, scaling = {}, {}, []
    if "compare" not in args.skip:
        log("dispatch, overhead and start-up:")
        runs = compare(found, sizes, args.repeats, peer_list, log)
    if "publishing" not in args.skip:
        log("publishing:")
        publishing = measure_publishing(found, sizes["publish_tasks"], log)
    if "scaling" not in args.skip:
        log("scaling:")
        scaling = measure_scaling(found, sizes, log)
    fig = figures(runs, publishing, scaling) if runs else {}
    table = render(fig, publishing, peer_list, meta, args.repeats)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    print(table)
    print(f"\n(took {meta['elapsed_s']:.0f} s)")
    if args.plot and (scaling or runs):
        plot(scaling, runs, Path(args.plot), meta)
        print(f"plot: {args.plot}")
    out = {"meta": meta, "runs": runs, "publishing": publishing, "scaling": scaling,
           "figures": fig, "targets": [list(c) for c in target_checks(fig, publishing)],
           "table": table}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"figures: {args.json}")
    return out


if __name__ == "__main__":
    main()
