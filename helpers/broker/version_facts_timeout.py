"""Probes of the consumer timeout per RabbitMQ version (see ``helpers.broker.version_facts``).

A consumer that never acks, on a queue of each type, with a timeout of ``TIMEOUT_MS`` set
one way: node-wide (``rabbitmq.conf``'s ``consumer_timeout``, set on the running node with
``rabbitmqctl eval``), a ``consumer-timeout`` policy, an ``x-consumer-timeout`` queue
argument, or an ``x-consumer-timeout`` consumer argument. As rabbitmq-server's own suites
do, the node's channel tick is shortened (``channel_tick_interval``) for the probes and
both settings are put back afterwards. The outcome is polled for ``WINDOW_S``, never slept.

``measure`` runs the probes side by side, each on its own queue and connection, in two
rounds: with the short tick alone (every probe that sets no node-wide timeout, the plain
AMQP probes of ``version_facts`` among them), then with the node-wide timeout too.

``ctl(*args)`` runs ``rabbitmqctl ARGS`` against the node and returns its output (the
caller's: ``lambda *a: node_control.ctl(broker, *a)``).
"""
from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
from functools import partial

from helpers.core.connection import connect
from helpers.broker.version_facts import counts, delete, get, unique
from helpers.procs import in_parallel

TIMEOUT_MS = 1000
TICK_MS = 250
#: How long an outcome is waited for: three timeouts and a tick.
WINDOW_S = 3 * TIMEOUT_MS / 1000 + TICK_MS / 1000
_VALUE = re.compile(r"\{(\w+),(?:\{ok,(-?\d+)\}|undefined)\}")


def _env(ctl, values: dict) -> dict:
    """Set (None: unset) ``rabbit`` application variables; their values before."""
    keys = ", ".join(values)
    calls = ", ".join(f"application:unset_env(rabbit, {k})" if v is None else
                      f"application:set_env(rabbit, {k}, {v})" for k, v in values.items())
    out = ctl("eval", f"Old = [{{K, application:get_env(rabbit, K)}} || K <- [{keys}]], "
                      f"{calls}, Old.")
    return {m.group(1): (int(m.group(2)) if m.group(2) else None)
            for m in _VALUE.finditer(re.sub(r"\s", "", out))}


@contextlib.contextmanager
def node_settings(ctl, **values):
    """The node's ``rabbit`` variables set for a block, put back after."""
    before = _env(ctl, values)
    try:
        yield before
    finally:
        _env(ctl, {k: before.get(k) for k in values})


@contextlib.contextmanager
def every_node_settings(ctls, **values):
    """``node_settings`` on several nodes (one ``ctl`` each) at once, side by side: yields
    their values before, in the order of ``ctls``."""
    before = in_parallel({i: partial(_env, ctl, values) for i, ctl in enumerate(ctls)})
    try:
        yield [before[i] for i in range(len(ctls))]
    finally:
        in_parallel({i: partial(_env, ctl, {k: before[i].get(k) for k in values})
                     for i, ctl in enumerate(ctls)})


@contextlib.contextmanager
def policy(ctl, url: str, queue: str, definition: dict):
    """A policy on ``queue`` alone, for a block: yields None, or the refusal's text."""
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(url).path[1:]) or "/"
    name = f"{queue}-policy"
    try:
        ctl("set_policy", "-p", vhost, "--apply-to", "queues", "--priority", "50", name,
            f"^{re.escape(queue)}$", json.dumps(definition))
        refused = None
    except Exception as exc:  # noqa: BLE001 - the caller's ctl says why in its own words
        refused = " ".join(str(exc).split())[:200]
    try:
        yield refused
    finally:
        if refused is None:
            ctl("clear_policy", "-p", vhost, name)


def outcome(url: str, queue: str, consumer_args: dict | None = None) -> str:
    """Publish one message to ``queue``, consume it without acking, and say what the broker
    did within ``WINDOW_S``: ``channel closed: 406 ...``, ``consumer cancelled`` or
    ``nothing``."""
    cancelled = []
    with connect(url, name=f"{queue}-consumer") as conn:
        channel = conn.channel()
        channel.basic_publish("", queue, b"held")
        channel.add_on_cancel_callback(lambda frame: cancelled.append(frame))
        channel.basic_consume(queue, lambda *a: None, arguments=consumer_args)
        deadline = time.monotonic() + WINDOW_S
        while time.monotonic() < deadline and channel.is_open and not cancelled:
            conn.process_data_events(0.05)
        if cancelled:
            return "consumer cancelled"
        if channel.is_closed:
            reason = getattr(channel._impl, "_closing_reason", None)
            code = getattr(reason, "reply_code", "?")
            text = getattr(reason, "reply_text", "")
            return f"channel closed: {code} {text.split(' - ')[0]}"
        return "nothing"


#: The node settings of each round of ``measure``: the short tick alone, then with the timeout.
TICK_ONLY = {"channel_tick_interval": TICK_MS}
NODE_TIMEOUT = {"channel_tick_interval": TICK_MS, "consumer_timeout": TIMEOUT_MS}


def consumer_timeout(url: str, ctl, kind: str, where: str) -> str:
    """The outcome for a ``kind`` (``classic``/``quorum``) queue with the timeout set
    ``where``: ``node``, ``policy``, ``queue-argument``, ``consumer-argument``; or
    ``refused: ...`` where the broker refuses that way of setting it. The caller sets the
    node: ``NODE_TIMEOUT`` for ``node``, ``TICK_ONLY`` for the others (``node_settings``)."""
    import pika.exceptions as pe

    name = unique(f"ct-{kind}-{where}")
    args = {"x-queue-type": kind}
    if where == "queue-argument":
        args["x-consumer-timeout"] = TIMEOUT_MS
    try:
        with connect(url, name=name) as conn:
            try:
                conn.channel().queue_declare(name, durable=True, arguments=args)
            except pe.ChannelClosedByBroker as exc:
                return f"refused: {exc.reply_code} {exc.reply_text.split(' - ')[0]}"
        with contextlib.ExitStack() as stack:
            if where == "policy":
                refused = stack.enter_context(
                    policy(ctl, url, name, {"consumer-timeout": TIMEOUT_MS}))
                if refused:
                    return "refused: policy"
            consumer = ({"x-consumer-timeout": TIMEOUT_MS}
                        if where == "consumer-argument" else None)
            try:
                return outcome(url, name, consumer)
            except pe.ChannelClosedByBroker as exc:  # refused at basic.consume
                return f"refused: {exc.reply_code} {exc.reply_text.split(' - ')[0]}"
    finally:
        delete(url, name)


def counters_after_timeout(url: str, ctl) -> dict:
    """The counters on a quorum-queue message's next delivery after one consumer timeout
    (node-wide setting, ``NODE_TIMEOUT``, set by the caller): as
    ``version_facts.counters_after``."""
    name = unique("count-timeout")
    try:
        with connect(url, name=name) as conn:
            conn.channel().queue_declare(name, durable=True,
                                         arguments={"x-queue-type": "quorum"})
        happened = outcome(url, name)
        with connect(url, name=name) as conn:
            channel = conn.channel()
            got = get(channel, name, wait_s=10)
            found = counts(got[1]) if got else {"returned": False}
        return {"timeout": happened, **found}
    finally:
        delete(url, name)


def tutorial_loop_on_timeout(url: str, ctl) -> str:
    """The tutorial's consumer (``basic_consume`` then ``start_consuming()``, no ack) on a
    quorum queue under a node-wide timeout: ``start_consuming returned`` (its consumer was
    cancelled: the script ends quietly), ``raised ChannelClosedByBroker 406`` (the script
    dies with a traceback) or ``still consuming`` after ``WINDOW_S``. The caller sets the
    node-wide timeout (``NODE_TIMEOUT``)."""
    import pika.exceptions as pe

    name = unique("ct-tutorial")
    try:
        with connect(url, name=name) as conn:
            conn.channel().queue_declare(name, durable=True,
                                         arguments={"x-queue-type": "quorum"})
        with connect(url, name=f"{name}-tutorial") as conn:
            channel = conn.channel()
            channel.basic_qos(prefetch_count=1)
            channel.basic_publish("", name, b"held")
            channel.basic_consume(name, lambda *a: None)
            conn.call_later(WINDOW_S, channel.stop_consuming)
            try:
                started = time.monotonic()
                channel.start_consuming()
            except pe.ChannelClosedByBroker as exc:
                return f"raised ChannelClosedByBroker {exc.reply_code}"
            late = time.monotonic() - started >= WINDOW_S - 0.05
            return "still consuming" if late else "start_consuming returned"
    finally:
        delete(url, name)


def measure(url: str, ctl, restart=None) -> dict:
    """Every fact, measured on the broker at ``url`` (``restart()``: the node's clean
    restart, for the one fact that needs it; None leaves that fact out)."""
    from helpers.broker import version_facts as vf

    first = {"default_delivery_limit": partial(vf.default_delivery_limit, url),
             "metadata_store": partial(vf.metadata_store_feature, ctl),
             "non_durable_queue": partial(vf.non_durable_queue, url),
             "quorum_priority_order": partial(vf.quorum_priority_order, url)}
    for how in ("reject", "nack", "crash"):
        first[f"counters_after_{how}"] = partial(vf.counters_after, url, how)
    for settle in ("reject", "nack"):
        for dlx in (True, False):
            key = f"past_limit_{settle}_{'with' if dlx else 'without'}_dlx"
            first[key] = partial(vf.past_the_limit, url, settle, dlx)
    timed = {"counters_after_timeout": partial(counters_after_timeout, url, ctl),
             "tutorial_loop_on_timeout": partial(tutorial_loop_on_timeout, url, ctl)}
    for kind in ("classic", "quorum"):
        for where in ("node", "policy", "queue-argument", "consumer-argument"):
            (timed if where == "node" else first)[f"consumer_timeout_{kind}_{where}"] = partial(
                consumer_timeout, url, ctl, kind, where)
    with node_settings(ctl, **TICK_ONLY):
        facts = in_parallel(first)
    with node_settings(ctl, **NODE_TIMEOUT):
        facts.update(in_parallel(timed))
    if restart is not None:
        facts["non_durable_after_restart"] = vf.non_durable_after_restart(url, restart)
    return facts
