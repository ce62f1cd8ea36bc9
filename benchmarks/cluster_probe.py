"""Figures for the private cluster on the RabbitMQ installed here (figures, not tests).

``python -m benchmarks.cluster_probe [--kills 5]`` boots a three-node cluster in parallel in a
temporary folder (fresh, then again with its data), SIGKILLs a quorum queue's leader a few
times, then two nodes of three, and prints what it saw:

- boot: seconds until AMQP answers on every node and ``/api/nodes`` lists all three;
- per leader kill: when an established publisher's confirm arrives, whether a *new*
  connection's first publish is confirmed or nacked, when the management API names another
  leader, how long the killed node takes to come back;
- majority loss: what a publish with confirms gets, and when, after one node is back;
- stop: seconds for a clean stop of all three.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pika

from helpers.broker.cluster import PrivateCluster
from helpers.core.connection import connect

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def _publish(channel, queue: str, body: bytes) -> str:
    """Publish with confirms: 'confirmed' or 'nacked'."""
    try:
        channel.basic_publish("", queue, body, properties=PERSISTENT)
        return "confirmed"
    except pika.exceptions.NackError:
        return "nacked"


def _leader_other_than(cluster: PrivateCluster, queue: str, old: str | None) -> str:
    while True:
        now = cluster.leader_of(queue)
        if now not in (None, old):
            return now
        time.sleep(0.02)


def _publisher(url: str, name: str):
    conn = connect(url, name=name)
    channel = conn.channel()
    channel.confirm_delivery()
    return conn, channel


def leader_kill(cluster: PrivateCluster, queue: str) -> dict:
    """SIGKILL the queue's leader once; time what publishers and the API see; restart it."""
    leader = _leader_other_than(cluster, queue, None)
    survivors = [m.url for m in cluster.members() if m.nodename != leader]
    early_conn, early = _publisher(survivors[0], "probe established")
    _publish(early, queue, b"warm-up")
    late_conn, late = _publisher(survivors[1], "probe new")
    cluster.kill(leader)
    killed = time.monotonic()
    new_outcome = _publish(late, queue, b"new channel, first publish")
    new_s = time.monotonic() - killed
    early_outcome = _publish(early, queue, b"established channel")
    early_s = time.monotonic() - killed
    _leader_other_than(cluster, queue, leader)
    api_s = time.monotonic() - killed
    early_conn.close()
    late_conn.close()
    return {"killed": leader, "established": early_outcome, "established_s": round(early_s, 2),
            "new": new_outcome, "new_s": round(new_s, 2), "api_leader_s": round(api_s, 2),
            "restart_s": cluster.start_node(leader)}


def majority_loss(cluster: PrivateCluster, queue: str, wait_s: float = 8.0) -> dict:
    """Kill the leader and one follower; publish on the survivor; start one node again."""
    leader = _leader_other_than(cluster, queue, None)
    keep, other = [n for n in cluster.names if n != leader]
    conn, channel = _publisher(cluster.member(keep).url, "probe majority")
    cluster.kill(leader)
    cluster.kill(other)
    killed = time.monotonic()
    outcome: dict = {}

    def publish() -> None:
        outcome["result"] = _publish(channel, queue, b"during the majority loss")
        outcome["after_s"] = round(time.monotonic() - killed, 2)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    thread.join(wait_s)
    seen = dict(outcome) or {"result": f"no answer within {wait_s:.0f} s"}
    info = cluster.queue_info(queue) or {}
    restart_s = cluster.start_node(other)
    thread.join(60)
    cluster.start_node(leader)
    conn.close()
    return {"killed": [leader, other], "while_down": seen, "leader_while_down": info.get("leader"),
            "restart_one_s": restart_s, "finally": outcome or "no answer"}


def main(argv: list[str] | None = None) -> None:
    """Run the probe and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cluster-probe-") as folder:
        cluster = PrivateCluster(3, state_dir=Path(folder))
        try:
            with open("/proc/loadavg") as fh:
                print("load average:", " ".join(fh.read().split()[:3]))
            for label in ("fresh", "with its data"):
                cluster.start()
                print(f"boot in parallel ({label}): {cluster.status()['boot_s']} s")
                started = time.monotonic()
                cluster.stop()
                print(f"stop: {time.monotonic() - started:.2f} s")
            cluster.start()
            queue = "probe-quorum"
            with connect(cluster.urls(), name="probe declare") as conn:
                conn.channel().queue_declare(queue, durable=True,
                                             arguments={"x-queue-type": "quorum"})
            rows = [leader_kill(cluster, queue) for _ in range(args.kills)]
            for row in rows:
                print("leader kill:", row)
            print("API names a new leader after (s): median",
                  statistics.median(r["api_leader_s"] for r in rows),
                  "max", max(r["api_leader_s"] for r in rows))
            print("majority loss:", majority_loss(cluster, queue))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
