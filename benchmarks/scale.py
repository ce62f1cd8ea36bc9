"""One big run in a process of its own: N zero-length tasks on K workers (``make bench``).

Run: ``python -m benchmarks.scale --tasks 100000 --workers 32 [--queue-type quorum]
[--peer tutorial]``. Prints one JSON object: completed, lost, duplicates, makespan and
tasks/s, the CPU seconds this process (the pool's parent: publisher, event readers,
summary), the broker and the workers (all of them together, with the fork server that
started them) spent, this process's peak memory, and how long the run's deliveries
DataFrame takes to build from its events. It runs in its own process so that its peak
memory is the run's alone.

``--peer tutorial`` runs the same tasks on the tutorial's workers (``tutorial_worker.py``,
the same publisher): the baseline that tells the harness's cost from the machine's, since
32 of them on 2 cores share the cores with the broker exactly as the project's do.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

from helpers.broker import resolve as broker
from helpers.pool import forked
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.measure import timing
from helpers.core.tasks import Task

from . import peers


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu_s() -> float:
    """CPU seconds of this process's children that have ended and been reaped: the
    workers (a fork server's workers count once the server has reaped them and ended)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _broker_cpu_s(pid: int | None) -> float:
    """CPU seconds of the broker's process so far (nan when it is not a local process)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().split(") ")[-1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return float("nan")


def _peak_mb() -> int:
    """This process's peak memory so far, MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure(tasks: int, workers: int, queue_type: str, peer: str = "project") -> dict:
    """Run ``tasks`` zero-length tasks on ``workers`` workers of ``peer``; return the figures."""
    found = broker.get()
    node_pid = found.status().get("node_pid")  # a private node's; None for others
    work = [Task(f"z{i:06d}", 0.0) for i in range(tasks)]
    cpu0, broker0, load0 = _cpu_s(), _broker_cpu_s(node_pid), os.getloadavg()[0]
    children0, wall0 = _children_cpu_s(), time.monotonic()
    head = {"peer": peer, "tasks": tasks, "workers": workers, "queue_type": queue_type,
            "cores": os.cpu_count(), "load": round(load0, 2)}

    def costs(cpu1: float, broker1: float) -> dict:
        """CPU seconds and wall time since the start; the workers must be reaped by now."""
        return {"parent_cpu_s": round(cpu1 - cpu0, 2), "broker_cpu_s": round(broker1 - broker0, 2),
                "workers_cpu_s": round(_children_cpu_s() - children0, 2),
                "wall_s": round(time.monotonic() - wall0, 2)}

    if peer == "tutorial":
        row = peers.run_peer("tutorial", found, work, workers, timeout=900, kind=queue_type)
        spent = costs(_cpu_s(), _broker_cpu_s(node_pid))  # its workers are reaped by now
        return {**head, "completed": row["tasks_completed"], "complete": row["complete"],
                "makespan_s": row["makespan_s"],
                "tasks_per_s": row["tasks_completed"] / row["makespan_s"],
                "spawn_s": row["spawn_s"], **spent, "parent_peak_mb": _peak_mb()}
    exp = Experiment(workers, work, WorkerConfig(prefetch=1), save=False, label="bench-scale",
                     queue_type=queue_type, timeout=900)
    result = runner.run(exp, broker=found)
    cpu1, broker1 = _cpu_s(), _broker_cpu_s(node_pid)
    forked.stop_all()  # its workers are reaped: their CPU time is now the server's children's
    spent = costs(cpu1, broker1)
    t = time.perf_counter()
    frame = timing.deliveries(result.events, t0=result.publish.t_first, durations=0.0)
    frame_s = time.perf_counter() - t
    s = result.summary
    return {**head, "completed": s["tasks_completed"], "lost": s["tasks_lost"],
            "duplicates": s["duplicates"], "complete": s["completed_in_time"],
            "makespan_s": s["makespan_s"], "tasks_per_s": s["throughput_tps"],
            "publish_s": s["publish"]["elapsed_s"], "spawn_s": s["spawn_s"], **spent,
            "parent_peak_mb": _peak_mb(),  # after the frame: its memory counts
            "frame_rows": len(frame), "frame_s": round(frame_s, 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--queue-type", default="quorum", choices=["classic", "quorum"])
    parser.add_argument("--peer", default="project", choices=["project", "tutorial"])
    args = parser.parse_args(argv)
    row = measure(args.tasks, args.workers, args.queue_type, args.peer)
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
