"""Worker kills: a random consuming worker SIGKILLed every few seconds, and replaced.

The ``WorkerKills`` step of the run skeleton, behind ``python -m helpers run --kill-every S``
(``Experiment(kill_every=S)``). With manual acks after the work, nothing is lost: the broker
requeues the task a killed worker held (at most ``prefetch`` of them).
"""
from __future__ import annotations

import random
import threading
import time

from helpers.errors import HelpersError
from helpers.pool.pool import WorkerPool
from helpers.experiment.steps import Run, Step


class WorkerKills(Step):
    """Every ``every`` seconds, SIGKILL a random *consuming* worker and start a replacement.

    The pace is kept on a fixed schedule: replacements are not waited for (a worker takes
    longer than a tick to start on a small machine), and one still starting is never the
    victim, since killing it before it holds a task would test nothing.

    The run's waiting budget grows by what the kills cost, as measured (``grace_s``): the
    seconds each replacement took to start, shared over the pool. On a loaded machine a
    start takes longer, so the budget follows the load instead of a fixed guess.

    Summary keys: ``kill_rounds`` (rounds of the schedule that came), ``kill_rounds_skipped``
    (of those, rounds in which every worker was still starting: on a loaded machine, most of
    them) and ``kill_round_s`` (the longest a round took: the next cannot start before).
    """

    def __init__(self, every: float, seed: int = 0):
        self.every, self.rng = every, random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: (spawned at, handle) of every replacement, wall-clock like ``ready_t``
        self._replacements: list = []
        self._workers = 1
        self.rounds = self.skipped = 0
        self.longest_round_s = 0.0

    def started(self, run: Run) -> None:
        self._workers = max(1, len(run.names))
        self._thread = threading.Thread(target=self._loop, args=(run.pool,), name="killer",
                                        daemon=True)
        self._thread.start()

    def finished(self, run: Run, done: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def grace_s(self, run: Run) -> float:
        """Worker-seconds the replacements spent starting (so far), over the pool's size."""
        now = time.time()
        lost = sum((h.ready_t or now) - t for t, h in list(self._replacements))
        return lost / self._workers

    def _loop(self, pool: WorkerPool) -> None:
        next_t = time.monotonic() + self.every
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            next_t += self.every
            self.rounds += 1
            began = time.monotonic()
            consuming = [h for h in pool.alive() if h.ready_t is not None]
            if not consuming:
                self.skipped += 1
                continue  # every worker is still starting: nothing worth killing this round
            victim = pool.kill(self.rng.choice(consuming))
            try:
                spawned_t = time.time()
                (handle,) = pool.add(1, wait=False, speed=victim.config.speed)
                self._replacements.append((spawned_t, handle))
            except HelpersError:
                pass  # the next round tries again
            self.longest_round_s = max(self.longest_round_s, time.monotonic() - began)

    def summary(self, run: Run) -> dict:
        return {"kill_rounds": self.rounds, "kill_rounds_skipped": self.skipped,
                "kill_round_s": round(self.longest_round_s, 3)}
