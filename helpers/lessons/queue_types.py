"""Notebook 05, its last section: where a quorum queue and a classic queue dispatch differently.

The panels run on quorum queues, as today's tutorial declares ``task_queue``; classic queues
are one control away. Two differences touch dispatch, and ``differences`` measures both on
the broker that runs, rather than stating them:

* ``prefetch 0`` means "no limit" to a classic queue; a quorum queue stops at a fixed number
  of unacknowledged messages per consumer (2000 on RabbitMQ 3.10 and 4.0 alike, measured);
* a quorum queue counts the deliveries of each message in its ``x-delivery-count`` header
  (absent on the first delivery from 4.0 on, 0 on 3.10); a classic queue only flags
  ``redelivered``.
"""
from __future__ import annotations

import time

import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.core import topology
from helpers.core.connection import connect
from helpers.settings import QUEUE_KINDS
from helpers.core.tasks import Task

#: Messages published for the prefetch-0 measurement: more than a quorum queue hands out.
UNLIMITED_PROBE = 2100


def held_with_prefetch_0(url: str, spec: topology.QueueSpec, messages: int) -> int:
    """Publish ``messages``; one consumer with no prefetch limit never acks: how many it
    gets before the queue stops sending (delivered and unacked)."""
    producer.publish(url, spec, [Task(f"m{i:05d}", 0.0) for i in range(messages)],
                     PublishOptions(declare_queue=False))
    got: list[int] = []
    with connect(url, name=f"prefetch-0 {spec.name}") as conn:
        channel = conn.channel()
        channel.basic_consume(spec.name, lambda ch, m, p, b: got.append(m.delivery_tag))
        still_since, seen = time.monotonic(), -1
        while len(got) < messages and time.monotonic() - still_since < 1.0:
            conn.process_data_events(time_limit=0.1)
            if len(got) != seen:
                seen, still_since = len(got), time.monotonic()
    return len(got)


def delivery_counts(url: str, spec: topology.QueueSpec, deliveries: int = 3) -> list:
    """One message taken ``deliveries`` times by a consumer that dies before its ack: the
    ``x-delivery-count`` header each time (None: no header)."""
    producer.publish(url, spec, [Task("once", 0.0)], PublishOptions(declare_queue=False))
    counts = []
    for _ in range(deliveries):
        with connect(url, name=f"delivery-count {spec.name}") as conn:
            channel, deadline, method = conn.channel(), time.monotonic() + 10, None
            while method is None and time.monotonic() < deadline:
                method, props, _body = channel.basic_get(spec.name)
                if method is None:
                    time.sleep(0.05)
            counts.append((props.headers or {}).get("x-delivery-count") if method else "?")
        # closed without an ack: the broker takes the message back, as from a dead worker
    return counts


def differences(broker=None, messages: int = UNLIMITED_PROBE) -> pd.DataFrame:
    """Both measurements on a fresh queue of each type; one column per type."""
    broker = broker or broker_mod.get()
    out = {}
    for kind in QUEUE_KINDS:
        with topology.scratch_queue(broker.url, f"types-{kind}", kind=kind,
                                    dead_letter=False) as spec:
            held = held_with_prefetch_0(broker.url, spec, messages)
        with topology.scratch_queue(broker.url, f"counts-{kind}", kind=kind,
                                    dead_letter=False) as spec:
            counts = delivery_counts(broker.url, spec)
        out[f"{kind} queue"] = {
            f"unacked held by one prefetch-0 consumer (of {messages})": held,
            "x-delivery-count on deliveries 1, 2, 3": ", ".join(
                "-" if c is None else str(c) for c in counts)}
    table = pd.DataFrame(out)
    table.columns.name = f"RabbitMQ {broker.version()}"
    return table
