"""The private node: a RabbitMQ node of our own, run from the installed ``rabbitmq-server``.

Its node name, Erlang cookie (``HOME`` is the state folder), epmd port, data and logs all
belong to one state folder of this checkout (``settings.STATE_DIR``), so it never meets a
system-wide RabbitMQ. A small ``state.json`` records ports and pids, so every process
(kernels, CLI, tests) finds the same node; a file lock keeps two of them from booting two.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from helpers import settings
from helpers.broker.boot_log import known_cause
from helpers.broker.model import Broker, server_major
from helpers.core.connection import can_connect
from helpers.errors import BrokerControlError
from helpers.broker.private_config import node_env, write_config
from helpers.broker.state_folder import locked, read_state, write_state
from helpers.procs import free_port, pid_alive, port_bindable, port_open, wait_gone, wait_until


class PrivateBroker(Broker):
    """A RabbitMQ node of our own in ``state_dir`` (see the module docstring).

    Parameters (all optional; a cluster member needs them, see ``helpers.broker.cluster``)
    ----------
    management: False starts no plugin at all (a broker like many users' own, for tests).
    nodename: the Erlang node name (default ``wq<hash of state_dir>@localhost``).
    epmd_port: an epmd the caller runs and owns: register there, never start or stop one.
    ports: ``amqp_port``, ``mgmt_port``, ``dist_port`` to use on the first start (later
        starts keep the ports recorded in ``state.json``).
    cookie: the Erlang cookie, written to ``state_dir/.erlang.cookie`` before every start.
    extra_config: lines appended to the node's ``rabbitmq.conf``.
    """

    def __init__(self, server: Path, state_dir: Path | None = None, management: bool = True, *,
                 nodename: str | None = None, epmd_port: int | None = None,
                 ports: dict | None = None, cookie: str | None = None,
                 extra_config: tuple[str, ...] = ()):
        self.server = Path(server)
        self.management = management
        self.state_dir = Path(state_dir or settings.STATE_DIR)
        self.state_file = self.state_dir / "state.json"
        digest = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:8]
        self.nodename = nodename or f"wq{digest}@localhost"
        self.shared_epmd_port, self.first_ports = epmd_port, dict(ports or {})
        self.cookie, self.extra_config = cookie, tuple(extra_config)
        state = self._read_state()
        super().__init__(url=self._url(state), management_url=self._mgmt(state), kind="private")

    # -- state ---------------------------------------------------------------------------
    def _read_state(self) -> dict:
        return read_state(self.state_file)

    def _write_state(self, state: dict) -> None:
        write_state(self.state_file, state)
        self.url, self.management_url = self._url(state), self._mgmt(state)

    @staticmethod
    def _url(state: dict) -> str:
        return f"amqp://guest:guest@127.0.0.1:{state.get('amqp_port', 0)}/%2F"

    def _mgmt(self, state: dict) -> str | None:
        if not self.management or not state.get("mgmt_port"):
            return None
        return f"http://127.0.0.1:{state['mgmt_port']}"

    @contextlib.contextmanager
    def _lock(self):
        """Serialise start/stop across processes (two kernels must not boot two nodes)."""
        with locked(self.state_dir):
            yield

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

    # -- environment (helpers.broker.private_config) --------------------------------------------
    def _env(self, state: dict) -> dict:
        return node_env(self.state_dir, self.nodename, state)

    def _choose_ports(self, old: dict) -> dict:
        state = {**self.first_ports, **old}
        if self.shared_epmd_port:
            state["epmd_port"] = self.shared_epmd_port
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

    def _start_epmd(self, state: dict) -> dict:
        if self.shared_epmd_port:  # the caller's epmd: it starts and stops it
            return state
        if pid_alive(state.get("epmd_pid")) and port_open("127.0.0.1", state["epmd_port"]):
            return state
        if port_open("127.0.0.1", state["epmd_port"]):
            state["epmd_port"] = free_port()
        state["epmd_pid"] = start_epmd(state["epmd_port"], self.server)
        return state

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, progress=None) -> bool:
        """Start the node unless it already runs; return True when this call started it."""
        with self._lock():
            if self.is_running():
                self._write_state(self._read_state())
                return False
            state = self._start_epmd(self._choose_ports(self._read_state()))
            env = self._env(state)
            write_config(self.state_dir, state, self.extra_config, self.cookie,
                         management=self.management)
            log = open(self.state_dir / "log" / "console.log", "ab")
            log_from = log.tell()  # what this boot writes (the log keeps earlier boots)
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
                    raise BrokerControlError(known_cause(self._log_text(log_from)) or (
                        f"The private RabbitMQ node exited during boot (code {proc.returncode}); "
                        f"see {self.state_dir / 'log'}: {self._log_tail(start=log_from)}"))
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

    def _log_text(self, start: int = 0) -> str:
        try:
            with open(self.state_dir / "log" / "console.log", "rb") as log:
                log.seek(start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 3, start: int = 0) -> str:
        text = self._log_text(start)
        if not text:
            return "(no log)"
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

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
                self._before_sigterm()
                os.kill(pid, signal.SIGTERM)
                if not wait_gone(pid, 60):
                    self._kill_node(pid)
                _reap(pid)
            if epmd and not self.shared_epmd_port and pid_alive(state.get("epmd_pid")):
                os.kill(state["epmd_pid"], signal.SIGTERM)
                wait_gone(state["epmd_pid"], 5)
                state["epmd_pid"] = None
            state["node_pid"] = None
            self._write_state(state)
            return ran

    def _before_sigterm(self) -> None:
        # RabbitMQ 3.x's management plugin, when the node stops, makes one call that nothing
        # answers and waits out its 5 s timeout (its event handler's terminate). Removing the
        # handler first, while everything runs, takes it out at once: a clean stop in 1 s, not
        # 6. The queues and messages stop exactly as they would (the handler only feeds the
        # statistics). 4.x stops without the wait, so it is not asked.
        major = server_major(self.server)
        if not (self.management and major is not None and major < 4):
            return
        with contextlib.suppress(Exception):
            self.rabbitmqctl("eval", "gen_event:delete_handler(rabbit_event, "
                             "rabbit_mgmt_db_handler, []).", timeout=15)

    def restart(self) -> None:
        """Clean stop, then start with the same node name, ports and data folder."""
        self.stop(epmd=False)
        self.start()

    def kill(self) -> None:
        """SIGKILL the node's VM (no clean shutdown) and wait until it is gone."""
        with self._lock():
            pid = self._read_state().get("node_pid")
            if not pid_alive(pid):
                how = ("`python -m helpers cluster start-node`" if self.shared_epmd_port
                       else "`python -m helpers broker start`")
                raise BrokerControlError(f"The node {self.nodename} is not running, so it "
                                         f"cannot be killed or crashed: start it first ({how}).")
            self._kill_node(pid)

    def crash(self) -> None:
        """SIGKILL the node's VM (no clean shutdown), then start it again."""
        self.kill()
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


def start_epmd(port: int, server: Path, hint: str = "") -> int:
    """Start an epmd on 127.0.0.1:``port`` in its own session; return its pid once it listens.

    ``hint``: what the user can do when it does not start (default: run it by hand).
    """
    epmd = shutil.which("epmd") or str(Path(server).parent / "epmd")
    proc = subprocess.Popen([epmd, "-port", str(port), "-address", "127.0.0.1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    if not wait_until(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, 10) \
            or proc.poll() is not None:
        raise BrokerControlError(f"epmd ({epmd}) did not start on port {port}: "
                                 + (hint or f"run `{epmd} -port {port}` by hand to see why."))
    return proc.pid


def _reap(pid: int) -> None:
    """Collect the exit status of a node this interpreter started (no zombie left)."""
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        proc.wait()

