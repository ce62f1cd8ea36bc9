"""What a private cluster says about itself, through the management API of a live member.

The HTTP API answers in milliseconds where ``rabbitmqctl cluster_status`` or
``rabbitmq-queues quorum_status`` start an Erlang VM each (about a second here). After a
member dies, the survivors' API keeps naming the dead leader until the new one has taken
over (0.2 s on 3.10, 0.7 s on 4.0 in our runs), so "the leader is another node" is a fair
sign that a new leader was elected.
"""
from __future__ import annotations

import contextlib
import urllib.parse

from helpers.errors import BrokerConnectionError, BrokerControlError
from helpers.broker.model import Broker
from helpers.broker import management
from helpers.broker.private_node import PrivateBroker


def api_get(members: list[PrivateBroker], path: str):
    """GET ``/api/<path>`` from the first running member that answers; None when none does."""
    for member in members:
        if member.management_url and member.node_pid():
            with contextlib.suppress(BrokerConnectionError):
                return management.get(member, path, timeout=3.0)
    return None


def running_nodes(members: list[PrivateBroker]) -> list[str]:
    """The node names the cluster status (``/api/nodes``) lists as running, sorted."""
    nodes = api_get(members, "nodes?columns=name,running") or []
    return sorted(node["name"] for node in nodes if node.get("running"))


def queue_info(members: list[PrivateBroker], queue: str, vhost: str = "/") -> dict | None:
    """A queue's ``type``, ``leader``, ``members``, ``online`` (quorum) and ``node``, or None."""
    path = f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(queue, safe='')}"
    data = api_get(members, path)
    if not data:
        return None
    return {key: data.get(key) for key in ("type", "leader", "members", "online", "node")}


def leader(info: dict | None) -> str | None:
    """The leader named by ``queue_info`` (the hosting node, for a classic queue)."""
    return (info.get("leader") or info.get("node")) if info else None


def cluster_broker(cluster) -> Broker:
    """The cluster as one broker for the run skeleton: every node's URL, first running first."""
    members = cluster.members()
    running = [m for m in members if m.node_pid()]
    if not running:
        raise BrokerControlError("No node of the private cluster is running: start it with "
                                 "`python -m helpers cluster start`.")
    urls = [m.url for m in running] + [m.url for m in members if m not in running]
    return Broker(url=",".join(urls), management_url=running[0].management_url, kind="cluster")
