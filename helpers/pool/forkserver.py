"""A fork server: one process that has imported pika and the worker, forking each worker.

A worker started as ``python -m helpers.worker`` spends most of its start-up in the
interpreter and its imports (pika, the standard library's json, threading, dataclasses
...), about 0.1-0.2 s of CPU each; eight at once on two cores queue behind each other. The
fork server pays that once: ``python -m helpers.pool.forkserver`` imports everything a worker
needs, then waits for requests on a UNIX socket. Each request carries the worker's argv, a
few environment variables and its three standard streams (pipes the pool holds the other
ends of, passed with ``SCM_RIGHTS``); the server forks, the child puts the pipes on fds 0-2
and runs ``helpers.worker.options.main``, which opens the worker's *own* connection (no
connection ever crosses a fork: the server never opens one).

Ownership: one server per process that uses it (``shared()``, as ``multiprocessing`` keeps
one fork server), started on the first spawn and reused by every later pool, so a
notebook's second run starts warm; ``atexit`` ends it after the pools' own handlers have
ended their workers. The server exits when its stdin closes (its owner has gone); each
worker exits when *its* stdin closes, exactly as a spawned one does, so a restarted kernel
leaves no orphan either way. The server waits for each child without reaping it (``waitid`` with ``WNOWAIT``),
reports the exit status, and reaps only once the pool has recorded it, so a pid the pool
may still signal is never reused meanwhile. ``ForkedProcess`` gives the pool the part of
``subprocess.Popen`` it uses (pid, poll, wait, send_signal, kill, the three pipes); it and
``ForkServer``, the pool's side, live in ``helpers.pool.forked``.
"""
from __future__ import annotations

import gc
import io
import json
import os
import selectors
import signal
import socket
import struct
import sys

#: What a pool's worker imports, done once in the server so that a forked child starts
#: warm; and no more, since the first worker waits for them (``tests/test_worker_startup``
#: checks that a pool's worker imports nothing beyond these).
PRELOAD = ("pika", "pika.adapters.blocking_connection", "helpers.worker.consumer",
           "helpers.worker.options", "helpers.core.connection", "helpers.core.topology",
           "helpers.worker.console",
           "shutil",  # argparse's help formatter imports it when the parser is built
           "encodings.idna")  # the host name's codec, loaded by the first getaddrinfo
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
        from helpers.worker.options import main

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
    """Entry point of ``python -m helpers.pool.forkserver CONTROL_FD`` (started by ``ForkServer``)."""
    control = socket.socket(fileno=int(sys.argv[1]))
    for name in PRELOAD:
        __import__(name)
    # Objects that exist now are shared by every child; keep the collector from touching
    # (and so copying) their pages in each child.
    gc.freeze()
    sys.stdout.flush()
    try:
        serve(control)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
