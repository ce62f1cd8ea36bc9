"""Publishing N persistent tasks four ways, on one broker, in one run.

Run: ``python -m benchmarks.publish_confirms [--tasks 10000]`` (``make bench`` runs it too).
Prints messages per second for pipelined confirms, one confirm per message (tutorial
style), no confirms the tutorial's way (a ``BlockingChannel``, which writes each message
to the socket before returning) and no confirms at full speed (an asynchronous
connection that hands the socket many messages at once), and the ratios between them.
The machine is noisy: compare ratios, not absolute rates.

Where a publish "ends": with confirms, at the last confirm (the broker has every message,
on disk); without, when the last byte left our socket, which is the unconfirmed
publisher's best case. ``until queued`` is the same run timed until the queue holds every
message, the one end point all four share. The unconfirmed publishers keep their connection
open until then: closed at once, it lost messages to quorum queues here (14 runs in 330).
"""
from __future__ import annotations

import argparse
import json
import time
import uuid

from helpers.broker import resolve as broker
from helpers.publish import outcome, producer
from helpers.publish.options import PublishOptions
from helpers.core import tasks, topology
from helpers.core.connection import connect

MODES = ("pipelined", "each", "none", "none-async")


def _publish_async_unconfirmed(url: str, spec: topology.QueueSpec, pairs, name: str,
                               on_sent, batch: int = 200, max_buffer: int = 1 << 20):
    """Publish without confirm mode on a ``SelectConnection``; call ``on_sent()`` once the
    last byte has left, before closing; return (t_first, t_last)."""
    import pika

    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": name}
    state = {"next": 0, "t_first": None, "t_last": None, "error": None}

    def pump(channel):
        # Hand the socket a batch, then let the I/O loop write it; keep the buffer bounded.
        if conn._get_write_buffer_size() < max_buffer:
            end = min(len(pairs), state["next"] + batch)
            if state["t_first"] is None:
                state["t_first"] = time.time()
            for task_id, body in pairs[state["next"]:end]:
                channel.basic_publish("", spec.name, body,
                                      outcome.message_properties(task_id, True))
            state["next"] = end
        if state["next"] < len(pairs) or conn._get_write_buffer_size():
            conn.ioloop.call_later(0 if state["next"] < len(pairs) else 0.0002,
                                   lambda: pump(channel))
        else:
            state["t_last"] = time.time()
            on_sent()
            conn.close()

    def on_open(c):
        c.channel(on_open_callback=pump)

    def on_error(_c, exc):
        state["error"] = repr(exc)
        conn.ioloop.stop()

    conn = pika.SelectConnection(params, on_open_callback=on_open,
                                 on_open_error_callback=on_error,
                                 on_close_callback=lambda *_: conn.ioloop.stop())
    conn.ioloop.start()
    if state["error"] or state["t_last"] is None:
        raise RuntimeError(f"unconfirmed publishing failed: {state['error']}")
    return state["t_first"], state["t_last"]


def _wait_queued(channel, spec: topology.QueueSpec, n: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        queued = topology.message_count(channel, spec.name)
        if queued >= n or time.monotonic() > deadline:
            return queued
        time.sleep(0.002)


def measure(url: str, n: int, confirms: str, kind: str = "classic") -> dict:
    """Publish ``n`` persistent zero-length tasks to a fresh durable queue of type ``kind``;
    return the rates."""
    spec = topology.QueueSpec(f"bench-publish-{confirms}-{uuid.uuid4().hex[:6]}", kind=kind)
    work = tasks.equal(n, 0)
    with connect(url, name=f"bench publish {confirms} watch") as conn:
        channel = conn.channel()
        topology.declare(channel, spec)
        end: dict = {}

        def until_queued() -> None:  # called before the publisher's connection closes
            end["queued"] = _wait_queued(channel, spec, n)
            end["t"] = time.time()
        try:
            if confirms == "none-async":
                pairs = [(t.id, t.body()) for t in work]
                t_first, t_last = _publish_async_unconfirmed(url, spec, pairs,
                                                             f"bench publish {confirms}",
                                                             until_queued)
                confirmed = 0
            else:
                result = producer.publish(url, spec, work, PublishOptions(
                    confirms=confirms, declare_queue=False, name=f"bench publish {confirms}",
                    on_published=until_queued))
                t_first, t_last, confirmed = result.t_first, result.t_last, len(result.confirmed)
                if "t" not in end:  # pipelined: every message is confirmed, so it is there
                    until_queued()
            queued, t_queued = end["queued"], end["t"]
        finally:
            topology.delete(channel, spec)
    seconds = t_last - t_first
    return {"confirms": confirms, "kind": kind, "tasks": n, "confirmed": confirmed,
            "queued": queued,
            "seconds": round(seconds, 3), "per_s": round(n / seconds),
            "until_queued_s": round(t_queued - t_first, 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    found = broker.get()
    rows = [measure(found.url, args.tasks, mode) for mode in MODES]
    by = {r["confirms"]: r for r in rows}
    print(f"{'confirms':<11} {'tasks':>7} {'confirmed':>9} {'queued':>7} {'seconds':>8} "
          f"{'tasks/s':>8} {'until queued':>13}")
    for r in rows:
        print(f"{r['confirms']:<11} {r['tasks']:>7} {r['confirmed']:>9} {r['queued']:>7} "
              f"{r['seconds']:>8.3f} {r['per_s']:>8} {r['until_queued_s']:>12.3f}s")
    fastest_none = max(by["none"]["per_s"], by["none-async"]["per_s"])
    ratios = {"pipelined_over_each": round(by["pipelined"]["per_s"] / by["each"]["per_s"], 2),
              "pipelined_over_none": round(by["pipelined"]["per_s"] / fastest_none, 2)}
    print(f"pipelined confirms / one confirm per message: {ratios['pipelined_over_each']}x; "
          f"pipelined confirms / fastest without confirms: {ratios['pipelined_over_none']}x "
          f"(RabbitMQ {found.version()})")
    out = {"rows": rows, **ratios, "broker_version": found.version()}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
