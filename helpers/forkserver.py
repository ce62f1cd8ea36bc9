"""A fork server: one process that has imported pika and the worker, forking each worker.

A worker started as ``python -m helpers.worker`` spends most of its start-up in the
interpreter and its imports (pika, the standard library's json, threading, dataclasses
...), about 0.1-0.2 s of CPU each; eight at once on two cores queue behind each other. The
fork server pays that once: ``python -m helpers.forkserver`` imports everything a worker
needs, then waits for requests on a UNIX socket. Each request carries the worker's argv, a
few environment variables and its three standard streams (pipes the pool holds the other
ends of, passed with ``SCM_RIGHTS``); the server forks, the child puts the pipes on fds 0-2
and runs ``helpers.worker_options.main``, which opens the worker's *own* connection (no
connection ever crosses a fork: the server never opens one).

Ownership: one server per process that uses it (``shared()``, as ``multiprocessing`` keeps
one fork server), started on the first spawn and reused by every later pool, so a
notebook's second run starts warm; ``atexit`` ends it after the pools' own handlers have
ended their workers. The server exits when its stdin closes (its owner has gone); each worker exits when *its*
stdin closes, exactly as a spawned one does, so a restarted kernel leaves no orphan either
way. The server waits for each child without reaping it (``waitid`` with ``WNOWAIT``),
reports the exit status, and reaps only once the pool has recorded it, so a pid the pool
may still signal is never reused meanwhile. ``ForkedProcess`` gives the pool the part of
``subprocess.Popen`` it uses (pid, poll, wait, send_signal, kill, the three pipes).
"""
from __future__ import annotations

import atexit
import io
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

#: What a worker imports, done once in the server so that a forked child starts warm.
PRELOAD = ("pika", "pika.adapters.blocking_connection", "helpers.worker",
           "helpers.worker_options", "helpers.connection", "helpers.broker",
           "helpers.dead_letter", "helpers.topology", "helpers.console")
_HEADER = struct.Struct("!I")


# -- messages: a 4-byte length, then JSON (with up to 3 fds attached to a spawn request) --
def _send(sock: socket.socket, message: dict, fds=()) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], list(fds))
    else:
        sock.sendall(payload)


def _recv(sock: socket.socket, buffer: bytearray):
    """Read what is there into ``buffer``; return (messages, fds, eof)."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 3)
    buffer += data
    messages = []
    while len(buffer) >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + size:
            break
        messages.append(json.loads(bytes(buffer[_HEADER.size:_HEADER.size + size])))
        del buffer[:_HEADER.size + size]
    return messages, fds, not data


# -- the server process -----------------------------------------------------------------
def _child(control: socket.socket, argv: list[str], env: dict, fds: list[int],
           server_fds: list[int]) -> None:
    """In the forked child: become a worker with the given pipes as stdin/stdout/stderr."""
    try:
        signal.set_wakeup_fd(-1)
        control.close()
        for fd in server_fds:  # the server's own (wake-up pipe, selector): not the worker's
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(env)
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                      line_buffering=False)
        sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                      line_buffering=True)
        import random

        random.seed()  # not the server's sequence, shared by every sibling
        from helpers.worker_options import main

        code = main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
    except SystemExit as exc:  # argparse refusing an option
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # noqa: BLE001 - the child must never return into the server
        try:
            print(f"error: the forked worker failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            code = 1
    os._exit(code or 0)


def _status(result) -> int:
    """A ``waitid`` result as ``Popen.returncode``: the exit code, or minus the signal."""
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status


def serve(control: socket.socket) -> None:
    """The server's loop: fork on request, report exits, reap once told; end at stdin EOF."""
    children: set[int] = set()
    reported: set[int] = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd fires
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    buffer = bytearray()
    pending_fds: list[int] = []  # fds arrive with the first bytes of their request
    server_fds = [wake_r, wake_w, selector.fileno()]
    _send(control, {"op": "ready", "pid": os.getpid()})
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    return  # the owner is gone; each worker watches its own stdin
            elif key.data == "wake":
                os.read(wake_r, 4096)
            else:
                messages, fds, eof = _recv(control, buffer)
                pending_fds += fds
                if eof:
                    return
                for message in messages:
                    if message["op"] == "spawn":
                        fds, pending_fds = pending_fds[:3], pending_fds[3:]
                        pid = os.fork()
                        if pid == 0:
                            _child(control, message["argv"], message["env"], fds, server_fds)
                        for fd in fds:
                            os.close(fd)
                        children.add(pid)
                        _send(control, {"op": "spawned", "id": message["id"], "pid": pid})
                    elif message["op"] == "reap":
                        pid = message["pid"]
                        if pid in children:
                            os.waitpid(pid, 0)
                            children.discard(pid)
                            reported.discard(pid)
        for pid in list(children - reported):  # exited since we last looked? (not reaped)
            result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if result is not None and result.si_pid == pid:
                reported.add(pid)
                _send(control, {"op": "exited", "pid": pid, "code": _status(result)})


def main() -> int:
    """Entry point of ``python -m helpers.forkserver CONTROL_FD`` (started by ``ForkServer``)."""
    control = socket.socket(fileno=int(sys.argv[1]))
    for name in PRELOAD:
        __import__(name)
    sys.stdout.flush()
    try:
        serve(control)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return 0


# -- the pool's side --------------------------------------------------------------------
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
            from .procs import pid_alive

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

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


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

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start the server and wait until it has imported everything (idempotent)."""
        if self.process is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        self.process = subprocess.Popen(
            [sys.executable, "-m", "helpers.forkserver", str(theirs.fileno())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=self.env, pass_fds=[theirs.fileno()])
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
            from .errors import HelpersError

            raise HelpersError(f"The fork server did not start ({detail}): run "
                               "`python -m helpers.forkserver 0` to see it fail, or start "
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
        """Fork one worker running ``helpers.worker_options.main(argv)``; return its handle."""
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
                from .errors import HelpersError

                raise HelpersError("The fork server did not fork a worker: the machine may "
                                   "be out of processes or memory; stop some workers and "
                                   "try again.")
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
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.sock is not None:
            self.sock.close()
        if self._reader is not None:
            self._reader.join(timeout=1)
        if self.process.stderr:
            self.process.stderr.close()


if __name__ == "__main__":
    sys.exit(main())


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
