"""Tasks done twice, and idempotency (``python -m helpers fault duplicate``).

Each worker records every task's side effect in one SQLite file, twice: plainly, and
through the deduplication store of ``helpers.worker.dedup`` (the task id and the effect committed
in one transaction). Every worker dies once, right after its
``crash_after``-th task is done and recorded but before the ack leaves (``--crash-at
before-ack``); a supervisor starts replacements that do not crash. The broker delivers each
of those tasks again (at-least-once), so it is done twice: the plain record shows it twice,
the guarded one once.

Own keys: ``duplicates_delivered`` (deliveries of a task that had already been done),
``side_effects_twice`` (tasks whose plain effect happened more than once),
``side_effects_twice_dedup`` (the same through the store: 0), ``effects_plain``,
``effects_dedup`` (rows), ``crashes``, ``crash_after``, ``task_s``, ``store`` (the SQLite
file; None: a temporary one).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.broker import resolve as broker_mod
from helpers.checks import is_whole
from helpers.errors import BadInputError
from helpers.worker import dedup
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.core.tasks import Task
from helpers.faults.steps import Leftovers, Supervise

#: 3 workers, 30 tasks of 0.1 s; each worker dies once, after its 4th task
DEFAULTS = {"workers": 3, "prefetch": 1, "tasks": 30, "duration": 0.1}


def duplicates_delivered(events: list[dict]) -> int:
    """Deliveries of a task that a worker had already finished before that delivery."""
    done: set = set()
    count = 0
    for event in sorted(events, key=lambda e: e["t"]):
        if event["event"] == "delivered" and event.get("task") in done:
            count += 1
        elif event["event"] == "finished":
            done.add(event.get("task"))
    return count


@dataclass(frozen=True)
class DuplicateOptions:
    """How the duplicate run goes, checked once."""

    #: every worker dies once, after this many tasks done (before that task's ack)
    crash_after: int = 4
    #: the SQLite file of side effects (None: a temporary one, gone after the run)
    store: str | Path | None = None
    #: write the run's events and summary under ``data/runs``
    save: bool = False

    def __post_init__(self):
        if not is_whole(self.crash_after) or self.crash_after < 1:
            raise BadInputError(f"crash_after must be a whole number of at least 1 "
                                f"(got {self.crash_after!r}).")


OPTIONS = DuplicateOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def run(name: str, workers: int, prefetch: int, tasks: list[Task],
        options: DuplicateOptions = DuplicateOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """Run ``tasks`` on ``workers`` workers that each die once between a task's side
    effect and its ack (replaced by workers that do not); count duplicates and effects.
    ``progress(done, total)`` is called as tasks complete."""
    broker = broker or broker_mod.get()
    crash_after, store = options.crash_after, options.store
    scratch = None if store else Path(tempfile.mkdtemp(prefix="dedup-"))
    store = Path(store or scratch / "effects.sqlite")
    dedup.EffectLog(store).close()  # the tables exist before any worker writes
    config = WorkerConfig(prefetch=prefetch, effects=str(store), crash_after=crash_after,
                          crash_at="before-ack")
    exp = Experiment(workers, tasks, config, label="duplicate", save=options.save)
    result = runner.run(exp, broker=broker, steps=[Supervise(crash_after=0), Leftovers()],
                        progress=progress)
    counts = dedup.effect_counts(store)
    if scratch is not None:  # one file per run, gone with it unless the caller named one
        shutil.rmtree(scratch, ignore_errors=True)
    result.summary.update(
        fault=name, store=None if scratch else str(store), crash_after=crash_after,
        task_s=max(t.duration for t in tasks),
        crashes=sum(e["event"] == "crashed" for e in result.events),
        duplicates_delivered=duplicates_delivered(result.events),
        side_effects_twice=counts["effects_plain"]["tasks_more_than_once"],
        side_effects_twice_dedup=counts["effects"]["tasks_more_than_once"],
        effects_plain=counts["effects_plain"]["rows"], effects_dedup=counts["effects"]["rows"])
    return result


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    return (f"{s['crashes']} workers died between a task's side effect and its ack: "
            f"{s['duplicates_delivered']} tasks delivered again after being done "
            f"(duplicates {s['duplicates']}); plain side effect twice for "
            f"{s['side_effects_twice']} tasks ({s['effects_plain']} rows for "
            f"{s['tasks_completed']} tasks), through the dedup store twice for "
            f"{s['side_effects_twice_dedup']} ({s['effects_dedup']} rows); lost {s['tasks_lost']}")
