"""The peers' worker processes: tutorial-style pika workers and Celery workers.

Both kinds print ``done <task id> <start t> <end t>`` per task on stdout (and the tutorial
workers ``ready <t>`` once consuming), so the harness measures their makespan exactly as
``helpers.measure.timing`` measures the project's: first publish to the last ``end t``.

``PeerWorkers`` owns the processes: a context manager that ends every one of them by its
pid (stdin closed, then SIGTERM, then SIGKILL), also from ``atexit``.
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref
from pathlib import Path

from helpers import frameworks
from helpers.broker.model import Broker
from helpers.frameworks import messages
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.measure import timing
from helpers.measure.timing import greedy_floor  # noqa: F401 (bench.py uses peers.greedy_floor)
from helpers.core import topology
from helpers.core.connection import connect
from helpers.settings import CHECKOUT
from helpers.core.tasks import Task

HERE = Path(__file__).resolve().parent
_LIVE: "weakref.WeakSet[PeerWorkers]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for workers in list(_LIVE):
        workers.stop()


def _die_with_parent() -> None:  # runs in the child before exec (Linux): SIGTERM if we die
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def celery_available() -> bool:
    """True when Celery is installed (``pip install -e '.[frameworks]'``)."""
    return frameworks.available("celery")


def tutorial_command(url: str, spec: topology.QueueSpec, name: str) -> list[str]:
    """The command line of one tutorial-style worker (the URL goes in ``AMQP_URL``)."""
    return [sys.executable, str(HERE / "tutorial_worker.py"), spec.name,
            json.dumps(spec.arguments())]


def celery_command(url: str, spec: topology.QueueSpec, name: str) -> list[str]:
    """The command line of one Celery worker with one child process (acks_late, prefetch 1)."""
    return [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "--quiet",
            "worker", "--pool", "prefork", "--concurrency", "1", "-Q", spec.name,
            "-n", f"{name}@bench", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "--loglevel", "WARNING"]


def celery_messages(tasks: list[Task]) -> list[tuple[str, bytes, dict]]:
    """``tasks`` as Celery task messages for ``bench.sleep`` (protocol 2, built by Celery)."""
    return messages.celery(tasks, "bench.sleep")


class PeerWorkers:
    """Spawn peer worker processes, read their ``ready``/``done`` lines, end them by pid."""

    def __init__(self, commands: list[list[str]], env: dict | None = None,
                 die_with_parent: bool = False):
        self.commands = commands
        # Celery workers do not watch their stdin: the kernel sends them SIGTERM if we die.
        # (Not for the tutorial workers: a pre-exec hook rules out vfork and slows spawning.)
        self.die_with_parent = die_with_parent
        self.env = {**os.environ, **(env or {})}
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT),
                                                               os.environ.get("PYTHONPATH")]))
        self.processes: list[subprocess.Popen] = []
        self.ready_t: dict[int, float] = {}
        #: (task id, start t, end t, index of the worker) per completed task.
        self.done: list[tuple[str, float, float, int]] = []
        self.chatter: list[str] = []
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.t_spawn: float | None = None
        _LIVE.add(self)

    def start(self) -> "PeerWorkers":
        self.t_spawn = time.time()
        for i, cmd in enumerate(self.commands):
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=self.env, cwd=str(CHECKOUT),
                                    preexec_fn=_die_with_parent if self.die_with_parent
                                    else None)
            self.processes.append(proc)
            thread = threading.Thread(target=self._read, args=(i, proc.stdout), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _read(self, index: int, stream) -> None:
        for raw in iter(stream.readline, b""):
            parts = raw.split()
            with self._cond:
                if len(parts) == 4 and parts[0] == b"done":
                    self.done.append((parts[1].decode(), float(parts[2]), float(parts[3]),
                                      index))
                elif len(parts) == 2 and parts[0] == b"ready":
                    self.ready_t[index] = float(parts[1])
                else:
                    self.chatter = (self.chatter + [raw.decode(errors="replace").rstrip()])[-20:]
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                dead = [p for p in self.processes if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"a peer worker exited ({what}): "
                                       + " | ".join(self.chatter[-3:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}: "
                                       + " | ".join(self.chatter[-3:]))
                self._cond.wait(min(left, 0.05))

    def wait_ready_lines(self, timeout: float = 60) -> float:
        """Wait for every ``ready`` line; return spawn -> last worker consuming (s)."""
        self._wait(lambda: len(self.ready_t) == len(self.processes), timeout, "ready lines")
        return max(self.ready_t.values()) - self.t_spawn

    def wait_consumers(self, url: str, queue: str, timeout: float = 90) -> float:
        """Poll the queue's consumer count until every worker consumes; return seconds."""
        deadline = time.monotonic() + timeout
        with connect(url, name=f"bench consumers {queue}") as conn:
            channel = conn.channel()
            while True:
                count = channel.queue_declare(queue, passive=True).method.consumer_count
                if count >= len(self.processes):
                    return time.time() - self.t_spawn
                if any(p.poll() is not None for p in self.processes):
                    raise RuntimeError("a peer worker exited before consuming: "
                                       + " | ".join(self.chatter[-3:]))
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {count} of {len(self.processes)} peer workers "
                                       f"were consuming after {timeout:.0f} s")
                time.sleep(0.01)

    def wait_done(self, ids, timeout: float) -> bool:
        """Wait until every task id in ``ids`` has a ``done`` line; False on time-out."""
        want = set(ids)
        seen: set[str] = set()
        counted = 0

        def all_done() -> bool:
            nonlocal counted
            seen.update(d[0] for d in self.done[counted:])
            counted = len(self.done)
            return want <= seen
        try:
            self._wait(all_done, timeout, "the tasks")
        except RuntimeError:
            return False
        return True

    def stop(self, timeout: float = 3.0) -> None:
        """End every process this object started: close stdin, SIGTERM, SIGKILL; reap."""
        for proc in self.processes:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + timeout
            for proc in self.processes:
                if proc.poll() is None:
                    try:
                        proc.send_signal(sig)
                    except ProcessLookupError:
                        pass
            for proc in self.processes:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for proc in self.processes:
            proc.wait()
            proc.stdout.close()
        for thread in self._threads:
            thread.join(timeout=1)
        _LIVE.discard(self)

    def __enter__(self) -> "PeerWorkers":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_peer(peer: str, found: Broker, tasks: list[Task], workers: int,
             timeout: float | None = None, kind: str = "classic") -> dict:
    """Run ``tasks`` on ``workers`` processes of ``peer`` (``tutorial`` or ``celery``).

    The same steps as ``helpers.experiment.skeleton.run``: a fresh durable queue, every worker consuming
    before the first publish, the same pipelined publisher with persistent messages, then
    makespan = first publish to the last completion the workers report.
    """
    spec = topology.QueueSpec(f"bench-{peer}-{uuid.uuid4().hex[:8]}", kind=kind)
    with connect(found.url, name=f"bench {peer} setup") as conn:
        topology.declare(conn.channel(), spec)
    durations = {t.id: t.duration for t in tasks}
    names = [f"{peer[0]}{i + 1}" for i in range(workers)]
    if peer == "tutorial":
        commands = [tutorial_command(found.url, spec, n) for n in names]
        messages = tasks
        env = {"AMQP_URL": found.url}
    elif peer == "celery":
        commands = [celery_command(found.url, spec, n) for n in names]
        env = {"BENCH_AMQP_URL": found.url, "BENCH_QUEUE": spec.name,
               "BENCH_QUEUE_ARGS": json.dumps(spec.arguments())}
        messages = celery_messages(tasks)
    else:
        raise ValueError(f"unknown peer {peer!r}")
    try:
        with PeerWorkers(commands, env, die_with_parent=peer == "celery") as procs:
            if peer == "tutorial":
                spawn_s = procs.wait_ready_lines()
            else:
                spawn_s = procs.wait_consumers(found.url, spec.name)
            procs.wait_consumers(found.url, spec.name, timeout=10)  # all three: consuming
            published = producer.publish(found.url, spec, messages, PublishOptions(
                declare_queue=False, name=f"producer {spec.name}"))
            budget = timeout or (3 * timing.ideal_makespan(durations.values(), workers) + 30)
            complete = procs.wait_done(published.confirmed, budget)
            done = list(procs.done)
    finally:
        with connect(found.url, name=f"bench {peer} cleanup") as conn:
            topology.delete(conn.channel(), spec)
    ends = [d[2] for d in done if d[0] in durations]
    makespan = max(ends) - published.t_first if ends else float("nan")
    ideal = timing.ideal_makespan(durations.values(), workers)
    return {"peer": peer, "workers": workers, "tasks": len(tasks),
            "tasks_completed": len({d[0] for d in done} & set(durations)),
            "complete": complete, "makespan_s": makespan, "ideal_makespan_s": ideal,
            "makespan_over_ideal": makespan / ideal if ideal > 0 else float("nan"),
            "spawn_s": spawn_s,
            **gaps([(d[3], d[1], d[2]) for d in done if d[0] in durations], published.t_first)}


def gaps(rows, t_first: float) -> dict:
    """Where dispatch time goes: the median idle gap between one task's end and the same
    worker's next start, the median delay from the first publish to a worker's first
    start, and the tail: the last worker's last end after the mean of the workers' last
    ends (greedy dispatch of whole tasks leaves up to one task's length; all in ms).
    ``rows`` are ``(worker, start t, end t)``."""
    by_worker: dict = {}
    for worker, start, end in rows:
        by_worker.setdefault(worker, []).append((start, end))
    between, first = [], []
    for spans in by_worker.values():
        spans.sort()
        first.append(spans[0][0] - t_first)
        between += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    median = lambda xs: sorted(xs)[len(xs) // 2] * 1000 if xs else float("nan")  # noqa: E731
    last = [max(end for _start, end in spans) for spans in by_worker.values()]
    tail = (max(last) - sum(last) / len(last)) * 1000 if last else float("nan")
    return {"gap_ms": median(between), "first_start_ms": median(first), "tail_ms": tail}
