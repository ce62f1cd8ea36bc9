"""Start, kill, add and stop worker subprocesses, and collect their events live.

The pool hands each child connection *settings* (a URL and a queue spec), never a live
connection; by default a warm fork server (``helpers.pool.forkserver``) forks each child. Each
child's stdin is a pipe held by the pool: when the pool's process dies for any reason the
pipe closes and the children exit by themselves (``--exit-with-parent``). ``stop()`` runs
from ``with`` blocks, ``finally`` clauses and ``atexit``.
"""
from __future__ import annotations

import atexit
import collections
import io
import random
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field

from helpers.core.connection import mask_url, rotated, url_list
from helpers.errors import BadInputError, HelpersError
from helpers.pool.events import EventLog, finished_unacked, parse_lines
from helpers.pool import forked
from helpers.worker.config import WorkerConfig
from helpers.net.proxy import LatencyProxy
from helpers.settings import FORK_SERVER
from helpers.core.topology import QueueSpec

_LIVE_POOLS: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()
#: After reading a worker's events, wait this long (s) before the next read, so that lines
#: written meanwhile arrive together: with short tasks a worker writes thousands of lines a
#: second, and one wake-up per line cost the parent more CPU than a worker spends on a task.
#: Events carry their own timestamps, so this delays only when the parent sees them.
READ_COALESCE_S = 0.005


@atexit.register
def _stop_all_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.stop()


@dataclass
class WorkerHandle:
    """The pool's record of one worker process."""

    name: str
    process: subprocess.Popen  # or forked.ForkedProcess, its look-alike
    config: WorkerConfig
    ready_t: float | None = None
    stderr: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    threads: list = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class WorkerPool:
    """A set of ``python -m helpers.worker`` processes consuming one queue.

    Parameters
    ----------
    url: AMQP URL(s) the workers connect to; of several (a cluster), worker i tries the i-th first.
    spec: the queue they consume (declared by each worker with the same arguments).
    config: how every worker consumes (``WorkerConfig``: prefetch, acks, mode, speed, ...).
    on_event: called with each event dict, from a reader thread.
    latency_ms: a round trip (ms) added between each worker and the broker by a
        ``LatencyProxy`` the pool starts and stops (workers "on a far host"); 0: none.
    fork_server: True: fork each worker from a warm process (``helpers.pool.forkserver``, consuming
        sooner); False: ``python -m helpers.worker`` each. Default ``HELPERS_FORK_SERVER``.
    """

    def __init__(self, url: str | list[str], spec: QueueSpec,
                 config: WorkerConfig = WorkerConfig(), *, on_event=None,
                 latency_ms: float = 0, fork_server: bool | None = None):
        self.url, self.spec = ",".join(url_list(url)), spec  # (an empty list is refused)
        self.proxy = LatencyProxy(url, latency_ms) if latency_ms else None
        self.config = config
        self.log = EventLog(on_event)
        self.workers: dict[str, WorkerHandle] = {}
        self._counter = 0
        self._threads: list[threading.Thread] = []
        self.kills: list[dict] = []
        use_fork = FORK_SERVER if fork_server is None else fork_server
        self.fork_server = forked.shared(forked.worker_environment()) if use_fork else None
        _LIVE_POOLS.add(self)

    # -- spawning ------------------------------------------------------------------------
    def _command(self, name: str, config: WorkerConfig) -> list[str]:
        # The URL (and its password) goes through the environment, not argv: any local user
        # can read a process's command line with `ps`.
        cmd = [sys.executable, "-m", "helpers.worker", "--events",
               "--queue-spec", self.spec.to_json(), "--name", name, "--exit-with-parent"]
        return cmd + config.argv()

    def _spawn(self, **overrides) -> WorkerHandle:
        self._counter += 1
        name = overrides.pop("name", None) or f"w{self._counter}"
        config = self.config.replace(**overrides)
        env = forked.worker_environment()
        # Read by the worker when --url is not given: the proxy's, or every URL, rotated.
        env["AMQP_URL"] = self.proxy.start() if self.proxy else \
            ",".join(rotated(self.url, self._counter - 1))
        proc = forked.start_worker(self._command(name, config), env, self.fork_server)
        return self._attach(WorkerHandle(name, proc, config), proc.stdout, proc.stderr)

    def _attach(self, handle: WorkerHandle, stdout, stderr) -> WorkerHandle:
        """Keep ``handle`` and read its event lines (stdout) and its stderr in threads."""
        self.workers[handle.name] = handle
        for target, stream in ((self._read_events, stdout), (self._read_stderr, stderr)):
            thread = threading.Thread(target=target, args=(handle, stream),
                                      name=f"pool-{handle.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
            handle.threads.append(thread)
        return handle

    def _read_events(self, handle: WorkerHandle, stream) -> None:
        # The pipes are unbuffered (bufsize=0, for stdin's sake): readline on a raw pipe reads
        # one byte per system call (this reader was the machine's busiest thread). Instead
        # take whatever has arrived, and hand its lines over under one lock, one wake-up.
        reader = io.BufferedReader(stream)
        rest = b""
        while True:
            try:
                chunk = reader.read1(1 << 16)
            except (OSError, ValueError):  # closed by stop() while we waited: the end
                chunk = b""
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop() if chunk else b""
            events = parse_lines(lines, handle.stderr)
            for event in events:
                if event.get("event") == "ready" and handle.ready_t is None:
                    handle.ready_t = event["t"]
            self.log.add(events)
            if not chunk:
                break
            if len(chunk) < 4096:
                time.sleep(READ_COALESCE_S)  # let a few more lines arrive: one wake-up for all

    @staticmethod
    def _read_stderr(handle: WorkerHandle, stream) -> None:
        for raw in iter(io.BufferedReader(stream).readline, b""):
            handle.stderr.append(raw.decode(errors="replace").rstrip())

    def _wait_ready(self, handles: list[WorkerHandle], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.log.cond:
            while True:
                dead = [h for h in handles if h.ready_t is None and not h.alive]
                if dead:
                    h = dead[0]
                    for thread in h.threads[1:]:  # let the stderr reader drain what it said
                        thread.join(timeout=1)
                    said = [line for line in h.stderr if line.startswith("error:")]
                    detail = (said[-1][len("error:"):].strip() if said else
                              h.stderr[-1] if h.stderr else f"exit code {h.process.returncode}")
                    raise HelpersError(
                        f"Worker {h.name} exited before it was ready ({detail}): fix what it "
                        f"says, or run `python -m helpers worker --queue {self.spec.name}` to "
                        "see it fail in the foreground.")
                if all(h.ready_t is not None for h in handles):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HelpersError(
                        f"Workers were not consuming after {timeout:.0f} s: the machine may "
                        "be too busy or the broker slow to answer; try fewer workers or a "
                        "longer timeout.")
                self.log.cond.wait(min(left, 0.1))

    def start(self, n: int, timeout: float = 60, per_worker: list[dict] | None = None,
              wait: bool = True, **overrides) -> list[WorkerHandle]:
        """Spawn ``n`` workers and return once every one of them is consuming.

        ``overrides`` apply to all ``n``; ``per_worker[i]`` (e.g. ``{"speed": 2}``) to the
        i-th only. ``wait=False`` returns at once (a replacement started by a killer that
        must keep its own pace); ``handle.ready_t`` is set when the worker consumes.
        """
        if n < 1:
            raise BadInputError(f"the number of workers must be at least 1 (got {n}).")
        per_worker = list(per_worker or []) + [{}] * n
        handles = [self._spawn(**{**overrides, **per_worker[i]}) for i in range(n)]
        if not wait:
            return handles
        try:
            self._wait_ready(handles, timeout)
        except BaseException:
            for h in handles:  # only the new ones: a failed add must not stop a running pool
                if h.alive:  # not a kill of the experiment: kept out of self.kills
                    h.process.kill()
                h.process.wait()
            raise
        return handles

    add = start  # adding workers to a running pool is the same operation

    # -- killing and stopping ------------------------------------------------------------
    def alive(self) -> list[WorkerHandle]:
        """Workers whose process is still running."""
        return [h for h in self.workers.values() if h.alive]

    def kill(self, worker: str | WorkerHandle | None = None,
             sig: int = signal.SIGKILL) -> WorkerHandle | None:
        """Send ``sig`` to a worker (by name, handle, or a random live one); return it."""
        if worker is None:
            live = self.alive()
            if not live:
                return None
            worker = random.choice(live)
        handle = self.workers[worker] if isinstance(worker, str) else worker
        try:
            handle.process.send_signal(sig)
        except ProcessLookupError:
            pass  # already dead is fine
        self.kills.append({"worker": handle.name, "t": time.time(), "signal": int(sig)})
        return handle

    def stop(self, timeout: float = 2.0, ack_grace_s: float = 1.0) -> None:
        """Stop every worker: let acks of finished tasks leave (``ack_grace_s`` at most), then
        close stdin, then SIGTERM, then SIGKILL; reap all."""
        alive = {h.name for h in self.alive()}
        self.wait_for(lambda pool: finished_unacked(pool.events, alive) == 0, ack_grace_s)
        handles = list(self.workers.values())
        for h in handles:
            try:
                h.process.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for h in handles:
                try:
                    h.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    try:
                        h.process.send_signal(sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + timeout
        for h in handles:
            h.process.wait()
        # The readers see EOF once a worker has exited; let them drain before closing the
        # pipes under them (closing first makes a reader fail with "read of closed file").
        for t in self._threads:
            t.join(timeout=2)
        for h in handles:
            for stream in (h.process.stdout, h.process.stderr):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        if self.proxy is not None:  # after the workers: none of them loses its broker early
            self.proxy.stop()
        _LIVE_POOLS.discard(self)

    def __repr__(self) -> str:
        alive = sum(h.alive for h in self.workers.values())
        return (f"WorkerPool(queue={self.spec.name!r}, url={mask_url(self.url)!r}, "
                f"workers={len(self.workers)}, alive={alive})")

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- events --------------------------------------------------------------------------
    @property
    def events(self) -> list[dict]:
        """Every event received so far (live: copy it with ``snapshot()`` to keep it)."""
        return self.log.events

    @property
    def finished(self) -> collections.Counter:
        """Task id -> how many times a worker reported it finished (live)."""
        return self.log.finished

    def snapshot(self) -> list[dict]:
        """A copy of the events received so far."""
        return self.log.snapshot()

    def wait_for(self, predicate, timeout: float, progress=None) -> bool:
        """Block until ``predicate(pool)`` is true or ``timeout`` passes; return which.

        ``progress(pool)`` is called whenever new events arrived (keep it quick).
        """
        return self.log.wait_for(lambda: predicate(self), timeout,
                                 None if progress is None else lambda: progress(self))
