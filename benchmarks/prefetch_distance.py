"""Notebook 05's whole grid, repeated: tasks per second and busy fraction by prefetch and
round trip, medians over the repeats, and ``recommend_prefetch`` beside the measured best.

Run: ``python -m benchmarks.prefetch_distance [--repeats 3] [--workers 2] [--json PATH]``.

One run per (round trip, prefetch, repeat), each ``helpers.lessons.distance.measure``: the
workers behind the pool's latency proxy, equal 5 ms tasks, sized to last about
``--seconds``. Each repeat measures every cell once, in turn, so a burst of load on this
shared machine hits one repeat of a few cells rather than every repeat of one cell. Printed: three tables (the run's throughput as
``run --json`` defines it, completed tasks over makespan; the steady rate per worker, first
to last completion; the median busy fraction), then per round trip the smallest prefetch
within 10 % of the best busy fraction and the recommendation (with this machine's own round
trip, measured at prefetch 1 with nothing added, added to the round trip).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import pandas as pd

from helpers.lessons import distance


def main(argv: list[str] | None = None) -> dict:
    """Measure the grid ``--repeats`` times; print and return the median tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prefetch_distance")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.6)
    parser.add_argument("--round-trips", type=float, nargs="+",
                        default=list(distance.ROUND_TRIPS_MS))
    parser.add_argument("--prefetches", type=int, nargs="+", default=list(distance.PREFETCHES))
    parser.add_argument("--json", help="write the medians and every run here")
    args = parser.parse_args(argv)
    started, loads, runs = time.monotonic(), [], []
    for repeat in range(args.repeats):
        loads.append(os.getloadavg()[0])
        grid = distance.prefetch_grid(args.round_trips, args.prefetches, args.workers,
                                      seconds=args.seconds)
        runs.append(grid.assign(repeat=repeat))
        print(f"repeat {repeat + 1}/{args.repeats} done, load {loads[-1]:.1f}", flush=True)
    every = pd.concat(runs, ignore_index=True)
    medians = every.groupby(["round_trip_ms", "prefetch"], as_index=False).median(
        numeric_only=True)
    tables = {value: distance.grid_table(medians, value)
              for value in ("tasks_per_s", "tasks_per_s_per_worker", "busy")}
    checked = distance.best_prefetch(medians)
    print(f"\n{args.workers} workers, tasks of 5 ms, medians of {args.repeats} runs per cell "
          f"(load {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} CPUs, "
          f"{time.monotonic() - started:.0f} s)")
    for value, table in tables.items():
        print(f"\n{value} by prefetch (rows) and round trip added (columns):")
        print(table.to_string())
    print(f"\nown round trip (prefetch 1, nothing added): "
          f"{distance.own_round_trip_ms(medians)} ms")
    print(checked.to_string())
    out = {"tables": {k: t.to_dict() for k, t in tables.items()},
           "best": checked.reset_index().to_dict("records"), "loads": loads,
           "runs": every.to_dict("records")}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
    return out


if __name__ == "__main__":
    main()
