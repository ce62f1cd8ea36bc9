"""Publishing N persistent tasks three ways, on one broker, in one run.

Run: ``python benchmarks/publish_confirms.py [--tasks 10000]``. Prints messages per second
for pipelined confirms, one confirm per message (tutorial style) and no confirms, and the
ratios between them (the machine is noisy: compare ratios, not absolute rates).
"""
from __future__ import annotations

import argparse
import json
import uuid

from helpers import broker, producer, tasks, topology


def measure(url: str, n: int, confirms: str) -> dict:
    """Publish ``n`` persistent zero-length tasks to a fresh durable queue; return the rates."""
    spec = topology.QueueSpec(f"bench-publish-{confirms}-{uuid.uuid4().hex[:6]}")
    try:
        result = producer.publish(url, spec, tasks.equal(n, 0), confirms=confirms,
                                  name=f"bench publish {confirms}")
        with broker.connect(url) as conn:
            queued = topology.message_count(conn.channel(), spec.name)
    finally:
        with broker.connect(url) as conn:
            topology.delete(conn.channel(), spec)
    return {"confirms": confirms, "tasks": n, "confirmed": len(result.confirmed),
            "queued": queued, "seconds": round(result.elapsed_s, 3), "per_s": round(result.rate)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    found = broker.get()
    rows = [measure(found.url, args.tasks, mode) for mode in ("pipelined", "each", "none")]
    by = {r["confirms"]: r for r in rows}
    print(f"{'confirms':<10} {'tasks':>7} {'confirmed':>9} {'queued':>7} {'seconds':>8} "
          f"{'tasks/s':>8}")
    for r in rows:
        print(f"{r['confirms']:<10} {r['tasks']:>7} {r['confirmed']:>9} {r['queued']:>7} "
              f"{r['seconds']:>8.3f} {r['per_s']:>8}")
    ratios = {"pipelined_over_each": round(by["pipelined"]["per_s"] / by["each"]["per_s"], 2),
              "pipelined_over_none": round(by["pipelined"]["per_s"] / by["none"]["per_s"], 2)}
    print(f"pipelined confirms / one confirm per message: {ratios['pipelined_over_each']}x; "
          f"pipelined confirms / no confirms: {ratios['pipelined_over_none']}x "
          f"(RabbitMQ {found.version()})")
    out = {"rows": rows, **ratios, "broker_version": found.version()}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
