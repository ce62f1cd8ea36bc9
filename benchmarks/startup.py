"""Start-up: from spawn to every worker consuming, the project's workers beside the tutorial's.

Four ways to start ``n`` workers on one fresh queue, each timed from the first spawn to the
last worker's ``ready`` line (written right after its ``basic.consume``, in both kinds):

* ``tutorial``: ``benchmarks/tutorial_worker.py``, a fresh interpreter that imports pika;
* ``fork-cold``: the project's pool with its fork server not yet running, so its start
  (one interpreter, pika and the worker imported once) is counted in;
* ``fork-warm``: the same with the fork server already running (a notebook's second run);
* ``spawn``: the project's pool without a fork server, one ``python -m helpers.worker`` each.
"""
from __future__ import annotations

import time
import uuid

from helpers.broker.model import Broker
from helpers.pool import forked
from helpers.core import topology
from helpers.core.connection import connect
from helpers.pool.pool import WorkerPool

from . import peers

WAYS = ("tutorial", "fork-cold", "fork-warm", "spawn")


def measure(found: Broker, n: int, way: str, kind: str = "quorum") -> float:
    """Seconds from spawn to all ``n`` workers of ``way`` consuming one fresh queue."""
    spec = topology.QueueSpec(f"bench-startup-{uuid.uuid4().hex[:8]}", kind=kind)
    with connect(found.url, name="bench startup setup") as conn:
        topology.declare(conn.channel(), spec)
    try:
        if way == "tutorial":
            commands = [peers.tutorial_command(found.url, spec, f"t{i}") for i in range(n)]
            with peers.PeerWorkers(commands, {"AMQP_URL": found.url}) as procs:
                return procs.wait_ready_lines(timeout=120)
        if way == "fork-cold":
            forked.stop_all()
        elif way == "fork-warm":
            forked.shared(forked.worker_environment()).start()
        with WorkerPool(found.url, spec, fork_server=way != "spawn") as pool:
            t_spawn = time.time()
            handles = pool.start(n, timeout=120)
            return max(h.ready_t for h in handles) - t_spawn
    finally:
        with connect(found.url, name="bench startup cleanup") as conn:
            topology.delete(conn.channel(), spec)


def compare(found: Broker, sizes, repeats: int, log, kind: str = "quorum") -> dict:
    """``{n: {way: [seconds per repeat]}}``, the ways interleaved, their order alternating."""
    out: dict = {n: {way: [] for way in WAYS} for n in sizes}
    for r in range(repeats):
        order = list(WAYS) if r % 2 == 0 else list(reversed(WAYS))
        for n in sizes:
            for way in order:
                out[n][way].append(measure(found, n, way, kind))
            log(f"  [{r + 1}/{repeats}] start-up of {n:>2}: " + "  ".join(
                f"{way} {out[n][way][-1]:.3f} s" for way in WAYS))
    return out
