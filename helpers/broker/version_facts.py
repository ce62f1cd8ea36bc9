"""Probes for what differs between RabbitMQ versions, each measured on a live broker.

One small function per fact: it declares its own uniquely named queue (``vf-...``, outside
the project's dead-letter policy), measures, deletes what it made, and returns a plain
value (JSON-friendly). ``data/version_facts.json`` keeps what they returned per series
("3.10", "4.0", "4.3") and on which broker version; ``tests/test_version_facts.py``
measures them again on the running broker and compares. The consumer-timeout probes, which
change node settings through ``rabbitmqctl``, are in ``helpers.broker.version_facts_timeout``.
"""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path

from helpers.broker.model import Broker
from helpers.core.connection import connect
from helpers.settings import CHECKOUT

#: The pinned table: series -> fact -> {"value": ..., "measured_on": "4.3.6"}.
FACTS_FILE = CHECKOUT / "data" / "version_facts.json"
#: How many deliveries a loop tries before it calls a message "still looping".
TRIES = 30


def series(version: str) -> str:
    """``"4.3"`` for ``"4.3.6"``: the key of the pinned table."""
    return ".".join(version.split(".")[:2])


def pinned(version: str, path: Path = FACTS_FILE) -> dict | None:
    """The pinned facts of ``version``'s series, as ``{fact: value}`` (None: not pinned)."""
    row = json.loads(path.read_text()).get(series(version))
    return None if row is None else {k: v["value"] for k, v in row.items()}


def server_version(url: str) -> str:
    """The version the broker announces on connect."""
    with connect(url, name="vf-version") as conn:
        version = conn._impl.server_properties.get("version", b"?")
    return version.decode() if isinstance(version, bytes) else str(version)


def unique(what: str) -> str:
    return f"vf-{what}-{uuid.uuid4().hex[:8]}"


def delete(url: str, *queues: str) -> None:
    with connect(url, name="vf-cleanup") as conn:
        channel = conn.channel()
        for name in queues:
            channel.queue_delete(name)


def get(channel, queue: str, wait_s: float = 2.0):
    """``basic_get`` polled until a (requeued) message is ready again, or None after
    ``wait_s``: (method, properties) or None."""
    deadline = time.monotonic() + wait_s
    while True:
        method, props, _body = channel.basic_get(queue, auto_ack=False)
        if method is not None:
            return method, props
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def quorum(channel, name: str, **arguments) -> None:
    channel.queue_declare(name, durable=True,
                          arguments={"x-queue-type": "quorum", **arguments})


def counts(props) -> dict:
    """The redelivery counters a message carries (None: absent)."""
    headers = props.headers or {}
    return {"x-delivery-count": headers.get("x-delivery-count"),
            "x-acquired-count": headers.get("x-acquired-count")}


# -- the delivery limit ---------------------------------------------------------------------

def default_delivery_limit(url: str) -> int | None:
    """A quorum queue without ``x-delivery-limit`` and without a dead-letter exchange: a
    message taken with ``basic.get`` and put back with ``basic.reject(requeue)`` until it is
    gone. The limit is its deliveries minus one (gone after limit + 1); None: still there
    after ``TRIES`` deliveries."""
    name = unique("default-limit")
    try:
        with connect(url, name=name) as conn:
            channel = conn.channel()
            quorum(channel, name)
            channel.basic_publish("", name, b"poison")
            for n in range(1, TRIES + 1):
                got = get(channel, name)
                if got is None:
                    return n - 2
                channel.basic_reject(got[0].delivery_tag, requeue=True)
            return None
    finally:
        delete(url, name)


def counters_after(url: str, how: str) -> dict:
    """The counters a quorum-queue message carries on its next delivery after one return by
    ``how``: ``reject`` or ``nack`` (``requeue=True``), or ``crash`` (its consumer's
    connection closed with the message unacked)."""
    name = unique(f"count-{how}")
    try:
        with connect(url, name=name) as conn:
            channel = conn.channel()
            quorum(channel, name)
            channel.basic_publish("", name, b"x")
            if how == "crash":
                with connect(url, name=f"{name}-lost") as lost:
                    assert get(lost.channel(), name) is not None
                # closed with the message unacked: the broker returns it
            else:
                method, _props = get(channel, name)
                if how == "reject":
                    channel.basic_reject(method.delivery_tag, requeue=True)
                else:
                    channel.basic_nack(method.delivery_tag, requeue=True)
            got = get(channel, name, wait_s=10)
            found = counts(got[1]) if got else {"returned": False}
            if got:
                channel.basic_ack(got[0].delivery_tag)
            return found
    finally:
        delete(url, name)


def past_the_limit(url: str, settle: str, dead_letter: bool) -> str:
    """A quorum queue with ``x-delivery-limit`` 2, a message returned by ``settle``
    (``reject`` or ``nack``, requeue) again and again: ``dead-lettered after N deliveries``,
    ``dropped after N deliveries`` or ``still looping after TRIES deliveries``."""
    name = unique(f"limit-{settle}")
    dlq = f"{name}.dead"
    args = {"x-delivery-limit": 2}
    if dead_letter:
        args.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    try:
        with connect(url, name=name) as conn:
            channel = conn.channel()
            channel.queue_declare(dlq, durable=True)
            quorum(channel, name, **args)
            channel.basic_publish("", name, b"poison")
            for n in range(1, TRIES + 1):
                got = get(channel, name)
                if got is None:
                    dead = get(channel, dlq, wait_s=5)
                    ended = "dead-lettered" if dead else "dropped"
                    return f"{ended} after {n - 1} deliveries"
                if settle == "nack":
                    channel.basic_nack(got[0].delivery_tag, requeue=True)
                else:
                    channel.basic_reject(got[0].delivery_tag, requeue=True)
            return f"still looping after {TRIES} deliveries"
    finally:
        delete(url, name, dlq)


# -- other facts ----------------------------------------------------------------------------

def non_durable_queue(url: str) -> str:
    """Declare a non-durable, non-exclusive queue: ``allowed`` or ``refused: <reason>``."""
    import pika.exceptions as pe

    name = unique("transient")
    try:
        with connect(url, name=name) as conn:
            try:
                conn.channel().queue_declare(name, durable=False, exclusive=False)
                return "allowed"
            except pe.ChannelClosedByBroker as exc:
                return f"refused: {exc.reply_code} {exc.reply_text}"
    finally:
        delete(url, name)


def non_durable_after_restart(url: str, restart) -> str:
    """Declare a non-durable queue (where allowed), ``restart()`` the node: ``gone``,
    ``kept`` or ``refused`` (no queue to begin with)."""
    import pika.exceptions as pe

    name = unique("transient-restart")
    with connect(url, name=name) as conn:
        try:
            conn.channel().queue_declare(name, durable=False)
        except pe.ChannelClosedByBroker:
            return "refused"
    restart()
    with connect(url, name=name) as conn:
        try:
            conn.channel().queue_declare(name, passive=True)
        except pe.ChannelClosedByBroker:
            return "gone"
    delete(url, name)
    return "kept"


def quorum_priority_order(url: str) -> str:
    """Eight messages published to a quorum queue with priorities 0 0 0 0 9 9 9 9 (and
    ``x-max-priority`` absent, as quorum queues take none), read back with ``basic.get``:
    their priorities in delivery order, e.g. ``"9 9 0 9 9 0 0 0"``."""
    import pika

    name = unique("priority")
    sent = [0, 0, 0, 0, 9, 9, 9, 9]
    try:
        with connect(url, name=name) as conn:
            channel = conn.channel()
            quorum(channel, name)
            channel.confirm_delivery()
            for p in sent:
                channel.basic_publish("", name, str(p).encode(),
                                      pika.BasicProperties(priority=p))
            order = []
            for _ in sent:
                got = channel.basic_get(name, auto_ack=True)
                order.append(got[2].decode() if got[0] else "-")
            return " ".join(order)
    finally:
        delete(url, name)


def metadata_store_feature(ctl) -> str:
    """``Khepri`` or ``Mnesia``: the node's metadata store, read with ``rabbitmqctl eval``
    (``ctl(*args)`` returns its output); before Khepri existed, ``Mnesia``."""
    out = ctl("eval", "case code:which(rabbit_khepri) of non_existing -> false; "
                      "_ -> rabbit_khepri:is_enabled() end.")
    return "Khepri" if out.strip() == "true" else "Mnesia"


def metadata_store(broker: Broker) -> str | None:
    """``Khepri`` or ``Mnesia``, as the broker says: its ``khepri_db`` feature flag over
    the management API (no such flag: Mnesia, before 3.13), else ``rabbitmqctl eval``
    on a node of ours; None when neither answers."""
    from helpers.broker import management

    with contextlib.suppress(Exception):
        flags = management.get(broker, "feature-flags")
        if isinstance(flags, list):
            khepri = [f for f in flags if f.get("name") == "khepri_db"]
            return "Khepri" if khepri and khepri[0].get("state") == "enabled" else "Mnesia"
    if hasattr(broker, "rabbitmqctl"):
        with contextlib.suppress(Exception):
            proc = broker.rabbitmqctl("eval", "case code:which(rabbit_khepri) of non_existing"
                                    " -> false; _ -> rabbit_khepri:is_enabled() end.")
            if proc.returncode == 0:
                return "Khepri" if proc.stdout.strip() == "true" else "Mnesia"
    return None
