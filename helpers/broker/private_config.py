"""What a private node is told before it boots: its environment and its configuration files.

``PrivateBroker`` (``helpers.broker.private_node``) runs the node; this module only says how it is
configured: the ``RABBITMQ_*`` variables that put every file of the node in its state folder,
and the files written there at every start (``rabbitmq.conf``, ``enabled_plugins``, the
Erlang cookie when a cluster shares one). Nothing here starts or stops a process.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from helpers import settings


def node_env(state_dir: Path, nodename: str, state: dict) -> dict:
    """The environment to run the node (or ``rabbitmqctl`` against it) with.

    ``state`` holds the node's ``amqp_port``, ``dist_port`` and ``epmd_port``.
    """
    base = Path(state_dir)
    env = dict(os.environ)
    for key in list(env):  # a user's own RabbitMQ settings must not leak into ours
        if key.startswith("RABBITMQ_") and key != "RABBITMQ_SERVER":
            del env[key]
    env.update({
        "HOME": str(base),  # the Erlang cookie lives in $HOME/.erlang.cookie
        "RABBITMQ_NODENAME": nodename,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(state["amqp_port"]),
        "RABBITMQ_DIST_PORT": str(state["dist_port"]),
        "ERL_EPMD_PORT": str(state["epmd_port"]),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        # The Erlang distribution (clustering, rabbitmqctl) listens on every interface
        # unless told otherwise: keep it on loopback like the AMQP and HTTP listeners.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_LOGS": str(base / "log" / "node.log"),
        "RABBITMQ_PID_FILE": str(base / "node.pid"),
        # Run the VM in place of the start script, so the pid we hold is the node's.
        "RABBITMQ_ALLOW_INPUT": "true",
        "RABBITMQ_SERVER_START_ARGS": "-noinput",
    })
    return env


def _management_lines(state: dict) -> list[str]:
    """The management plugin's lines of ``rabbitmq.conf``."""
    return [
        "management.tcp.ip = 127.0.0.1",
        f"management.tcp.port = {state['mgmt_port']}",
        # The management API's queue figures are collected at the smallest sample
        # retention interval (5 s by default), whatever collect_statistics_interval says;
        # 1 s is the smallest RabbitMQ accepts.
        "management.sample_retention_policies.global.minute = 1",
        "management.sample_retention_policies.global.hour = 60",
        "management.sample_retention_policies.basic.minute = 1",
        "management.sample_retention_policies.basic.hour = 60",
        "management.sample_retention_policies.detailed.10 = 1",
    ]


def write_config(state_dir: Path, state: dict, extra_config: tuple[str, ...] = (),
                 cookie: str | None = None, management: bool = True) -> None:
    """Write the node's configuration files into ``state_dir`` (rewritten at every start).

    ``extra_config``: lines appended to ``rabbitmq.conf`` (a cluster's peer discovery).
    ``cookie``: the Erlang cookie to write to ``.erlang.cookie`` (None: Erlang makes one).
    ``management``: False runs no plugin at all (and writes none of its settings, which the
    node would refuse as unknown keys).
    """
    base = Path(state_dir)
    (base / "log").mkdir(parents=True, exist_ok=True)
    (base / "mnesia").mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq.conf").write_text("\n".join([
        "# Written by helpers/broker/private_config.py for the private node; rewritten at every start.",
        f"listeners.tcp.1 = 127.0.0.1:{state['amqp_port']}",
        *(_management_lines(state) if management else []),
        f"collect_statistics_interval = {settings.STATS_INTERVAL_MS}",
        f"max_message_size = {settings.MAX_MESSAGE_BYTES}",
        "disk_free_limit.absolute = 50MB",
        "loopback_users.guest = true",
        *extra_config,
        "",
    ]))
    if cookie is not None:
        path = base / ".erlang.cookie"
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)
        path.write_text(cookie)
        path.chmod(0o400)  # Erlang refuses a cookie file others may read
    # Not a rabbitmq.conf key: an application setting of ``rabbit``, so advanced.config.
    (base / "advanced.config").write_text(
        f"[{{rabbit, [{{quorum_tick_interval, {settings.QUORUM_TICK_MS}}}]}}].\n")
    (base / "rabbitmq-env.conf").write_text("# intentionally empty\n")
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n" if management
                                           else "[].\n")
