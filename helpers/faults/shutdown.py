"""SIGTERM to workers, as a deploy sends it (``fault shutdown``): die, or shut down cleanly.

Four runs side by side, two for each way a worker takes SIGTERM (``WorkerConfig.on_sigterm``:
``die``, Python's default and the tutorial's worker; ``graceful``, this project's default,
``helpers.worker.shutdown``):

* ``single-<way>``: one worker, one task of ``task_s``; SIGTERM a third of the way into it;
  a second worker is started once the first has exited, to take what is left;
* ``rolling-<way>``: ``workers`` workers and ``tasks`` tasks; one after the other, each
  worker gets SIGTERM, is waited for, and a replacement is started (a rolling restart).

Own keys: ``redelivered_sigterm_plain``, ``redelivered_graceful``, ``duplicates_plain``,
``duplicates_graceful``, ``started_twice_plain``, ``started_twice_graceful`` (tasks whose
work began twice: a side effect made before the kill happens twice) of the rolling runs;
``single_plain_exit``, ``single_graceful_exit`` (exit status), ``single_graceful_exit_after_s``
(SIGTERM to exit), ``single_plain_redelivered``, ``task_s``, ``restarts``.
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

from helpers.broker import resolve as broker_mod
from helpers.checks import is_number
from helpers.core import topology
from helpers.core.tasks import Task, equal
from helpers.errors import BadInputError
from helpers.experiment import skeleton as runner
from helpers.experiment.steps import Run, Step
from helpers.experiment.value import Experiment
from helpers.faults.steps import Leftovers, Tally, combine
from helpers.procs import in_parallel
from helpers.worker.config import WorkerConfig

DEFAULTS = {"workers": 3, "prefetch": 1, "tasks": 300, "duration": 0.05}
WAYS = {"plain": "die", "graceful": "graceful"}


@dataclass(frozen=True)
class ShutdownOptions:
    """How the shutdown runs go, checked once."""

    #: seconds of the single runs' one task (SIGTERM comes a third of the way into it)
    task_s: float = 1.0

    def __post_init__(self):
        if not (is_number(self.task_s) and self.task_s > 0):
            raise BadInputError(f"task_s must be above 0 seconds (got {self.task_s!r}).")


OPTIONS = ShutdownOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


class Restart(Step):
    """SIGTERM each of the run's first workers in turn, wait for it, start a replacement.

    ``after_s``: when the first SIGTERM goes, after the first task started; ``one``: a single
    worker, signalled a third of the way into its first task."""

    def __init__(self, after_s: float = 0.3):
        self.after_s, self.stops = after_s, []
        self._thread: threading.Thread | None = None

    def started(self, run: Run) -> None:
        self._thread = threading.Thread(target=self._loop, args=(run,), name="restart",
                                        daemon=True)
        self._thread.start()

    def _loop(self, run: Run) -> None:
        run.pool.wait_for(lambda pool: any(e["event"] == "started" for e in pool.events), 10)
        time.sleep(self.after_s)
        for name in list(run.names):
            handle = run.pool.kill(name, signal.SIGTERM)
            sent = time.time()
            code = handle.process.wait(30)
            self.stops.append({"worker": name, "exit": code, "exit_after_s":
                               round(time.time() - sent, 3)})
            run.pool.add(1)

    def finished(self, run: Run, done: bool) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)

    def holds(self, run: Run) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def summary(self, run: Run) -> dict:
        return {"stops": self.stops}


def started_twice(result: runner.RunResult) -> int:
    """Tasks whose work began more than once."""
    seen: dict = {}
    for e in result.events:
        if e["event"] == "started":
            seen[e["task"]] = seen.get(e["task"], 0) + 1
    return sum(n > 1 for n in seen.values())


def runs(workers: int, rolling: list[Task], options: ShutdownOptions = ShutdownOptions(), *,
         broker, progress=None) -> dict:
    """The four runs, side by side: the single ones with one task of ``options.task_s``, the
    rolling ones with the ``rolling`` tasks."""
    tally = Tally(progress)
    task_s = options.task_s

    def one(label: str) -> runner.RunResult:
        kind, way = label.split("-")
        config = WorkerConfig(on_sigterm=WAYS[way])
        work = [Task(f"{label}-long", task_s)] if kind == "single" else \
            [Task(f"{label}-{t.id}", t.duration) for t in rolling]
        exp = Experiment(1 if kind == "single" else workers, work, config,
                         queue=topology.unique_spec(f"sigterm-{label}"), label=label,
                         save=False)
        after = task_s / 3 if kind == "single" else 0.3
        return runner.run(exp, broker=broker, steps=[Restart(after), Leftovers()],
                          progress=tally.part(label))

    labels = [f"{kind}-{way}" for kind in ("single", "rolling") for way in WAYS]
    return in_parallel({label: (lambda x=label: one(x)) for label in labels})


def run(name: str, workers: int, prefetch: int, tasks: list,
        options: ShutdownOptions = ShutdownOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """The four runs as one result (prefetch is 1; ``tasks`` sizes the rolling runs: as many,
    each as long as the first)."""
    broker = broker or broker_mod.get()
    task_s = options.task_s
    results = runs(workers, equal(len(tasks), tasks[0].duration), options, broker=broker,
                   progress=progress)
    s = {label: result.summary for label, result in results.items()}
    own = {"redelivered_sigterm_plain": s["rolling-plain"]["redeliveries"],
           "redelivered_graceful": s["rolling-graceful"]["redeliveries"],
           "duplicates_plain": s["rolling-plain"]["duplicates"],
           "duplicates_graceful": s["rolling-graceful"]["duplicates"],
           "started_twice_plain": started_twice(results["rolling-plain"]),
           "started_twice_graceful": started_twice(results["rolling-graceful"]),
           "single_plain_exit": s["single-plain"]["stops"][0]["exit"],
           "single_graceful_exit": s["single-graceful"]["stops"][0]["exit"],
           "single_graceful_exit_after_s": s["single-graceful"]["stops"][0]["exit_after_s"],
           "single_plain_redelivered": s["single-plain"]["redeliveries"],
           "single_graceful_redelivered": s["single-graceful"]["redeliveries"],
           "stops": {label: x["stops"] for label, x in s.items()},
           "task_s": task_s, "rolling_tasks": len(tasks), "restarts": workers}
    durations = {t: d for r in results.values() for t, d in
                 ((e["task"], tasks[0].duration) for e in r.events if "task" in e)}
    durations.update({f"single-{way}-long": task_s for way in WAYS})
    return combine(name, results, durations, own)


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    return (f"SIGTERM during a {s['task_s']} s task: the plain worker exited "
            f"{s['single_plain_exit']} mid-task (redelivered {s['single_plain_redelivered']}), "
            f"the graceful one {s['single_graceful_exit']} after "
            f"{s['single_graceful_exit_after_s']} s (redelivered "
            f"{s['single_graceful_redelivered']}); rolling restart of {s['restarts']} workers "
            f"during {s['rolling_tasks']} tasks: plain {s['redelivered_sigterm_plain']} "
            f"redelivered, {s['started_twice_plain']} begun twice, {s['duplicates_plain']} "
            f"done twice; graceful {s['redelivered_graceful']} redelivered, "
            f"{s['started_twice_graceful']} begun twice, {s['duplicates_graceful']} done "
            f"twice; lost {s['tasks_lost']}")
