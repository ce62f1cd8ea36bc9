"""The private node: a RabbitMQ node of our own, run from the installed ``rabbitmq-server``.

Its node name, Erlang cookie (``HOME`` is the state folder), epmd port, data and logs all
belong to one state folder of this checkout (``settings.STATE_DIR``), so it never meets a
system-wide RabbitMQ. A small ``state.json`` records ports and pids, so every process
(kernels, CLI, tests) finds the same node; a file lock keeps two of them from booting two.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import settings
from .broker import Broker
from .connection import can_connect
from .errors import BrokerControlError
from .procs import free_port, pid_alive, port_bindable, port_open, wait_gone


class PrivateBroker(Broker):
    """A RabbitMQ node of our own in ``state_dir`` (see the module docstring)."""

    def __init__(self, server: Path, state_dir: Path | None = None):
        self.server = Path(server)
        self.state_dir = Path(state_dir or settings.STATE_DIR)
        self.state_file = self.state_dir / "state.json"
        digest = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:8]
        self.nodename = f"wq{digest}@localhost"
        state = self._read_state()
        super().__init__(url=self._url(state), management_url=self._mgmt(state), kind="private")

    # -- state ---------------------------------------------------------------------------
    def _read_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)
        self.url, self.management_url = self._url(state), self._mgmt(state)

    @staticmethod
    def _url(state: dict) -> str:
        return f"amqp://guest:guest@127.0.0.1:{state.get('amqp_port', 0)}/%2F"

    @staticmethod
    def _mgmt(state: dict) -> str | None:
        return f"http://127.0.0.1:{state['mgmt_port']}" if state.get("mgmt_port") else None

    @contextlib.contextmanager
    def _lock(self):
        """Serialise start/stop across processes (two kernels must not boot two nodes)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @property
    def can_restart(self) -> bool:
        return True

    def node_pid(self) -> int | None:
        """OS pid of the Erlang VM running the node, or None when it is not running."""
        pid = self._read_state().get("node_pid")
        return pid if pid_alive(pid) else None

    def is_running(self) -> bool:
        """True when the node's VM is alive and speaks AMQP."""
        state = self._read_state()
        return bool(state.get("amqp_port")) and pid_alive(state.get("node_pid")) \
            and can_connect(self._url(state))

    # -- environment ---------------------------------------------------------------------
    def _env(self, state: dict) -> dict:
        base = self.state_dir
        env = dict(os.environ)
        for key in list(env):  # a user's own RabbitMQ settings must not leak into ours
            if key.startswith("RABBITMQ_") and key != "RABBITMQ_SERVER":
                del env[key]
        env.update({
            "HOME": str(base),  # the Erlang cookie lives in $HOME/.erlang.cookie
            "RABBITMQ_NODENAME": self.nodename,
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

    def _write_config(self, state: dict) -> None:
        base = self.state_dir
        (base / "log").mkdir(parents=True, exist_ok=True)
        (base / "mnesia").mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text("\n".join([
            "# Written by helpers/broker.py for the private node; rewritten at every start.",
            f"listeners.tcp.1 = 127.0.0.1:{state['amqp_port']}",
            "management.tcp.ip = 127.0.0.1",
            f"management.tcp.port = {state['mgmt_port']}",
            f"collect_statistics_interval = {settings.STATS_INTERVAL_MS}",
            # The management API's queue figures are collected at the smallest sample
            # retention interval (5 s by default), whatever the line above says; 1 s is
            # the smallest RabbitMQ accepts.
            "management.sample_retention_policies.global.minute = 1",
            "management.sample_retention_policies.global.hour = 60",
            "management.sample_retention_policies.basic.minute = 1",
            "management.sample_retention_policies.basic.hour = 60",
            "management.sample_retention_policies.detailed.10 = 1",
            f"max_message_size = {settings.MAX_MESSAGE_BYTES}",
            "disk_free_limit.absolute = 50MB",
            "loopback_users.guest = true",
            "",
        ]))
        (base / "advanced.config").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("# intentionally empty\n")
        (base / "enabled_plugins").write_text("[rabbitmq_management].\n")

    def _choose_ports(self, old: dict) -> dict:
        state = dict(old)
        # A killed VM's main thread turns zombie (so its pid reads as gone) while other
        # threads, e.g. one stuck in an fsync, still hold its listening sockets for a moment.
        deadline = time.monotonic() + settings.PORT_RELEASE_S
        for key in ("amqp_port", "mgmt_port", "dist_port", "epmd_port"):
            port = state.get(key)
            if key != "epmd_port":
                while port and not port_bindable(port) and time.monotonic() < deadline:
                    time.sleep(0.1)
            # Keep the same ports across restarts so reconnecting clients find the node again,
            # unless another process holds one now (the node would not boot).
            if not port or (key != "epmd_port" and not port_bindable(port)):
                state[key] = free_port()
        return state

    def _start_epmd(self, state: dict, env: dict) -> dict:
        if pid_alive(state.get("epmd_pid")) and port_open("127.0.0.1", state["epmd_port"]):
            return state
        epmd = shutil.which("epmd") or str(self.server.parent / "epmd")
        if port_open("127.0.0.1", state["epmd_port"]):
            state["epmd_port"] = free_port()
            env["ERL_EPMD_PORT"] = str(state["epmd_port"])
        proc = subprocess.Popen([epmd, "-port", str(state["epmd_port"]), "-address", "127.0.0.1"],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        state["epmd_pid"] = proc.pid
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", state["epmd_port"]):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BrokerControlError(f"epmd ({epmd}) did not start on port "
                                         f"{state['epmd_port']}: run `{epmd} -port "
                                         f"{state['epmd_port']}` by hand to see why.")
            time.sleep(0.02)
        return state

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, progress=None) -> bool:
        """Start the node unless it already runs; return True when this call started it."""
        with self._lock():
            if self.is_running():
                self._write_state(self._read_state())
                return False
            state = self._choose_ports(self._read_state())
            env = self._env(state)
            state = self._start_epmd(state, env)
            self._write_config(state)
            log = open(self.state_dir / "log" / "console.log", "ab")
            started = time.monotonic()
            if progress:
                progress(f"starting a private RabbitMQ node ({self.server}) ...")
            proc = subprocess.Popen([str(self.server)], env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.state_dir,
                                    start_new_session=True)
            log.close()
            state.update(node_pid=proc.pid, nodename=self.nodename, server=str(self.server))
            self._write_state(state)
            deadline = started + settings.BOOT_TIMEOUT_S
            while not can_connect(self.url):
                if proc.poll() is not None:
                    raise BrokerControlError(
                        f"The private RabbitMQ node exited during boot (code {proc.returncode}); "
                        f"see {self.state_dir / 'log'}: {self._log_tail()}")
                if time.monotonic() > deadline:
                    self._kill_node(proc.pid)
                    raise BrokerControlError(
                        f"The private RabbitMQ node did not accept connections within "
                        f"{settings.BOOT_TIMEOUT_S:.0f} s; see {self.state_dir / 'log'}.")
                time.sleep(0.2)
            state["boot_s"] = round(time.monotonic() - started, 2)
            self._write_state(state)
            _CHILDREN[proc.pid] = proc
            return True

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = (self.state_dir / "log" / "console.log").read_text(errors="replace")
            return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _kill_node(self, pid: int, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        wait_gone(pid, 30)
        _reap(pid)

    def stop(self, epmd: bool = True) -> bool:
        """Stop the node cleanly (SIGTERM: RabbitMQ shuts down in order); True if it ran."""
        with self._lock():
            state = self._read_state()
            pid = state.get("node_pid")
            ran = pid_alive(pid)
            if ran:
                os.kill(pid, signal.SIGTERM)
                if not wait_gone(pid, 60):
                    self._kill_node(pid)
                _reap(pid)
            if epmd and pid_alive(state.get("epmd_pid")):
                os.kill(state["epmd_pid"], signal.SIGTERM)
                wait_gone(state["epmd_pid"], 5)
                state["epmd_pid"] = None
            state["node_pid"] = None
            self._write_state(state)
            return ran

    def restart(self) -> None:
        """Clean stop, then start with the same node name, ports and data folder."""
        self.stop(epmd=False)
        self.start()

    def crash(self) -> None:
        """SIGKILL the node's VM (no clean shutdown), then start it again."""
        with self._lock():
            pid = self._read_state().get("node_pid")
            if not pid_alive(pid):
                raise BrokerControlError("The private node is not running, so it cannot crash: "
                                         "start it first (`python -m helpers broker start`).")
            self._kill_node(pid)
        self.start()

    def rabbitmqctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``rabbitmqctl`` against this node (its cookie and epmd port)."""
        state = self._read_state()
        ctl = self.server.with_name("rabbitmqctl")
        return subprocess.run([str(ctl), "-n", self.nodename, *args], env=self._env(state),
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict:
        state = self._read_state()
        out = super().status()
        out.update(nodename=self.nodename, node_pid=self.node_pid(), state_dir=str(self.state_dir),
                   server=str(self.server), boot_s=state.get("boot_s"))
        return out


#: Processes this interpreter started (reaped when we stop them ourselves).
_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    """Collect the exit status of a node this interpreter started (no zombie left)."""
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        proc.wait()

