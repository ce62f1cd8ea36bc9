"""``FrameworkPool``: Celery or Dramatiq worker processes behind ``WorkerPool``'s interface.

The run skeleton starts, kills and stops them, reads their events and waits on them exactly
as it does the project's own workers (``helpers.pool.WorkerPool``, whose reading and
waiting this pool inherits); only spawning, killing and the messages differ::

    pool = FrameworkPool(url, spec, FrameworkConfig("celery", prefetch=1, acks_late=True))
    pool.start(4)                       # every worker consuming the queue
    producer.publish(url, spec, pool.messages(tasks), PublishOptions(declare_queue=False))

A framework's worker is several processes (Celery: a main process and its pool child;
Dramatiq: a supervisor and a worker process), so each worker gets a process group of its
own: a signal to the worker goes to all of them, and ``stop`` leaves none behind.
``kill_task`` SIGKILLs only the process that runs the worker's current task (the one an
out-of-memory killer would pick): for Celery the pool child, which its main process
survives and replaces.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from helpers.core import topology
from helpers.core.connection import connect
from helpers.errors import HelpersError
from helpers.frameworks import messages
from helpers.frameworks.config import FrameworkConfig
from helpers.pool.events import finished_unacked
from helpers.pool.pool import WorkerHandle, WorkerPool
from helpers.settings import CHECKOUT
from helpers.worker.config import WorkerConfig


class _Group:
    """A worker's process group, looking like the ``Popen`` of its leader to ``WorkerPool``."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.pid, self.stdin = process.pid, process.stdin
        self.stdout, self.stderr = process.stdout, process.stderr

    @property
    def returncode(self):
        return self.process.returncode

    def poll(self):
        return self.process.poll()

    def wait(self, timeout: float | None = None):
        return self.process.wait(timeout)

    def send_signal(self, sig: int) -> None:
        os.killpg(self.pid, sig)  # ProcessLookupError when the whole group is gone

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class FrameworkPool(WorkerPool):
    """K workers of one framework consuming ``spec``'s queue, with the project's events.

    Parameters
    ----------
    url: the broker's AMQP URL (one; a framework's worker takes its URL from the environment).
    spec: the queue (declared by the run first; each worker declares it with the same arguments).
    framework: which framework, and its settings (``FrameworkConfig``).
    """

    def __init__(self, url: str, spec: topology.QueueSpec, framework: FrameworkConfig, *,
                 on_event=None):
        super().__init__(url, spec, WorkerConfig(prefetch=framework.effective_prefetch),
                         on_event=on_event, fork_server=False)
        self.framework = framework

    def _spawn(self, **overrides) -> WorkerHandle:
        self._counter += 1
        name = overrides.pop("name", None) or f"w{self._counter}"
        env = {**os.environ, **self.framework.environment(self.spec, name),
               "AMQP_URL": self.url, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT),
                                                           os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(self.framework.command(self.spec, name), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=str(CHECKOUT), bufsize=0, start_new_session=True)
        return self._attach(WorkerHandle(name, _Group(proc), self.config), proc.stdout,
                            proc.stderr)

    def start(self, n: int, timeout: float = 90, per_worker: list[dict] | None = None,
              wait: bool = True, **overrides) -> list[WorkerHandle]:
        """Spawn ``n`` workers; with ``wait``, return once the queue counts them as consumers."""
        handles = super().start(n, timeout, per_worker, wait, **overrides)
        if wait:
            self._wait_consumers(len(self.alive()), timeout)
        return handles

    add = start

    def _wait_consumers(self, n: int, timeout: float) -> None:
        """A worker says ``ready`` as its consumer starts; the broker's count is the proof."""
        deadline = time.monotonic() + timeout
        with connect(self.url, name=f"consumers {self.spec.name}") as conn:
            channel = conn.channel()
            while topology.consumer_count(channel, self.spec.name) < n:
                if time.monotonic() > deadline:
                    raise HelpersError(f"{self.framework.name} workers were not all consuming "
                                       f"after {timeout:.0f} s: the machine may be too busy.")
                time.sleep(0.02)

    def task_pid(self, name: str) -> int | None:
        """The pid of the process running worker ``name``'s current task (None: idle)."""
        open_tasks: dict = {}
        for event in self.snapshot():
            if event.get("worker") != name:
                continue
            if event.get("event") == "started":
                open_tasks[event.get("delivery")] = event.get("pid")
            elif event.get("event") in ("finished", "failed"):
                open_tasks.pop(event.get("delivery"), None)
        return next(reversed(open_tasks.values()), None) if open_tasks else None

    def kill_task(self, name: str) -> WorkerHandle:
        """SIGKILL the process running worker ``name``'s task (its group when it is idle)."""
        handle, pid = self.workers[name], self.task_pid(name)
        try:
            if pid is None:
                handle.process.send_signal(signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already dead is fine
        self.kills.append({"worker": name, "t": time.time(), "signal": int(signal.SIGKILL),
                           "pid": pid or handle.pid})
        return handle

    def stop(self, timeout: float = 3.0, ack_grace_s: float = 1.0) -> None:
        """Let the acks of finished tasks leave (``ack_grace_s`` at most), SIGTERM every worker
        (both frameworks shut down warm on it), then ``WorkerPool.stop``; SIGKILL whatever is
        left of each group."""
        alive = {h.name for h in self.alive()}
        self.wait_for(lambda pool: finished_unacked(pool.events, alive) == 0, ack_grace_s)
        for handle in self.workers.values():
            try:
                handle.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        super().stop(timeout, ack_grace_s=0)
        for handle in self.workers.values():
            try:
                handle.process.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass

    def messages(self, tasks) -> list[tuple[str, bytes, dict | None]]:
        """``tasks`` as this framework's own task messages, built by the framework."""
        if self.framework.name == "celery":
            return messages.celery(tasks, "helpers.sleep")
        return messages.dramatiq(tasks, self.spec.name, "sleep")
