"""What the latency proxy costs: throughput and CPU at 0 ms added, against a direct connection.

Run: ``python -m benchmarks.proxy_overhead [--tasks 6000] [--workers 1 8 32] [--repeats 2]``.

Throughput: K workers (``helpers.worker``, prefetch 50) consume N zero-length tasks, the
heaviest traffic per task the project makes (deliver, ack, no work between). Workers connect
directly, through the proxy as its own process (the default), or through the proxy as a
thread of this process (the pool's parent), all at 0 ms added; and through the process
proxy with ``--delayed-ms`` added (at prefetch 50 a round trip of a few ms should not
limit the rate, so that row shows the cost of the proxy's timers). The publisher always connects directly, as a
pool with ``--latency`` would. Reported: tasks/s from first publish to last completion, the
ratio to direct in the same repeat, the proxy's CPU seconds and the share of one core it
used while the tasks ran, and this process's CPU seconds (the pool's event readers; with
the thread proxy, the proxy too).

Accuracy: the round trip added at 5 ms set (median and 90th percentile of passive
declares, minus a direct baseline taken after the same idle time), with this process idle
and with a thread of it spinning in Python (as the pool's readers do under load): a proxy
thread then waits for the GIL, a proxy process does not.

The machine is shared and noisy: the variants are interleaved in each repeat and the table
shows medians; compare ratios, not absolute rates.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid

from helpers.broker import resolve as broker
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.core import tasks, topology
from helpers.core.connection import connect
from helpers.worker.config import WorkerConfig
from helpers.pool.pool import WorkerPool
from helpers.net.proxy import LatencyProxy, round_trips_s

VIAS = ("direct", "process", "thread")


def consume(broker_url: str, via: str, workers: int, n: int, prefetch: int = 50,
            round_trip_ms: float = 0.0) -> dict:
    """K workers connected ``via`` direct/process/thread consume ``n`` zero-length tasks."""
    spec = topology.QueueSpec(f"bench-proxy-{via}-{uuid.uuid4().hex[:6]}")
    proxy = None if via == "direct" else LatencyProxy(broker_url, round_trip_ms,
                                                      in_thread=via == "thread")
    try:
        url = proxy.start() if proxy else broker_url
        with WorkerPool(url, spec, WorkerConfig(prefetch=prefetch)) as pool:
            pool.start(workers, timeout=180)
            cpu0, parent0 = (proxy.cpu_s() if proxy else 0.0), time.process_time()
            published = producer.publish(broker_url, spec, tasks.equal(n, 0.0),
                                         PublishOptions(declare_queue=False,
                                                        name=f"bench publisher {via}"))
            done = pool.wait_for(lambda p: len(p.finished) >= n, 300)
            proxy_cpu = (proxy.cpu_s() - cpu0) if proxy else 0.0
            parent_cpu = time.process_time() - parent0
            t_last = max(e["t"] for e in pool.snapshot() if e["event"] == "finished")
    finally:
        if proxy:
            proxy.stop()
        topology.discard(broker_url, spec)
    elapsed = t_last - published.t_first
    if round_trip_ms:
        via = f"{via}+{round_trip_ms:g}ms"
    return {"via": via, "workers": workers, "tasks": n, "complete": done,
            "elapsed_s": round(elapsed, 3), "tasks_per_s": round(n / elapsed, 1),
            "proxy_cpu_s": round(proxy_cpu, 2), "proxy_core_share": round(proxy_cpu / elapsed, 3),
            "parent_cpu_s": round(parent_cpu, 2)}


def _round_trips_ms(url: str, queue: str, idle_s: float, n: int) -> list[float]:
    return [s * 1000 for s in round_trips_s(url, queue, n, idle_s)]


def accuracy(broker_url: str, round_trip_ms: float = 5.0, n: int = 60) -> list[dict]:
    """Added round trip (median, p90) for process/thread proxies, parent idle or busy."""
    spec = topology.QueueSpec(f"bench-proxy-rtt-{uuid.uuid4().hex[:6]}")
    with connect(broker_url, name="bench proxy rtt") as conn:
        topology.declare(conn.channel(), spec)
    rows = []
    try:
        for busy in (False, True):
            stop = threading.Event()
            spinner = threading.Thread(target=_spin, args=(stop,), daemon=True)
            if busy:
                spinner.start()
            try:
                base = statistics.median(_round_trips_ms(broker_url, spec.name,
                                                         round_trip_ms / 1000, n))
                for via in ("process", "thread"):
                    with LatencyProxy(broker_url, round_trip_ms, in_thread=via == "thread") as url:
                        added = sorted(x - base for x in _round_trips_ms(url, spec.name, 0, n))
                    rows.append({"via": via, "parent": "busy" if busy else "idle",
                                 "set_ms": round_trip_ms,
                                 "added_median_ms": round(statistics.median(added), 3),
                                 "added_p90_ms": round(added[int(0.9 * len(added))], 3)})
            finally:
                stop.set()
                if busy:
                    spinner.join()
    finally:
        topology.discard(broker_url, spec)
    return rows


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))  # pure Python: holds the GIL as a busy event reader would


def table(runs: list[dict], rtt: list[dict]) -> str:
    """The printed report: medians per (workers, via), ratios to direct, then accuracy."""
    lines = [f"{'workers':>7} {'via':>8} {'tasks/s':>8} {'/direct':>8} {'proxy CPU s':>11} "
             f"{'of a core':>9} {'parent CPU s':>12}"]
    for k in sorted({r["workers"] for r in runs}):
        medians = {}
        for via in dict.fromkeys(r["via"] for r in runs):
            rows = [r for r in runs if r["workers"] == k and r["via"] == via]
            if rows:
                medians[via] = {key: statistics.median(r[key] for r in rows) for key in
                                ("tasks_per_s", "proxy_cpu_s", "proxy_core_share",
                                 "parent_cpu_s")}
        for via, m in medians.items():
            ratio = m["tasks_per_s"] / medians["direct"]["tasks_per_s"] if "direct" in medians \
                else float("nan")
            lines.append(f"{k:>7} {via:>8} {m['tasks_per_s']:>8.0f} {ratio:>8.2f} "
                         f"{m['proxy_cpu_s']:>11.2f} {m['proxy_core_share']:>8.0%} "
                         f"{m['parent_cpu_s']:>12.2f}")
    if rtt:
        lines.append("")
        lines.append(f"{'via':>8} {'parent':>6} {'set ms':>6} {'added median':>12} "
                     f"{'added p90':>9}")
        for r in rtt:
            lines.append(f"{r['via']:>8} {r['parent']:>6} {r['set_ms']:>6.1f} "
                         f"{r['added_median_ms']:>12.2f} {r['added_p90_ms']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Entry point: run, print the table, optionally write JSON; return what was measured."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.proxy_overhead",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=6000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--delayed-ms", type=float, default=5.0,
                   help="also run the process proxy with this round trip added (0: not)")
    p.add_argument("--no-accuracy", action="store_true", help="skip the round-trip part")
    p.add_argument("--json", help="write what was measured to this file")
    p.add_argument("--quiet", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    url = broker.get().url
    runs = []
    for repeat in range(args.repeats):
        for k in args.workers:
            variants = [(via, 0.0) for via in VIAS]
            if args.delayed_ms:
                variants.append(("process", args.delayed_ms))
            for via, round_trip_ms in variants:
                row = consume(url, via, k, args.tasks, round_trip_ms=round_trip_ms)
                row["repeat"] = repeat
                runs.append(row)
                if not args.quiet:
                    print(json.dumps(row), flush=True)
    rtt = [] if args.no_accuracy else accuracy(url)
    out = {"runs": runs, "accuracy": rtt, "table": table(runs, rtt)}
    print(out["table"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
