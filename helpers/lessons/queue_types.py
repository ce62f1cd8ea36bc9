"""Notebook 05: where quorum and classic queues differ for a consumer with no prefetch limit.

A consumer that never calls ``basic_qos`` (prefetch 0, "unlimited") is sent everything a
classic queue holds. A quorum queue gives such a consumer a fixed credit instead (2000
messages, measured on RabbitMQ 3.10.8 and 4.0.5), so the rest stays ready in the queue for
other consumers.
``unlimited_prefetch`` measures what the running broker does, with pika and nothing else.
"""
from __future__ import annotations

import time

import pandas as pd

from .. import broker as broker_mod
from .. import producer, topology
from ..connection import connect
from ..tasks import Task


def consume_without_limit(channel, queue: str, on_message) -> None:
    """The consumer under test: manual acks, and no ``basic_qos`` call at all."""
    channel.basic_consume(queue=queue, on_message_callback=on_message, auto_ack=False)


def _held_by_one_consumer(url: str, spec: topology.QueueSpec, settle_s: float) -> tuple:
    """Subscribe once, never ack; return (deliveries received, messages still ready)."""
    received = []
    with connect(url, name=f"unlimited {spec.name}") as conn:
        channel = conn.channel()
        consume_without_limit(channel, spec.name, lambda ch, method, props, body:
                              received.append(method.delivery_tag))
        quiet_since, seen = time.monotonic(), -1
        # until nothing new arrived for settle_s: the broker has sent all it will send
        while time.monotonic() - quiet_since < settle_s:
            conn.process_data_events(time_limit=0.05)
            if len(received) != seen:
                seen, quiet_since = len(received), time.monotonic()
        ready = topology.message_count(conn.channel(), spec.name)
    return len(received), ready


def unlimited_prefetch(messages: int = 2500, kinds=("classic", "quorum"),
                       settle_s: float = 0.8, *, broker=None) -> pd.DataFrame:
    """Publish ``messages`` to a queue of each kind; count what one unlimited consumer gets."""
    found = broker or broker_mod.get()
    rows = []
    for kind in kinds:
        with topology.scratch_queue(found.url, f"unlimited-{kind}", kind=kind) as spec:
            work = [Task(f"m{i:05d}", 0.0) for i in range(messages)]
            published = producer.publish(found.url, spec, work, declare_queue=False,
                                         name=f"producer {spec.name}")
            delivered, ready = _held_by_one_consumer(found.url, spec, settle_s)
        rows.append({"queue type": kind, "published": len(published.confirmed),
                     "sent to the consumer (unacked)": delivered,
                     "still ready in the queue": ready})
    out = pd.DataFrame(rows).set_index("queue type")
    out.attrs["broker_version"] = found.version()
    return out
