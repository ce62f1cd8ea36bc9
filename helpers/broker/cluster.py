"""A private RabbitMQ cluster: N private nodes of the installed ``rabbitmq-server``, joined.

Each member is a ``PrivateBroker`` with its own node name (``rabbit1@localhost``, ...),
state folder (``.broker/cluster/rabbit1``) and loopback ports (AMQP, management, Erlang
distribution). The members share one Erlang cookie and one epmd, both owned here: an Erlang
node finds another's distribution port by asking the epmd on *its own* ``ERL_EPMD_PORT``,
so nodes that must talk to each other register with the same one (on 127.0.0.1 only).

The members join by classic-config peer discovery: each ``rabbitmq.conf`` lists every
member, the nodes boot in parallel, one of them forms the cluster (3.10: the first to take
the discovery lock; 4.0: the seed node it picks) and the others join it; no
``rabbitmqctl join_cluster`` round trips. A member started again later already has its
database and rejoins by itself. Ready means AMQP answers on every member *and* the cluster
status (management API ``/api/nodes``) lists every member as running. Where RabbitMQ has
it (4.3), ``consumer_disconnected_timeout`` is shortened (``settings``: the lesson's kills).

``python -m helpers cluster start|stop|status|kill NODE|start-node NODE|leader QUEUE``
(``helpers.broker.cluster_cli``).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path

from helpers.broker import cluster_info
from helpers import settings
from helpers.broker.model import NO_BROKER_HELP, find_rabbitmq_server, server_major
from helpers.broker.cluster_procs import end_process, in_parallel, knows_setting
from helpers.core.connection import mask_url
from helpers.errors import BadInputError, BrokerControlError, NoBrokerError
from helpers.broker.private_node import PrivateBroker, start_epmd
from helpers.broker.state_folder import locked, read_state, write_state
from helpers.procs import free_port, pid_alive, port_open

#: What to do when the cluster's shared epmd does not start.
EPMD_HINT = "is the port taken? `python -m helpers cluster stop --reset` picks new ports."


class PrivateCluster:
    """N private RabbitMQ nodes on 127.0.0.1 joined into one cluster (see the module doc)."""

    def __init__(self, nodes: int | None = None, state_dir: Path | None = None,
                 server: Path | None = None):
        # Each node runs with its folder as cwd: an absolute path.
        self.state_dir = Path(state_dir or settings.CLUSTER_DIR).absolute()
        self.state_file = self.state_dir / "cluster.json"
        self.server = Path(server) if server else find_rabbitmq_server()
        if self.server is None:
            raise NoBrokerError(NO_BROKER_HELP)
        recorded = self._read_state().get("nodes")
        self.size = int(nodes or recorded or settings.CLUSTER_NODES)
        most = settings.CLUSTER_MAX_NODES
        if not 1 <= self.size <= most:
            raise BadInputError(f"A private cluster has 1 to {most} nodes, not {self.size}: "
                                "pass --nodes 3.")
        self.names = [f"rabbit{i}@localhost" for i in range(1, self.size + 1)]

    # -- state ---------------------------------------------------------------------------
    def _read_state(self) -> dict:
        return read_state(self.state_file)

    def _write_state(self, state: dict) -> None:
        write_state(self.state_file, state)

    @contextlib.contextmanager
    def _lock(self):
        """Serialise start/stop/kill across processes, as ``PrivateBroker`` does."""
        with locked(self.state_dir):
            yield

    def _prepare(self) -> dict:
        """The recorded state, or a new one: node count, cookie, epmd port, members' ports."""
        state = self._read_state()
        if state.get("nodes") not in (None, self.size):
            raise BadInputError(
                f"The private cluster in {self.state_dir} has {state['nodes']} nodes, not "
                f"{self.size}: `python -m helpers cluster stop --reset` first makes a new one.")
        if not state:
            taken: list[int] = []  # picked, not bound yet: no two alike
            for _ in range(1 + 3 * self.size):
                taken.append(free_port(avoid=taken))
            state = {"nodes": self.size, "cookie": secrets.token_hex(20),
                     "epmd_port": taken[0], "epmd_pid": None,
                     "ports": {name: dict(zip(("amqp_port", "mgmt_port", "dist_port"),
                                              taken[1 + 3 * i:4 + 3 * i]))
                               for i, name in enumerate(self.names)}}
            self._write_state(state)
            os.chmod(self.state_file, 0o600)  # it holds the cookie
        return state

    # -- members -------------------------------------------------------------------------
    def members(self) -> list[PrivateBroker]:
        """One ``PrivateBroker`` per member, in order (rabbit1 first)."""
        state = self._read_state()
        discovery = ("cluster_formation.peer_discovery_backend = classic_config",
                     *(f"cluster_formation.classic_config.nodes.{i} = {name}"
                       for i, name in enumerate(self.names, 1)))
        if server_major(self.server) == 3:
            discovery += ("cluster_formation.discovery_retry_limit = "
                          f"{settings.CLUSTER_DISCOVERY_RETRIES_3X}",
                          "cluster_formation.discovery_retry_interval = "
                          f"{settings.CLUSTER_DISCOVERY_INTERVAL_MS_3X}")
        if self.disconnected_timeout_ms is not None:
            discovery += (f"consumer_disconnected_timeout = {self.disconnected_timeout_ms}",)
        return [PrivateBroker(self.server, self.state_dir / name.split("@")[0], nodename=name,
                              epmd_port=state.get("epmd_port"),
                              ports=state.get("ports", {}).get(name), cookie=state.get("cookie"),
                              extra_config=discovery)
                for name in self.names]

    @property
    def disconnected_timeout_ms(self) -> int | None:
        """The members' ``consumer_disconnected_timeout`` (None: this RabbitMQ has none)."""
        if knows_setting(self.server, "consumer_disconnected_timeout"):
            return settings.CLUSTER_DISCONNECTED_TIMEOUT_MS
        return None

    def member(self, node: str | int) -> PrivateBroker:
        """The member called ``node``: ``2``, ``"2"``, ``"rabbit2"`` or ``"rabbit2@localhost"``."""
        text = str(node).strip()
        name = f"rabbit{text}@localhost" if text.isdigit() else \
            text if "@" in text else f"{text}@localhost"
        if name not in self.names:
            raise BadInputError(f"No node {node!r} in this cluster: use one of "
                                f"{', '.join(self.names)} (or its number).")
        return self.members()[self.names.index(name)]

    def urls(self, running_only: bool = False) -> list[str]:
        """The AMQP URLs of the members (of those whose VM runs, with ``running_only``)."""
        return [m.url for m in self.members() if not running_only or m.node_pid()]

    # -- epmd ----------------------------------------------------------------------------
    def _ensure_epmd(self, state: dict) -> dict:
        if not (pid_alive(state.get("epmd_pid")) and port_open("127.0.0.1", state["epmd_port"])):
            state["epmd_pid"] = start_epmd(state["epmd_port"], self.server, EPMD_HINT)
            self._write_state(state)
        return state

    def _stop_epmd(self, state: dict) -> None:
        end_process(state.get("epmd_pid"))
        state["epmd_pid"] = None
        self._write_state(state)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, progress=None) -> bool:
        """Boot every member not running, in parallel, and wait until all are clustered.

        Returns True when this call started at least one node.
        """
        with self._lock():
            state = self._ensure_epmd(self._prepare())
            members = self.members()
            down = [m for m in members if not m.is_running()]
            if not down:
                return False
            if progress:
                progress(f"starting {len(down)} RabbitMQ nodes in parallel ({self.server}) ...")
            started = time.monotonic()
            try:
                try:
                    in_parallel(lambda m: m.start(), down)
                except BrokerControlError as exc:
                    if "incompatible_feature_flags" not in str(exc):
                        raise
                    # RabbitMQ 3.10.8: a node that syncs feature flags while a peer is still
                    # enabling them can crash at boot (badmap in enable_dependencies, seen
                    # once in a full suite); with its peers up it boots. Once more, in turn.
                    for member in down:
                        if not member.is_running():
                            member.start()
                self._wait_clustered(started + settings.BOOT_TIMEOUT_S)
            except BaseException:
                if len(down) == len(members):  # nothing ran before: leave nothing running
                    in_parallel(lambda m: m.stop(epmd=False), members)
                    self._stop_epmd(state)
                raise
            state["boot_s"] = round(time.monotonic() - started, 2)
            self._write_state(state)
            return True

    def _wait_clustered(self, deadline: float) -> list[str]:
        while True:
            running = self.running_nodes()
            if set(running) >= set(self.names):
                return running
            if time.monotonic() > deadline:
                raise BrokerControlError(
                    f"The cluster status lists {running or 'no node'} as running, not all of "
                    f"{self.names}; see the logs under {self.state_dir}.")
            time.sleep(0.2)

    def stop(self, reset: bool = False) -> bool:
        """Stop every member cleanly (in parallel) and the epmd; True if a node ran.

        ``reset`` also deletes the cluster's folder (data, logs, ports, cookie).
        """
        with self._lock():
            state = self._read_state()
            members = self.members()
            ran = [m for m in members if m.node_pid()]
            in_parallel(lambda m: m.stop(epmd=False), ran)
            if state:
                self._stop_epmd(state)
            if reset:
                shutil.rmtree(self.state_dir, ignore_errors=True)
            return bool(ran)

    def kill(self, node: str | int) -> int:
        """SIGKILL one member's VM (as a power cut would); return the pid it had."""
        member = self.member(node)
        pid = member.node_pid()
        member.kill()
        return pid

    def start_node(self, node: str | int) -> float:
        """Start one member again and wait until the cluster lists it; return the seconds."""
        member = self.member(node)
        with self._lock():
            self._ensure_epmd(self._prepare())
            started = time.monotonic()
            member.start()
        deadline = started + settings.BOOT_TIMEOUT_S
        while member.nodename not in self.running_nodes():
            if time.monotonic() > deadline:
                raise BrokerControlError(f"{member.nodename} answers AMQP but the cluster does "
                                         f"not list it as running; see {member.state_dir / 'log'}.")
            time.sleep(0.2)
        return round(time.monotonic() - started, 2)

    # -- what the cluster says (cluster_info asks the management API of a live member) ----
    def running_nodes(self) -> list[str]:
        """The members the cluster status lists as running (empty when none answers)."""
        return cluster_info.running_nodes(self.members())

    def queue_info(self, queue: str, vhost: str = "/") -> dict | None:
        """A queue's ``type``, ``leader``, ``members``, ``online`` and ``node``, or None."""
        return cluster_info.queue_info(self.members(), queue, vhost)

    def leader_of(self, queue: str, vhost: str = "/") -> str | None:
        """The node that leads quorum queue ``queue`` (hosts it, for a classic queue)."""
        return cluster_info.leader(self.queue_info(queue, vhost))

    def status(self) -> dict:
        """Members (pid, AMQP up, masked URLs), the cluster's running nodes, boot time."""
        state = self._read_state()
        members = [{"node": m.nodename, "pid": m.node_pid(),
                    "running": bool(m.node_pid()) and m.is_running(),
                    "url": mask_url(m.url), "management_url": m.management_url}
                   for m in self.members()]
        running = self.running_nodes() if any(m["pid"] for m in members) else []
        return {"nodes": self.size, "state_dir": str(self.state_dir),
                "epmd_port": state.get("epmd_port"),
                "epmd_pid": state.get("epmd_pid") if pid_alive(state.get("epmd_pid")) else None,
                "boot_s": state.get("boot_s"), "members": members, "running_nodes": running,
                "running": all(m["running"] for m in members) and len(running) == self.size}
