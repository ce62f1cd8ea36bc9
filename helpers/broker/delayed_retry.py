"""Does this broker delay a quorum queue's redeliveries itself? Measured, not assumed.

Release notes say RabbitMQ 4.3's quorum queues can hold a returned message back before
delivering it again: queue arguments ``x-delayed-retry-type`` (``all``, ``returned``,
``failed``, ``disabled``), ``x-delayed-retry-min`` and ``x-delayed-retry-max`` (ms), or
the same keys without ``x-`` in a policy. ``probe`` tries each way on the running broker:
it declares a quorum queue (its own ``nb-dr-...`` name, outside the project's dead-letter
policy), publishes one message, takes it with ``basic.get`` and returns it with
``basic.reject(requeue=True)`` a few times, timing how long each return takes to come back.

Each way ends in one of: ``refused: <the broker's words>`` (at declare, or the policy),
``ignored`` (back within a fraction of the delay), ``honoured`` (every return waited at
least the configured minimum), ``partly`` (some did), ``not back`` (the message did not
return within the wait). ``tests/test_retries_and_order.py`` pins the outcomes per series.
"""
from __future__ import annotations

import concurrent.futures
import re
import time
import uuid

from helpers.broker import node_control
from helpers.broker import version_facts as vf
from helpers.core.connection import connect

#: The ways tried, each a name and (where, keys): queue arguments, or a policy definition.
WAYS = {
    "argument min only": ("argument", {"x-delayed-retry-min": None}),
    "argument type all": ("argument", {"x-delayed-retry-type": "all",
                                       "x-delayed-retry-min": None}),
    "argument type returned": ("argument", {"x-delayed-retry-type": "returned",
                                            "x-delayed-retry-min": None}),
    "argument type failed": ("argument", {"x-delayed-retry-type": "failed",
                                          "x-delayed-retry-min": None}),
    "policy type all": ("policy", {"delayed-retry-type": "all", "delayed-retry-min": None}),
    "policy x- keys": ("policy", {"x-delayed-retry-type": "all", "x-delayed-retry-min": None}),
}


def _settings(keys: dict, min_ms: int) -> dict:
    """The keys with the minimum filled in, and a maximum of four times it."""
    out = {k: (min_ms if v is None else v) for k, v in keys.items()}
    if any(k.endswith("delayed-retry-type") for k in out):
        prefix = "x-" if next(iter(out)).startswith("x-") else ""
        out[f"{prefix}delayed-retry-max"] = 4 * min_ms
    return out


def _returns(url: str, name: str, arguments: dict, returns: int, wait_s: float) -> dict:
    """Declare, publish one message, return it ``returns`` times; the gaps, or a refusal."""
    import pika.exceptions as pe

    with connect(url, name=name) as conn:
        channel = conn.channel()
        try:
            vf.quorum(channel, name, **arguments)
        except pe.ChannelClosedByBroker as exc:
            return {"refused": f"{exc.reply_code} {exc.reply_text}"}
        channel.confirm_delivery()
        channel.basic_publish("", name, b"fails every time")
        gaps: list[float] = []
        method, _props = vf.get(channel, name, wait_s)
        for _ in range(returns):
            channel.basic_reject(method.delivery_tag, requeue=True)
            sent = time.monotonic()
            got = vf.get(channel, name, wait_s)
            if got is None:
                return {"gaps_s": gaps, "not_back_after_s": wait_s}
            gaps.append(round(time.monotonic() - sent, 3))
            method = got[0]
        channel.basic_ack(method.delivery_tag)
        channel.queue_delete(name)
        return {"gaps_s": gaps}


def verdict(got: dict, min_ms: int) -> str:
    """``refused: ...``, ``not back``, ``ignored``, ``honoured`` or ``partly``."""
    if "refused" in got:  # the broker's words, without the list of keys it repeats
        return "refused: " + re.sub(r"\s*\[\{.*\}\]\s*", ": these keys ", got["refused"])
    if "not_back_after_s" in got:
        return "not back"
    floor = min_ms / 1000
    if all(g >= 0.9 * floor for g in got["gaps_s"]):
        return "honoured"
    return "ignored" if all(g < floor / 2 for g in got["gaps_s"]) else "partly"


def one_way(broker, way: str, min_ms: int = 1000, returns: int = 3) -> dict:
    """Try one of ``WAYS``: ``{"way", "settings", "outcome", "gaps_s"}``."""
    where, keys = WAYS[way]
    settings = _settings(keys, min_ms)
    name = f"nb-dr-{way.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    wait_s = 4 * min_ms / 1000 * returns + 5
    if where == "policy":
        with node_control.policy(broker, f"{name}-policy", f"^{name}$", settings,
                                 priority=90) as refused:
            got = ({"refused": f"policy: {refused}"} if refused
                   else _returns(broker.url, name, {}, returns, wait_s))
    else:
        got = _returns(broker.url, name, settings, returns, wait_s)
    if "refused" not in got and "not_back_after_s" in got:
        with connect(broker.url, name=f"{name}-cleanup") as conn:
            conn.channel().queue_delete(name)
    return {"way": way, "settings": settings, "outcome": verdict(got, min_ms),
            "gaps_s": got.get("gaps_s", [])}


def probe(broker, min_ms: int = 1000, returns: int = 3, ways=tuple(WAYS)) -> dict:
    """Every way side by side: ``{way: one_way(...)}`` (the policies need the management
    API; without it those ways say ``refused: policy: ...``)."""
    ways = [w for w in ways if WAYS[w][0] != "policy" or node_control.can_control(broker)]
    with concurrent.futures.ThreadPoolExecutor(len(ways)) as pool:
        futures = {w: pool.submit(one_way, broker, w, min_ms, returns) for w in ways}
        return {w: f.result() for w, f in futures.items()}


def summary(found: dict) -> str:
    """The ways grouped by what held: ``honoured: a, b; ignored: c; refused: d``."""
    groups: dict[str, list[str]] = {}
    for way, got in found.items():
        groups.setdefault(got["outcome"].split(":")[0], []).append(way)
    return "; ".join(f"{kind}: {', '.join(ways)}" for kind, ways in groups.items())


def sentence(found: dict, version: str) -> str:
    """What held, one line per way, every number measured."""
    returns = max(len(got["gaps_s"]) for got in found.values())
    lines = [f"RabbitMQ {version}: a quorum queue, one message taken and rejected with "
             f"requeue {returns} times, each way of asking the broker to delay it:"]
    for way, got in found.items():
        gaps = ", ".join(f"{g:.2f}" for g in got["gaps_s"])
        settings = ", ".join(f"{k}={v}" for k, v in got["settings"].items())
        lines.append(f"  {way} ({settings}): {got['outcome']}"
                     + (f", back after {gaps} s" if gaps else ""))
    return "\n".join(lines)
