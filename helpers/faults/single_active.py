"""Related tasks in order (``fault single-active``): competing consumers against a single
active consumer, whose worker is then killed.

The tasks are steps of a few accounts (``a-001``, ``b-001``, ``c-001``, ``a-002``, ...),
published in order, of uneven lengths. Two runs side by side, the same tasks and workers:

* ``competing``: a plain queue; the workers compete, and a short step of an account can
  finish before a longer earlier step of the same account: out of order;
* ``single-active``: ``x-single-active-consumer``: the broker delivers to one consumer at a
  time, the others wait; once a share of the tasks is done (``kill_share``), the active
  worker is SIGKILLed, and the broker makes the next consumer active, which gets the killed
  worker's task first.

Own keys: ``out_of_order_competing``, ``out_of_order_single`` (steps finished after a later
step of the same account), ``takeover_s`` (the kill to the next worker's first delivery),
``active_workers_single`` (workers that did any task, in order), ``accounts``, ``steps``.
"""
from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass

from helpers.broker import resolve as broker_mod
from helpers.checks import is_number
from helpers.core import topology
from helpers.core.tasks import Task
from helpers.errors import BadInputError
from helpers.experiment import skeleton as runner
from helpers.experiment.steps import Run, Step
from helpers.experiment.value import Experiment
from helpers.faults.steps import Leftovers, Tally, combine
from helpers.procs import in_parallel

DEFAULTS = {"workers": 3, "prefetch": 1, "tasks": 20, "duration": 0.02}
ACCOUNTS = "abc"


def work(steps: int, task_s: float, prefix: str, seed: int = 8) -> list[Task]:
    """``steps`` steps per account, interleaved, each between 0.25 and 2 times ``task_s``."""
    rng = random.Random(seed)
    return [Task(f"{prefix}{a}-{i:03d}", round(task_s * rng.uniform(0.25, 2.0), 4))
            for i in range(1, steps + 1) for a in ACCOUNTS]


def out_of_order(events: list[dict]) -> int:
    """Steps whose first completion came after a later step of the same account had finished."""
    seen: set = set()
    latest: dict = {}
    count = 0
    for e in sorted((e for e in events if e["event"] == "finished"), key=lambda e: e["t"]):
        if e["task"] in seen:
            continue
        seen.add(e["task"])
        account, step = e["task"].rsplit("-", 2)[-2:]
        if int(step) < latest.get(account, 0):
            count += 1
        latest[account] = max(latest.get(account, 0), int(step))
    return count


class KillActive(Step):
    """Once ``share`` of the tasks are done, SIGKILL the worker that is doing them."""

    def __init__(self, share: float = 0.4):
        self.share, self.killed_t, self.victim = share, None, None
        self._stop = threading.Event()

    def started(self, run: Run) -> None:
        threading.Thread(target=self._loop, args=(run,), name="kill-active", daemon=True).start()

    def _loop(self, run: Run) -> None:
        while not self._stop.wait(0.01):
            if len(run.pool.finished) >= self.share * len(run.tasks):
                starts = [e for e in run.pool.events if e["event"] == "started"]
                self.victim = starts[-1]["worker"]
                run.pool.kill(self.victim, signal.SIGKILL)
                self.killed_t = time.time()
                return

    def finished(self, run: Run, done: bool) -> None:
        self._stop.set()

    def summary(self, run: Run) -> dict:
        later = [e["t"] for e in run.pool.snapshot() if e["event"] == "delivered"
                 and self.killed_t and e["t"] > self.killed_t and e["worker"] != self.victim]
        return {"takeover_s": round(min(later) - self.killed_t, 3) if later else None,
                "killed": self.victim}


@dataclass(frozen=True)
class SingleActiveOptions:
    """How the single-active run goes, checked once."""

    #: the share of its tasks done when the active worker is killed
    kill_share: float = 0.4

    def __post_init__(self):
        if not (is_number(self.kill_share) and 0 < self.kill_share < 1):
            raise BadInputError(f"kill_share must be between 0 and 1 "
                                f"(got {self.kill_share!r}).")


OPTIONS = SingleActiveOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def run(name: str, workers: int, prefetch: int, tasks: list,
        options: SingleActiveOptions = SingleActiveOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """Both runs as one result: as many steps per account as ``tasks`` (prefetch 1)."""
    broker = broker or broker_mod.get()
    tally = Tally(progress)
    steps, task_s = len(tasks), tasks[0].duration

    def one(label: str) -> runner.RunResult:
        single = label == "single-active"
        spec = topology.unique_spec(label, kind="classic", single_active=single)
        exp = Experiment(workers, work(steps, task_s, f"{label}-"), queue=spec,
                         label=label, save=False)
        plugged = [KillActive(options.kill_share), Leftovers()] if single else [Leftovers()]
        return runner.run(exp, broker=broker, progress=tally.part(label), steps=plugged)

    results = in_parallel({label: (lambda x=label: one(x))
                           for label in ("competing", "single-active")})
    single = results["single-active"]
    order: list = []
    for e in sorted(single.events, key=lambda e: e["t"]):
        if e["event"] == "started" and e["worker"] not in order:
            order.append(e["worker"])
    own = {"out_of_order_competing": out_of_order(results["competing"].events),
           "out_of_order_single": out_of_order(single.events),
           "takeover_s": single.summary["takeover_s"], "killed": single.summary["killed"],
           "active_workers_single": order, "accounts": len(ACCOUNTS), "steps": steps}
    durations = {t.id: t.duration for label in results for t in work(steps, task_s, f"{label}-")}
    return combine(name, results, durations, own)


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    return (f"{s['accounts']} accounts x {s['steps']} steps on {s['workers'] // 2} workers: "
            f"{s['out_of_order_competing']} steps finished out of order with competing "
            f"consumers, {s['out_of_order_single']} with a single active consumer; its worker "
            f"{s['killed']} killed, the next took over in {s['takeover_s']} s; "
            f"lost {s['tasks_lost']}, duplicates {s['duplicates']}")
