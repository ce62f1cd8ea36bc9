"""Processes and ports: a free loopback port, an open port, a live pid, waiting for a condition;
calls side by side in threads (``in_parallel``).

Readiness anywhere in this package is a condition that becomes true (a pid gone, a port
open, an AMQP connection that succeeds), polled by ``wait_until``; never a fixed sleep.
"""
from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import threading
import time
from typing import Collection


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


#: Where listening ports are picked: below the kernel's ephemeral range, whose ports every
#: outgoing connection borrows (thousands of them linger in TIME-WAIT on a busy machine, and
#: a node that later binds one of them fails to boot).
LISTEN_PORTS = (20000, 32768)


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return LISTEN_PORTS[1]


def port_bindable(port: int) -> bool:
    """True when a listener could bind ``port`` now, as a broker's listeners do (with
    SO_REUSEADDR: a server's own lingering sockets do not count, a client's do)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return not port_open("127.0.0.1", port)


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port nobody uses right now, outside the ephemeral range (see ``LISTEN_PORTS``).

    ``avoid``: ports already handed out but not bound yet (several nodes picked at once).
    """
    low, high = LISTEN_PORTS[0], min(LISTEN_PORTS[1], _ephemeral_start())
    for _ in range(200):
        port = random.randrange(low, high) if high > low else 0
        if port and port not in avoid and port_bindable(port):
            return port
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))  # let the kernel choose, as a last resort
        return sock.getsockname()[1]


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` runs (a zombie counts as gone, and is reaped if ours)."""
    if not pid or not _answers_signals(pid):
        return False
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] not in ("Z", "X")  # zombie, or being reaped
    except OSError:
        # Either no /proc here, or the zombie that answered kill(0) was reaped by its own
        # parent since (a fork server's worker is, just after the pool recorded its exit):
        # ask again rather than call a process that has just gone "alive".
        return _answers_signals(pid)


def _answers_signals(pid: int) -> bool:
    """``kill(pid, 0)``: False when no process has that pid (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def wait_until(condition, timeout: float, interval: float = 0.05):
    """Poll ``condition()`` until it returns something true or ``timeout`` seconds pass;
    return its last value (true when it held in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has exited; True when it did within ``timeout`` seconds."""
    return wait_until(lambda: not pid_alive(pid), timeout)


def close_and_reap(process, grace: float = 2.0) -> None:
    """End a child that exits when its stdin closes: close it, wait ``grace`` s, then kill."""
    try:
        process.stdin.close()  # the child's cue to exit
    except OSError:
        pass
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def in_parallel(calls: dict) -> dict:
    """Call each of ``calls`` (name -> function) in its own thread; their results by name.

    The first error raised by any of them is raised again here, once all have ended.
    """
    results: dict = {}
    errors: list[BaseException] = []

    def call(name, function) -> None:
        try:
            results[name] = function()
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=item, name=f"run-{item[0]}", daemon=True)
               for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return {name: results[name] for name in calls}
