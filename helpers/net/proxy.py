"""A delaying TCP proxy: a worker "on a host N ms away", on one machine (no ``tc netem`` here).

``LatencyProxy(url, round_trip_ms=20)`` listens on 127.0.0.1 and forwards each connection to
the broker of ``url``, holding every byte half the round trip in each direction (see
``helpers.net.relay``). Bytes keep their order, none is dropped, bandwidth is not limited; when
one side closes, the other is closed once the bytes sent before the close are delivered.
The TCP handshake itself is not delayed (AMQP's opening exchange is).

The relay runs as its own process by default (``python -m helpers.net.relay``): as a thread it
would share the GIL with the pool's event readers, and a thread waiting for the GIL (up to
the 5 ms switch interval) adds just the kind of delay it is meant to control. The child
exits when its stdin closes, so a SIGKILLed owner leaves no proxy behind.

    with LatencyProxy(broker.url, round_trip_ms=20) as proxied_url:
        pool = WorkerPool(proxied_url, spec)      # same user, password and vhost
"""
from __future__ import annotations

import atexit
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import weakref

from helpers.errors import BadInputError, BrokerConnectionError, HelpersError
from helpers.procs import close_and_reap
from helpers.net.relay import MAX_ROUND_TRIP_MS

_LIVE: "weakref.WeakSet[LatencyProxy]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for proxy in list(_LIVE):
        proxy.stop()


def check_round_trip(round_trip_ms) -> None:
    """Raise ``BadInputError`` unless ``round_trip_ms`` is a round trip the proxy can add."""
    if isinstance(round_trip_ms, bool) or not isinstance(round_trip_ms, (int, float)) \
            or not 0 <= round_trip_ms <= MAX_ROUND_TRIP_MS:  # also refuses nan
        raise BadInputError(f"The added round trip must be 0 to {MAX_ROUND_TRIP_MS:.0f} ms "
                            f"(got {round_trip_ms!r}): give a number of milliseconds.")


class LatencyProxy:
    """A delaying TCP proxy in front of the broker at ``url``, owned by whoever starts it.

    Parameters
    ----------
    url: the broker's AMQP URL; the proxied URL keeps its user, password, vhost and query.
    round_trip_ms: the round-trip time to add (half each way), 0 for a plain relay.
    in_thread: run in a thread of this process instead of a child process (for comparison:
        it shares this process's GIL, see the module docstring).
    """

    def __init__(self, url: str, round_trip_ms: float, *, in_thread: bool = False):
        check_round_trip(round_trip_ms)
        self.broker_url, self.round_trip_ms, self.in_thread = url, float(round_trip_ms), in_thread
        parts = urllib.parse.urlsplit(url)
        default_port = 5671 if parts.scheme == "amqps" else 5672
        self.upstream = (parts.hostname or "localhost", parts.port or default_port)
        self.url: str | None = None
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._thread = self._stop_w = None
        self._native_id: int | None = None

    @property
    def pid(self) -> int | None:
        """The proxy process's pid (this process's when it runs in a thread)."""
        return self.process.pid if self.process else os.getpid() if self._thread else None

    def start(self) -> str:
        """Start listening and return the URL a worker should use instead of ``url``."""
        if self.url is not None:
            return self.url
        host, port = self.upstream
        try:
            socket.create_connection(self.upstream, timeout=5).close()
        except OSError as exc:
            raise BrokerConnectionError(
                f"The latency proxy cannot reach the broker at {host}:{port} "
                f"({exc.strerror or exc}): is it running? (`python -m helpers broker status`)"
            ) from None
        self.port = self._start_thread() if self.in_thread else self._start_process()
        _LIVE.add(self)
        parts = urllib.parse.urlsplit(self.broker_url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return self.url

    def _start_process(self) -> int:
        from helpers.settings import CHECKOUT

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
        errors = tempfile.TemporaryFile()  # a file, not a pipe: nobody has to drain it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "helpers.net.relay", "--upstream", "%s:%d" % self.upstream,
             "--round-trip-ms", repr(self.round_trip_ms), "--exit-with-parent"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        # (selectors, not select.select: a process with over 1024 descriptors open, as a
        # long test run or notebook kernel may be, cannot select() on its newest ones)
        with errors, selectors.DefaultSelector() as waiting:
            waiting.register(self.process.stdout, selectors.EVENT_READ)
            if waiting.select(20):
                line = self.process.stdout.readline()
                if line.startswith(b"{"):
                    return json.loads(line)["port"]
            self.stop()
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip().splitlines()
        raise HelpersError("The latency proxy did not start: " +
                           (said[-1] if said else "no word from it within 20 s") + ".")

    def _start_thread(self) -> int:
        from helpers.net.relay import serve

        ready: list = []
        started = threading.Event()
        stop_r, self._stop_w = os.pipe()  # closing the write end stops the loop

        def run():
            self._native_id = threading.get_native_id()
            try:
                serve(self.upstream, self.round_trip_ms,
                      lambda port: (ready.append(port), started.set()), stop_fd=stop_r,
                      precise_timers=False)
            finally:
                started.set()
                os.close(stop_r)

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        started.wait(20)  # set once listening (ready.append runs first), or on failure
        if not ready:
            raise HelpersError("The latency proxy thread did not start listening within 20 s.")
        return ready[0]

    def cpu_s(self) -> float | None:
        """CPU seconds the proxy has used so far (Linux ``/proc``; None elsewhere or if gone)."""
        if self.process is not None:
            path = f"/proc/{self.process.pid}/stat"
        elif self._native_id is not None:
            path = f"/proc/self/task/{self._native_id}/stat"
        else:
            return None
        try:
            with open(path) as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        """End the proxy and every connection through it; safe to call twice."""
        if self.process is not None:
            close_and_reap(self.process)
            self.process.stdout.close()
        if self._thread is not None and self._stop_w is not None:
            os.close(self._stop_w)
            self._stop_w = None
            self._thread.join(5)
        self.url = None
        _LIVE.discard(self)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def round_trips_s(url: str, queue: str, n: int, idle_s: float = 0.0,
                  warm_up: int = 1) -> list[float]:
    """Seconds each of ``n`` passive declares of ``queue`` took on one channel, each after
    ``idle_s`` idle, after ``warm_up`` untimed ones: the round trip a client at ``url`` sees."""
    from helpers.core.connection import connect

    with connect(url, name=f"round trip {queue}") as conn:
        channel = conn.channel()
        for _ in range(warm_up):
            channel.queue_declare(queue, passive=True)
        samples = []
        for _ in range(n):
            if idle_s:
                time.sleep(idle_s)
            started = time.perf_counter()
            channel.queue_declare(queue, passive=True)
            samples.append(time.perf_counter() - started)
    return samples
