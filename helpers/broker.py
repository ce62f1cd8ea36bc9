"""Find, start, stop, restart and crash a RabbitMQ broker; one place for connection settings.

Resolution order (the same for notebooks, the CLI and the tests):

1. ``AMQP_URL`` is set: use that broker. Restarting it is not ours to do.
2. A ``rabbitmq-server`` is installed on this machine (Debian/Ubuntu package, conda-forge,
   Homebrew): run a *private node* from it, in a state folder of this checkout, on free
   loopback ports, with the management plugin. It is started once and reused by every
   process that asks; ``python -m helpers broker stop`` ends it.
3. Something answers on ``localhost:5672`` (typically ``docker compose up -d``): use it,
   restarting through ``docker compose restart``.
4. None of these: a ``NoBrokerError`` naming the ways to get a broker.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .connection import can_connect, connect, mask_url  # noqa: F401  (broker.connect is public)
from .errors import BrokerControlError, NoBrokerError

#: Package root's parent: the checkout, when helpers is used from a clone.
CHECKOUT = Path(__file__).resolve().parent.parent
#: Where the private node keeps its data, logs and state file (override: HELPERS_STATE_DIR).
STATE_DIR = Path(os.environ.get("HELPERS_STATE_DIR") or CHECKOUT / ".broker")
#: How long a private node may take to boot before we give up (seconds).
BOOT_TIMEOUT_S = float(os.environ.get("HELPERS_BOOT_TIMEOUT", "90"))
#: The largest message body the private node accepts (bytes); small, so the limit can be shown.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: How long a restart waits for the old node's ports to be released before it picks new
#: ones (clients reconnect to the same URL only when the ports are kept).
PORT_RELEASE_S = 15.0
#: How often the private node refreshes the statistics the management API serves (ms).
STATS_INTERVAL_MS = 250

NO_BROKER_HELP = (
    "No RabbitMQ broker found: set AMQP_URL to a running broker, or install rabbitmq-server "
    "(`apt-get install rabbitmq-server`, or `conda env create -f environment.yml`) so a private "
    "node can be started, or run `docker compose up -d` in this folder."
)


def _port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


@dataclass
class Broker:
    """A resolved broker: its AMQP URL, management URL and what we may do to it."""

    url: str
    management_url: str | None = None
    kind: str = "external"  # external | private | compose

    @property
    def can_restart(self) -> bool:
        """True when this process may stop/restart/crash the broker."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, url={mask_url(self.url)!r})"

    def describe(self) -> str:
        """One line for people: kind, masked URL, server version."""
        return f"{self.kind} broker at {mask_url(self.url)} (RabbitMQ {self.version()})"

    def version(self) -> str:
        """The server's RabbitMQ version, as it reports it on connect."""
        conn = connect(self.url, name="helpers-version")
        try:
            props = conn._impl.server_properties  # pika keeps the Connection.Start properties
            version = props.get("version", b"?")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            conn.close()

    def version_tuple(self) -> tuple[int, ...]:
        """``version()`` as integers, for comparisons such as ``>= (4, 3)``."""
        out = []
        for piece in self.version().split("."):
            digits = "".join(ch for ch in piece if ch.isdigit())
            out.append(int(digits) if digits else 0)
        return tuple(out)

    def management_auth(self) -> tuple[str, str]:
        """User and password for the management HTTP API (those of the AMQP URL)."""
        parts = urllib.parse.urlsplit(self.url)
        return (urllib.parse.unquote(parts.username or "guest"),
                urllib.parse.unquote(parts.password or "guest"))

    def vhost(self) -> str:
        """The virtual host of the AMQP URL (``/`` by default)."""
        path = urllib.parse.urlsplit(self.url).path
        return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"

    def _refuse(self, action: str):
        raise BrokerControlError(
            f"Cannot {action} the {self.kind} broker at {mask_url(self.url)} from here: "
            "it was not started by helpers (unset AMQP_URL to use a private node).")

    def start(self) -> None:
        """Start the broker (only private and compose brokers)."""
        self._refuse("start")

    def stop(self) -> None:
        """Stop the broker cleanly."""
        self._refuse("stop")

    def restart(self) -> None:
        """Stop cleanly and start again, keeping node name and data."""
        self._refuse("restart")

    def crash(self) -> None:
        """Kill the broker's node abruptly (SIGKILL), as a power cut would, then start it."""
        self._refuse("crash")

    def status(self) -> dict:
        """A small dict describing the broker; ``running`` tells whether AMQP answers."""
        return {"kind": self.kind, "url": mask_url(self.url),
                "management_url": self.management_url,
                "running": can_connect(self.url)}


class ComposeBroker(Broker):
    """The docker-compose service of this checkout, on localhost:5672."""

    @property
    def can_restart(self) -> bool:
        return shutil.which("docker") is not None and (CHECKOUT / "docker-compose.yml").exists()

    def _compose(self, *args: str) -> None:
        if not self.can_restart:
            self._refuse(args[0])
        proc = subprocess.run(["docker", "compose", *args], cwd=CHECKOUT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerControlError(f"`docker compose {' '.join(args)}` failed: "
                                     f"{proc.stderr.strip().splitlines()[-1:]}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while not can_connect(self.url):
            if time.monotonic() > deadline:
                raise BrokerControlError("The compose broker did not accept AMQP connections "
                                         f"within {BOOT_TIMEOUT_S:.0f} s.")
            time.sleep(0.2)

    def start(self) -> None:
        self._compose("start", "rabbitmq")
        self._wait_ready()

    def stop(self) -> None:
        self._compose("stop", "rabbitmq")

    def restart(self) -> None:
        self._compose("restart", "rabbitmq")
        self._wait_ready()

    def crash(self) -> None:
        self._compose("kill", "rabbitmq")
        self.start()


def find_rabbitmq_server() -> Path | None:
    """Path of a ``rabbitmq-server`` start script that runs as the current user, if any."""
    candidates = []
    if os.environ.get("RABBITMQ_SERVER"):
        candidates.append(Path(os.environ["RABBITMQ_SERVER"]))
    if os.environ.get("CONDA_PREFIX"):
        prefix = Path(os.environ["CONDA_PREFIX"])
        candidates += [prefix / "bin" / "rabbitmq-server", prefix / "sbin" / "rabbitmq-server"]
    # Debian/Ubuntu: /usr/sbin/rabbitmq-server is a wrapper that switches user; this is the script.
    candidates.append(Path("/usr/lib/rabbitmq/bin/rabbitmq-server"))
    found = shutil.which("rabbitmq-server")
    if found:
        candidates.append(Path(found))
    candidates += [Path("/opt/homebrew/sbin/rabbitmq-server"),
                   Path("/usr/local/sbin/rabbitmq-server")]
    for path in candidates:
        if not path.exists():
            continue
        real = path.resolve()
        if real.name == "rabbitmq-script-wrapper":
            real = real.with_name("rabbitmq-server")
        if real.exists() and os.access(real, os.X_OK):
            return real
    return None


class PrivateBroker(Broker):
    """A RabbitMQ node of our own, run from the installed ``rabbitmq-server`` script.

    Its node name, Erlang cookie (``HOME`` is the state folder), epmd port, data and logs all
    belong to ``state_dir``, so it never meets a system-wide RabbitMQ. A small ``state.json``
    records ports and pids, so every process (kernels, CLI, tests) finds the same node.
    """

    def __init__(self, server: Path, state_dir: Path = STATE_DIR):
        self.server = Path(server)
        self.state_dir = Path(state_dir)
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
        return pid if _pid_alive(pid) else None

    def is_running(self) -> bool:
        """True when the node's VM is alive and speaks AMQP."""
        state = self._read_state()
        return bool(state.get("amqp_port")) and _pid_alive(state.get("node_pid")) \
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
            f"collect_statistics_interval = {STATS_INTERVAL_MS}",
            # The management API's queue figures are collected at the smallest sample
            # retention interval (5 s by default), whatever the line above says; 1 s is
            # the smallest RabbitMQ accepts.
            "management.sample_retention_policies.global.minute = 1",
            "management.sample_retention_policies.global.hour = 60",
            "management.sample_retention_policies.basic.minute = 1",
            "management.sample_retention_policies.basic.hour = 60",
            "management.sample_retention_policies.detailed.10 = 1",
            f"max_message_size = {MAX_MESSAGE_BYTES}",
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
        deadline = time.monotonic() + PORT_RELEASE_S
        for key in ("amqp_port", "mgmt_port", "dist_port", "epmd_port"):
            port = state.get(key)
            if key != "epmd_port":
                while port and _port_open("127.0.0.1", port) and time.monotonic() < deadline:
                    time.sleep(0.1)
            # Keep the same ports across restarts so reconnecting clients find the node again.
            if not port or (_port_open("127.0.0.1", port) and key != "epmd_port"):
                state[key] = _free_port()
        return state

    def _start_epmd(self, state: dict, env: dict) -> dict:
        if _pid_alive(state.get("epmd_pid")) and _port_open("127.0.0.1", state["epmd_port"]):
            return state
        epmd = shutil.which("epmd") or str(self.server.parent / "epmd")
        if _port_open("127.0.0.1", state["epmd_port"]):
            state["epmd_port"] = _free_port()
            env["ERL_EPMD_PORT"] = str(state["epmd_port"])
        proc = subprocess.Popen([epmd, "-port", str(state["epmd_port"]), "-address", "127.0.0.1"],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        state["epmd_pid"] = proc.pid
        deadline = time.monotonic() + 10
        while not _port_open("127.0.0.1", state["epmd_port"]):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BrokerControlError(f"epmd ({epmd}) did not start on port "
                                         f"{state['epmd_port']}.")
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
            deadline = started + BOOT_TIMEOUT_S
            while not can_connect(self.url):
                if proc.poll() is not None:
                    raise BrokerControlError(
                        f"The private RabbitMQ node exited during boot (code {proc.returncode}); "
                        f"see {self.state_dir / 'log'}: {self._log_tail()}")
                if time.monotonic() > deadline:
                    self._kill_node(proc.pid)
                    raise BrokerControlError(
                        f"The private RabbitMQ node did not accept connections within "
                        f"{BOOT_TIMEOUT_S:.0f} s; see {self.state_dir / 'log'}.")
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
        _wait_gone(pid, 30)
        proc = _CHILDREN.pop(pid, None)
        if proc is not None:
            proc.wait()

    def stop(self, epmd: bool = True) -> bool:
        """Stop the node cleanly (SIGTERM: RabbitMQ shuts down in order); True if it ran."""
        with self._lock():
            state = self._read_state()
            pid = state.get("node_pid")
            ran = _pid_alive(pid)
            if ran:
                os.kill(pid, signal.SIGTERM)
                if not _wait_gone(pid, 60):
                    self._kill_node(pid)
                proc = _CHILDREN.pop(pid, None)
                if proc is not None:
                    proc.wait()
            if epmd and _pid_alive(state.get("epmd_pid")):
                os.kill(state["epmd_pid"], signal.SIGTERM)
                _wait_gone(state["epmd_pid"], 5)
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
            if not _pid_alive(pid):
                raise BrokerControlError("The private node is not running, so it cannot crash.")
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


def resolve() -> Broker:
    """Find the broker to use, without starting anything (see module docstring)."""
    url = os.environ.get("AMQP_URL")
    if url:
        mgmt = os.environ.get("RABBITMQ_MANAGEMENT_URL")
        if not mgmt:
            host = urllib.parse.urlsplit(url).hostname or "localhost"
            mgmt = f"http://{host}:15672"
        return Broker(url=url, management_url=mgmt, kind="external")
    server = find_rabbitmq_server()
    if server is not None:
        return PrivateBroker(server)
    if _port_open("127.0.0.1", 5672):
        return ComposeBroker(url="amqp://guest:guest@localhost:5672/%2F",
                             management_url="http://localhost:15672", kind="compose")
    raise NoBrokerError(NO_BROKER_HELP)


def get(progress=None) -> Broker:
    """Resolve the broker and make sure it is running (starting a private node if needed)."""
    found = resolve()
    if isinstance(found, PrivateBroker):
        found.start(progress=progress)
    return found


@contextlib.contextmanager
def running(progress=None):
    """Yield a running broker; stop it afterwards only if this block started it."""
    found = resolve()
    started = isinstance(found, PrivateBroker) and found.start(progress=progress)
    try:
        yield found
    finally:
        if started:
            found.stop()
