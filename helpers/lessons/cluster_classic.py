"""Notebook 07's contrast: confirmed messages in a classic and a quorum queue on a node that dies.

``park`` leaves ``messages`` confirmed, persistent messages in a classic queue and in a
quorum queue, both declared through one node (the classic queue lives there; the quorum
queue has a copy on every node). ``Parked.probe`` then has a consumer on another node take
what it can of each, within a few seconds (once the quorum queue has a leader on a running
node again), and records what the broker said: call it once while that node is down and
once after it is back.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pandas as pd

from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers import settings
from helpers.core import topology
from helpers.core import tasks as task_lists
from helpers.errors import HelpersError
from helpers.procs import wait_until

KINDS = ("classic", "quorum")


def try_get(url: str, queue: str, limit: int, timeout: float = 3.0) -> dict:
    """Consume (``basic_get`` and ack) up to ``limit`` messages of ``queue``, ``timeout`` s at most.

    Returns ``{"consumed": n, "answer": what the broker said}``. Runs in a subprocess
    (``helpers.lessons.probe``) that is ended at the deadline: RabbitMQ 4.0 keeps a consumer
    of a classic queue whose node is down waiting for over a minute, and does not let go of
    the connection sooner either.
    """
    env = {**os.environ, "PROBE_URL": url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(settings.CHECKOUT),
                                                       os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-m", "helpers.lessons.probe", queue, str(limit)],
                              env=env, capture_output=True, text=True, timeout=timeout)
        out, answer = done.stdout, None
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        answer = f"no answer within {timeout:g} s"
    lines = out.splitlines()
    if answer is None:
        answer = json.loads(lines[-1])["answer"] if lines else "the probe said nothing"
    return {"consumed": sum(line == "1" for line in lines), "answer": answer}


@dataclass
class Parked:
    """Messages parked in a classic and a quorum queue on ``home``, and what probes got."""

    home: str
    specs: dict
    confirmed: dict
    #: probe label -> queue kind -> {"consumed": n, "answer": text, "from": node}
    probes: dict = field(default_factory=dict)

    def probe(self, lab, label: str, timeout: float = 3.0) -> pd.DataFrame:
        """A consumer on another running node takes what it can of each queue (``timeout`` s)."""
        running = [m for m in lab.cluster.members() if m.node_pid()]
        others = [m for m in running if m.nodename != self.home] or running
        if not others:
            raise HelpersError("No node of the cluster is running: start it again "
                               "(`python -m helpers cluster start`).")
        # Right after its leader died, the quorum queue is electing another: give that its
        # moment (up to ``timeout``), as a client retrying would, before asking.
        names = {m.nodename for m in running}
        wait_until(lambda: lab.cluster.leader_of(self.specs["quorum"].name) in names, timeout)
        left = {k: self.confirmed[k] - self.consumed(k) for k in KINDS}
        self.probes[label] = {
            kind: {**try_get(others[0].url, self.specs[kind].name, max(left[kind], 1), timeout),
                   "from": others[0].nodename} for kind in KINDS}
        return self.table()

    def consumed(self, kind: str) -> int:
        """Messages of queue ``kind`` consumed by all the probes so far."""
        return sum(p[kind]["consumed"] for p in self.probes.values())

    def table(self) -> pd.DataFrame:
        """One row per queue: confirmed, then what each probe consumed and was told."""
        columns = {"confirmed": self.confirmed}
        for label, probe in self.probes.items():
            columns[f"{label}: consumed"] = {k: probe[k]["consumed"] for k in KINDS}
            columns[f"{label}: the broker said"] = {k: probe[k]["answer"] for k in KINDS}
        return pd.DataFrame(columns).rename_axis(f"queues on {self.home.split('@')[0]}")

    def accounting(self) -> dict:
        """Jepsen-style rows: every parked message was held by the broker when the node died."""
        return {f"{kind} queue on the killed node": {
            "confirmed": self.confirmed[kind], "completed": min(self.consumed(kind),
                                                                self.confirmed[kind]),
            "lost": max(0, self.confirmed[kind] - self.consumed(kind)),
            "duplicated": max(0, self.consumed(kind) - self.confirmed[kind]),
            "recovered": min(self.consumed(kind), self.confirmed[kind])} for kind in KINDS}

    def discard(self, lab) -> None:
        """Have ``lab`` delete both queues with the experiments' (``Lab.finish``)."""
        lab.discard_later(lab.cluster.urls(running_only=True), *self.specs.values())


def park(lab, messages: int = 50) -> Parked:
    """Publish ``messages`` confirmed messages to a new classic and a new quorum queue, both
    declared through the first running node (where the classic queue then lives)."""
    running = [m for m in lab.cluster.members() if m.node_pid()]
    if not running:
        raise HelpersError("No node of the cluster is running: start it (`python -m helpers "
                           "cluster start`).")
    home = running[0]
    specs = {kind: topology.unique_spec(f"parked-{kind}", kind=kind, dead_letter=False)
             for kind in KINDS}
    confirmed = {}
    for kind, spec in specs.items():
        topology.setup(home.url, spec)
        sent = producer.publish(home.url, spec, task_lists.equal(messages, 0.0),
                                PublishOptions(declare_queue=False, name=f"park {spec.name}"))
        confirmed[kind] = len(sent.confirmed)
    return Parked(home.nodename, specs, confirmed)
