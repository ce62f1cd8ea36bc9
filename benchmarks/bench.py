"""The project's workers beside their peers, on one broker, in one run (``make bench``).

Measures, for the project's workers (``helpers.experiment.skeleton``), minimal tutorial-style pika
workers (``benchmarks/tutorial_worker.py``) and Celery (``benchmarks/celery_app.py``):

* dispatch efficiency, makespan / ideal makespan at prefetch 1, on an odd-heavy workload
  (400 tasks, 8 workers, 50 ms / 5 ms) and a skewed one (300 tasks, 6 workers,
  log-normal durations around 20 ms, seeded);
* overhead: 2,000 zero-length tasks on 4 workers, tasks per second (the project records
  every event of every task while doing it);
* start-up: from spawn to all 8 workers consuming (taken from the odd-heavy runs);

the same dispatch workloads with the project's other modes (prefetch 2, and the reserve
mode of ``helpers.worker.reserve``), on quorum queues (the default) and classic ones; start-up of
1, 8 and 32 workers (``startup``: the fork server cold and warm, fresh interpreters, the
tutorial's); publishing (``publish_confirms``) on both queue types; a big run (``scale``:
100,000 zero-length tasks on 8 and 32 workers, each in a process of its own); and scaling
(makespan against 1 to 16 of the project's workers, sleeping and CPU-bound tasks). The
machine is shared and noisy, so each comparison is repeated with the peers interleaved,
and the table reports medians, the spread (min-max) and ratios taken within the same run,
never a lone absolute time. ``benchmarks.report`` renders the table and the targets.

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
import subprocess
import sys
import time
import uuid
from pathlib import Path

from helpers.broker import resolve as broker
from helpers.broker.model import Broker
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.measure import figures, timing
from helpers.core import topology
from helpers.core.connection import connect
from helpers.pool.pool import WorkerPool
from helpers.settings import CHECKOUT
from helpers.core.tasks import Task, odd_heavy  # odd tasks heavy: the fair-dispatch workload

from . import peers, publish_confirms, report, startup

PEERS = ("project", "tutorial", "celery")
#: The project's other dispatch modes, measured on the same workloads (not on zero-length).
VARIANTS = ("project-p2", "project-reserve")
#: Who runs the big runs: the project, and the tutorial's workers as the machine's baseline.
BIG_PEERS = ("project", "tutorial")
#: Queue types, the default first; Celery runs on classic queues only.
KINDS = ("quorum", "classic")
FIGURES = CHECKOUT / "docs" / "figures"

#: Full sizes (the issue's) and the quick ones the test uses so the harness cannot rot.
SIZES = {
    "full": dict(odd_tasks=400, odd_workers=8, heavy=0.05, light=0.005, skew_tasks=300,
                 skew_workers=6, skew_median=0.02, zero_tasks=2000, zero_workers=4,
                 publish_tasks=10_000, scale_workers=list(range(1, 17)), scale_tasks=48,
                 scale_sleep=0.04, scale_cpu=0.02, startup_workers=[1, 8, 32],
                 big_tasks=100_000, big_workers=[8, 32]),
    "quick": dict(odd_tasks=16, odd_workers=2, heavy=0.02, light=0.002, skew_tasks=12,
                  skew_workers=2, skew_median=0.005, zero_tasks=40, zero_workers=2,
                  publish_tasks=200, scale_workers=[1, 2], scale_tasks=4, scale_sleep=0.01,
                  scale_cpu=0.005, startup_workers=[1, 2], big_tasks=200, big_workers=[1, 2]),
}


# -- workloads ---------------------------------------------------------------------------
def skewed(n: int, median: float, seed: int = 5, sigma: float = 0.6) -> list[Task]:
    """Log-normal durations with the given median, rounded to 0.1 ms, from a fixed seed."""
    rng = random.Random(seed)
    return [Task(f"s{i:05d}", round(rng.lognormvariate(math.log(median), sigma), 4))
            for i in range(1, n + 1)]


# -- one measurement per peer ------------------------------------------------------------
def _nan_if_none(value) -> float:
    """A figure the summary has as None (it cannot be computed) as NaN, for the medians."""
    return float("nan") if value is None else value


def run_once(peer: str, found: Broker, tasks: list[Task], workers: int,
             kind: str = "classic") -> dict:
    """Makespan, ideal and spawn time of ``tasks`` on ``workers`` workers of ``peer``."""
    if not peer.startswith("project"):
        return peers.run_peer(peer, found, tasks, workers, kind=kind)
    prefetch, options = {"project": (1, {}), "project-p2": (2, {}),
                         "project-reserve": (2, {"reserve": True})}[peer]
    config = WorkerConfig(prefetch=prefetch, **options)
    exp = Experiment(workers, tasks, config, queue_type=kind, label="bench", save=False)
    result = runner.run(exp, broker=found)
    s, d = result.summary, result.deliveries
    done = d[d["finished_t"].notna()]
    counts = [e.get("delivery_count") or 0 for e in result.events if e["event"] == "delivered"]
    return {"peer": peer, "workers": workers, "tasks": len(tasks), "kind": kind,
            "tasks_completed": s["tasks_completed"], "complete": s["completed_in_time"],
            "makespan_s": s["makespan_s"], "ideal_makespan_s": s["ideal_makespan_s"],
            # None (tasks of no length have no ideal) is NaN here: the medians skip it
            "makespan_over_ideal": _nan_if_none(s["makespan_over_ideal"]), "spawn_s": s["spawn_s"],
            "duplicates": s["duplicates"], "redeliveries": s["redeliveries"],
            "handed_back": s["handed_back"], "max_delivery_count": max(counts, default=0),
            **peers.gaps(list(zip(done["worker"], done["started_t"], done["finished_t"])),
                         result.publish.t_first)}


def compare(found: Broker, sizes: dict, repeats: int, peer_list, log,
            kind: str = "classic") -> dict:
    """Dispatch, overhead and start-up for every peer, interleaved ``repeats`` times."""
    workloads = {
        "odd-heavy": (odd_heavy(sizes["odd_tasks"], sizes["heavy"], sizes["light"]),
                      sizes["odd_workers"]),
        "skewed": (skewed(sizes["skew_tasks"], sizes["skew_median"]), sizes["skew_workers"]),
        "zero-length": ([Task(f"z{i:05d}", 0.0) for i in range(1, sizes["zero_tasks"] + 1)],
                        sizes["zero_workers"]),
    }
    runs: dict = {name: {p: [] for p in peer_list
                         if not (name == "zero-length" and p in VARIANTS)}
                  for name in workloads}
    for r in range(repeats):
        for name, (tasks, workers) in workloads.items():
            order = list(runs[name]) if r % 2 == 0 else list(reversed(runs[name]))
            for peer in order:
                t = time.monotonic()
                row = run_once(peer, found, tasks, workers, kind)
                row["greedy_floor"] = peers.greedy_floor(
                    [task.duration for task in tasks], workers, row["gap_ms"] / 1000,
                    row["first_start_ms"] / 1000)
                runs[name][peer].append(row)
                log(f"  [{r + 1}/{repeats}] {kind:<7} {name:<11} {peer:<15} "
                    f"{figures.text(row, 'makespan_over_ideal')}  gap {row['gap_ms']:.2f} ms  "
                    f"first {row['first_start_ms']:.1f} ms  tail {row['tail_ms']:.1f} ms  "
                    f"spawn {row['spawn_s']:.2f} s  "
                    f"({'complete' if row['complete'] else 'INCOMPLETE'}, "
                    f"{time.monotonic() - t:.1f} s, load {os.getloadavg()[0]:.1f})")
    return runs


def measure_publishing(found: Broker, n: int, repeats: int, log) -> dict:
    """``publish_confirms`` on each queue type: ``{kind: {mode: [row per repeat]}}``; one
    confirm per message (slow, and far from the target either way) is measured once."""
    out: dict = {kind: {mode: [] for mode in publish_confirms.MODES} for kind in KINDS}
    for r in range(repeats):
        for kind in KINDS:
            modes = [m for m in publish_confirms.MODES if m != "each" or r == 0]
            for mode in modes if r % 2 == 0 else reversed(modes):
                out[kind][mode].append(publish_confirms.measure(found.url, n, mode, kind))
            log(f"  [{r + 1}/{repeats}] publish {kind:<7} " + "  ".join(
                f"{m} {out[kind][m][-1]['until_queued_s']:.3f} s" for m in modes))
    return out


def measure_big(sizes: dict, log) -> list[dict]:
    """``benchmarks.scale`` runs, each in a process of its own (its peak memory is its own)."""
    rows = []
    for kind in KINDS:
        for workers in sizes["big_workers"]:
            for peer in BIG_PEERS:
                proc = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--tasks",
                                       str(sizes["big_tasks"]), "--workers", str(workers),
                                       "--queue-type", kind, "--peer", peer],
                                      capture_output=True, text=True, cwd=str(CHECKOUT),
                                      timeout=1800)
                if proc.returncode != 0:
                    log(f"  big run {kind} {workers} {peer} workers failed: "
                        f"{proc.stderr.strip()[-300:]}")
                    rows.append({"peer": peer, "queue_type": kind, "workers": workers,
                                 "complete": False, "tasks": sizes["big_tasks"], "completed": 0})
                    continue
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                frame = f", frame {r['frame_s']:.2f} s" if "frame_s" in r else ""
                log(f"  big run {kind:<7} {workers:>2} {peer:<8} workers: {r['completed']}/"
                    f"{r['tasks']} in {r['makespan_s']:.1f} s, {r['tasks_per_s']:.0f} tasks/s, "
                    f"parent {r['parent_peak_mb']} MB, cpu {r['parent_cpu_s']} s, broker cpu "
                    f"{r['broker_cpu_s']} s, workers cpu {r['workers_cpu_s']} s{frame}, "
                    f"load {r['load']}")
    return rows


def measure_scaling(found: Broker, sizes: dict, log) -> list[dict]:
    """Makespan against the number of the project's workers, sleeping and CPU-bound tasks.

    One pool grows one worker at a time; at each size every worker is consuming before
    the round's first publish, and each round has its own task ids.
    """
    spec = topology.QueueSpec(f"bench-scaling-{uuid.uuid4().hex[:8]}", kind="classic")
    rows = []
    with connect(found.url, name="bench scaling setup") as conn:
        topology.declare(conn.channel(), spec)
    try:
        with WorkerPool(found.url, spec, WorkerConfig(prefetch=1)) as pool:
            for k in sizes["scale_workers"]:
                pool.add(k - len(pool.alive()))
                names = [h.name for h in pool.alive()]
                for kind, seconds in (("sleep", sizes["scale_sleep"]),
                                      ("cpu", sizes["scale_cpu"])):
                    tasks = [Task(f"k{k}-{kind}-{i:03d}", seconds, kind)
                             for i in range(sizes["scale_tasks"])]
                    ids = {t.id for t in tasks}
                    published = producer.publish(found.url, spec, tasks, PublishOptions(
                        declare_queue=False, name=f"producer {spec.name}"))
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


SECTIONS = ["compare", "startup", "publishing", "big", "scaling"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per measure")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test)")
    parser.add_argument("--no-celery", action="store_true", help="leave Celery out")
    parser.add_argument("--skip", action="append", default=[], choices=SECTIONS)
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
    out: dict = {"meta": meta, "runs": {}, "startup": {}, "publishing": {}, "big": [],
                 "scaling": []}
    if "compare" not in args.skip:
        for kind in KINDS:
            log(f"dispatch, overhead and start-up ({kind} queues):")
            peers_here = [p for p in peer_list if kind == "classic" or p != "celery"]
            peers_here = peers_here[:1] + list(VARIANTS) + peers_here[1:]
            out["runs"][kind] = compare(found, sizes, args.repeats, peers_here, log, kind)
    if "startup" not in args.skip:
        log("start-up (quorum queue):")
        out["startup"] = startup.compare(found, sizes["startup_workers"], args.repeats, log)
    if "publishing" not in args.skip:
        log("publishing:")
        out["publishing"] = measure_publishing(found, sizes["publish_tasks"], args.repeats,
                                               log)
    if "big" not in args.skip:
        log("big runs:")
        out["big"] = measure_big(sizes, log)
    if "scaling" not in args.skip:
        log("scaling:")
        out["scaling"] = measure_scaling(found, sizes, log)
    out["figures"] = report.figures(out)
    out["targets"] = [list(c) for c in report.target_checks(out)]
    out["table"] = table = report.render(out, peer_list)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    print(table)
    print(f"\n(took {meta['elapsed_s']:.0f} s)")
    if args.plot and (out["scaling"] or out["runs"]):
        report.plot(out["scaling"], out["runs"].get("quorum", {}), Path(args.plot), meta)
        print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"figures: {args.json}")
    return out


if __name__ == "__main__":
    main()
