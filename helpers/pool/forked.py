"""The pool's side of the fork server (``helpers.pool.forkserver``): start it, ask it to fork.

``shared(env)`` gives this process's fork server (one per set of ``HELPERS_*`` and
``PYTHON*`` variables, which the server read when it imported the package); ``spawn``
returns a ``ForkedProcess``, the part of ``subprocess.Popen`` the pool uses.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from helpers.pool.forkserver import _recv, _send
from helpers.procs import close_and_reap
from helpers.settings import CHECKOUT


def worker_environment() -> dict:
    """The environment a worker starts with: this one, with the checkout on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
    return env


def start_worker(command: list[str], env: dict, server: "ForkServer | None"):
    """Start ``python -m helpers.worker ...`` (``command``): forked by ``server``, or as a
    fresh interpreter when it is None; either way with stdin, stdout and stderr piped."""
    if server is not None:  # the same options, to worker_options.main() in a forked child
        return server.spawn(command[3:], env)
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, bufsize=0)


class ForkedProcess:
    """What the pool uses of ``subprocess.Popen``, for a worker forked by the server."""

    def __init__(self, server: "ForkServer", pid: int, stdin, stdout, stderr):
        self.server, self.pid = server, pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self.pid in self.server._exits:
            self.returncode = self.server._exits[self.pid]
        if self.returncode is None and not self.server.alive():
            # The server is gone, and nobody will report this child's exit: look at the pid.
            from helpers.procs import pid_alive

            if not pid_alive(self.pid):
                self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.server.cond:
            while self.poll() is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
                self.server.cond.wait(0.1 if left is None else min(left, 0.1))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with self.server.cond:  # not after its exit was recorded: the pid may be reused
            if self.returncode is None:
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The pool's fork server: started on first use, ended by ``stop()`` (or its stdin)."""

    def __init__(self, env: dict):
        self.env = dict(env)
        self.cond = threading.Condition()
        self.process: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self._replies: dict[int, int] = {}
        #: pid -> exit status, as the server reported it (before it reaps the pid)
        self._exits: dict[int, int] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ids = 0
        self._reader: threading.Thread | None = None
        self._stderr: list[str] = []
        self._ready = False
        #: held through ``start``: pools of one process that spawn their first workers at
        #: the same moment (a fault's runs side by side) start one server, not one each
        self._starting = threading.Lock()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start the server and wait until it has imported everything (idempotent, and safe
        from several threads at once)."""
        with self._starting:
            if self.process is None:
                self._start(timeout)

    def _start(self, timeout: float) -> None:
        # Unlocked, two threads each started a server and the second's socket replaced the
        # first's: the first server, its socket orphaned, ended; a worker asked of it never
        # came ("did not fork a worker", twice in CI, in fault runs side by side).
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        # A process group of its own (its workers inherit it): a Jupyter kernel that shuts
        # down SIGTERMs every child in its own group and waits until none is left, and the
        # server, dead but not yet reaped, stayed listed until the kernel itself was killed
        # by SIGTERM, before its atexit handlers (notebook 07's cluster was left running).
        # Ending with the owner does not need the group: stdin EOF ends server and workers.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "helpers.pool.forkserver", str(theirs.fileno())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=self.env, pass_fds=[theirs.fileno()], process_group=0)
        theirs.close()
        self._reader = threading.Thread(target=self._read, name="forkserver", daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, name="forkserver-stderr",
                         daemon=True).start()
        with self.cond:
            ok = self.cond.wait_for(lambda: self._ready or not self.alive(), timeout)
        if not (ok and self._ready):
            detail = self._stderr[-1] if self._stderr else "no answer"
            self.stop()
            from helpers.errors import HelpersError

            raise HelpersError(f"The fork server did not start ({detail}): run "
                               "`python -m helpers.pool.forkserver 0` to see it fail, or start "
                               "workers without it (WorkerPool(..., fork_server=False)).")

    def _read_stderr(self) -> None:
        for raw in iter(self.process.stderr.readline, b""):
            self._stderr = (self._stderr + [raw.decode(errors="replace").rstrip()])[-20:]

    def _read(self) -> None:
        buffer = bytearray()
        while True:
            try:
                messages, _fds, eof = _recv(self.sock, buffer)
            except OSError:
                eof, messages = True, []
            with self.cond:
                for message in messages:
                    op = message["op"]
                    if op == "ready":
                        self._ready = True
                    elif op == "spawned":
                        pid = message["pid"]
                        old = self._children.pop(pid, None)  # a reused pid: settle the old
                        if old is not None and old.returncode is None:
                            old.returncode = self._exits.get(pid, -signal.SIGKILL)
                        self._exits.pop(pid, None)
                        self._replies[message["id"]] = pid
                    elif op == "exited":
                        # Recorded before the server may reap it (and the pid be reused).
                        self._exits[message["pid"]] = message["code"]
                        child = self._children.get(message["pid"])
                        if child is not None:
                            child.returncode = message["code"]
                        self._tell({"op": "reap", "pid": message["pid"]})
                self.cond.notify_all()
            if eof:
                return

    def _tell(self, message: dict) -> None:
        try:
            _send(self.sock, message)
        except OSError:
            pass  # the server is gone; its children were reparented to init, which reaps

    def spawn(self, argv: list[str], env: dict, timeout: float = 10) -> ForkedProcess:
        """Fork one worker running ``helpers.worker.options.main(argv)``; return its handle."""
        self.start()
        pipes = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr: (read, write) each
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        with self.cond:
            self._ids += 1
            request = self._ids
            try:
                _send(self.sock, {"op": "spawn", "id": request, "argv": argv, "env": env},
                      theirs)
            finally:
                for fd in theirs:
                    os.close(fd)
            got = self.cond.wait_for(lambda: request in self._replies or not self.alive(),
                                     timeout)
            if not got or request not in self._replies:
                for fd in (pipes[0][1], pipes[1][0], pipes[2][0]):
                    os.close(fd)
                from helpers.errors import HelpersError

                if not self.alive():
                    last = f"; its last words: {self._stderr[-1]}" if self._stderr else ""
                    raise HelpersError(f"The fork server ended (exit status "
                                       f"{self.process.returncode}{last}) before it forked a "
                                       "worker: start the pool again, or without it "
                                       "(HELPERS_FORK_SERVER=0).")
                raise HelpersError(f"The fork server did not fork a worker within {timeout:g} s "
                                   "(it runs, but did not answer): the machine may be out of "
                                   "processes or memory, or too busy; stop some workers and "
                                   "try again, or start them without it (HELPERS_FORK_SERVER=0).")
            pid = self._replies.pop(request)
            child = ForkedProcess(self, pid, open(pipes[0][1], "wb", buffering=0),
                                  open(pipes[1][0], "rb", buffering=0),
                                  open(pipes[2][0], "rb", buffering=0))
            self._children[pid] = child
        return child

    def stop(self) -> None:
        """End the server (after its workers: the pool stops those first)."""
        if self.process is None:
            return
        close_and_reap(self.process)
        if self.sock is not None:
            self.sock.close()
        if self._reader is not None:
            self._reader.join(timeout=1)
        if self.process.stderr:
            self.process.stderr.close()


_SERVERS: dict[tuple, ForkServer] = {}
_SERVERS_LOCK = threading.Lock()


def _key(env: dict) -> tuple:
    # What the server read at import time (settings' HELPERS_* values, the import path)
    # must be what the worker would read: a different value gets a server of its own.
    return tuple(sorted((k, v) for k, v in env.items()
                        if k.startswith(("HELPERS_", "PYTHON"))))


def shared(env: dict) -> ForkServer:
    """This process's fork server for ``env`` (started on its first spawn)."""
    with _SERVERS_LOCK:
        key = _key(env)
        server = _SERVERS.get(key)
        if server is None or (server.process is not None and not server.alive()):
            server = _SERVERS[key] = ForkServer(env)
        return server


@atexit.register
def stop_all() -> None:
    """End every fork server of this process (its workers were ended by their pools)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.stop()
