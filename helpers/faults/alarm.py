"""The broker runs out of room: a disk alarm while tasks are published (``fault alarm``).

Tasks are published a few at a time, faster than the workers take them, so a backlog
builds up. Once ``backlog`` tasks are confirmed the private node's disk alarm is raised (its
free-disk limit set above the free space, ``node_control.DiskAlarm``), and cleared
``hold_s`` later; publishing goes on into the alarm. While it is on, the broker blocks
every connection that publishes (``connection.blocked``): the producer says so in one
sentence and waits, instead of hanging silently; the consumers, on their own connections,
keep draining the backlog. When the alarm clears, publishing resumes and every task is
done: nothing is lost.

Own keys: ``blocked_s`` (the producer was blocked this long), ``resumed`` (tasks were
confirmed after the alarm cleared), ``alarm_raised_at_s``, ``alarm_cleared_at_s``,
``blocked_at_s``, ``unblocked_at_s`` (seconds since the first publish),
``completed_while_blocked``, ``confirmed_after_alarm``, ``producer_said``, ``hold_s``,
``confirmed_at_s`` (when each task's publish was confirmed), ``task_s``.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from helpers.broker.model import Broker
from helpers.broker import node_control
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.experiment.steps import Run, Step
from helpers.checks import is_number, is_whole
from helpers.errors import BadInputError, HelpersError
from helpers.core.tasks import Task
from helpers.faults.steps import Leftovers
from helpers.publish.options import PublishOptions

NAN = float("nan")
#: 2 workers, 60 tasks of 0.25 s, published faster than they are done; the alarm once 36
#: are confirmed (a backlog of several seconds' work for the workers to drain meanwhile)
DEFAULTS = {"workers": 2, "prefetch": 1, "tasks": 60, "duration": 0.25}


class DiskAlarm(Step):
    """Raise the node's disk alarm once ``backlog`` tasks are confirmed; clear it ``hold_s``
    after. Publishing waits for the alarm (``gate``), so the next batch meets it."""

    def __init__(self, backlog: int, batch: int, hold_s: float):
        self.at_batch, self.hold_s = -(-backlog // batch), hold_s  # the first batch after
        self.extra_s = hold_s + 60  # each rabbitmqctl boots an Erlang VM first
        self.alarm: dict = {}
        self.said: list[str] = []
        self.error: str | None = None
        self.ready, self.raised = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def on_blocked(self, sentence: str | None) -> None:
        """What the producer says when it is blocked (the paced publisher calls this)."""
        if sentence:
            self.said.append(sentence)

    def gate(self, n: int) -> None:
        """Before batch ``n``: before the first, wait until the alarm can be raised at once
        (rabbitmqctl takes seconds to start); at the alarm's batch, until it is on."""
        if n == 0:
            try:
                self.control.wait_ready()
            except HelpersError as exc:
                self.error = str(exc)
        if n == self.at_batch:
            self.ready.set()
            self.raised.wait(self.extra_s)

    def check(self, broker: Broker) -> None:
        node_control.require(broker, "The disk-alarm lesson")
        # Started now, so the program waits on the node by the time the backlog is there.
        self.control = node_control.DiskAlarm(broker).start()

    def started(self, run: Run) -> None:
        control = self.control

        def alarm() -> None:
            self.ready.wait()
            try:
                control.raise_now()
                self.raised.set()
                time.sleep(self.hold_s)
            except HelpersError as exc:
                self.error = str(exc)
            finally:
                self.raised.set()
                try:
                    control.clear_now()
                except HelpersError as exc:
                    self.error = self.error or str(exc)
                self.alarm = control.alarm

        self._thread = threading.Thread(target=alarm, name="disk-alarm", daemon=True)
        self._thread.start()

    def finished(self, run: Run, done: bool) -> None:
        self.ready.set()  # a run that ended early: let the alarm thread go
        if self._thread is not None:
            self._thread.join()
        if self.error:
            raise HelpersError(self.error)

    def summary(self, run: Run) -> dict:
        published, t0 = run.published, run.published.t_first
        blocked = published.blocked
        first = blocked[0]["t"] if blocked else NAN
        last = blocked[-1]["until"] if blocked and blocked[-1]["until"] else NAN
        events = run.pool.snapshot()
        raised, cleared = self.alarm.get("raised_t", NAN), self.alarm.get("cleared_t", NAN)
        confirmed_t = run.publisher.confirmed_t.values()
        return {
            "hold_s": self.hold_s, "blocked_s": round(published.blocked_s, 3),
            "alarm_raised_at_s": round(raised - t0, 3),
            "alarm_cleared_at_s": round(cleared - t0, 3),
            "blocked_at_s": round(first - t0, 3), "unblocked_at_s": round(last - t0, 3),
            "completed_while_blocked": sum(e["event"] == "finished" and first <= e["t"] <= last
                                           for e in events),
            "confirmed_after_alarm": sum(t > cleared for t in confirmed_t),
            "resumed": any(t > cleared for t in confirmed_t),
            "confirmed_at_s": sorted(round(t - t0, 3) for t in confirmed_t),
            "producer_said": self.said[0] if self.said else None}


@dataclass(frozen=True)
class AlarmOptions:
    """How the disk-alarm run goes, checked once."""

    #: confirmed tasks before the alarm is raised (None: 60 % of the tasks)
    backlog: int | None = None
    #: seconds the alarm stays on
    hold_s: float = 2.5
    #: tasks per publish call, and the pause between calls
    batch: int = 3
    pace_s: float = 0.05
    #: write the run's events and summary under ``data/runs``
    save: bool = False

    def __post_init__(self):
        if self.backlog is not None and (not is_whole(self.backlog) or self.backlog < 0):
            raise BadInputError(f"backlog must be a whole number, 0 or more "
                                f"(got {self.backlog!r}).")
        if not (is_number(self.hold_s) and self.hold_s >= 0):
            raise BadInputError(f"hold_s must be 0 or more seconds (got {self.hold_s!r}).")
        PublishOptions(batch=self.batch, pace_s=self.pace_s)  # checks batch and pace_s


OPTIONS = AlarmOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def run(name: str, workers: int, prefetch: int, tasks: list[Task],
        options: AlarmOptions = AlarmOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """Publish ``tasks`` ``options.batch`` at a time to ``workers`` workers; once
    ``options.backlog`` of them are confirmed, a disk alarm for ``options.hold_s``
    (publishing goes on into it). ``progress(done, total)`` is called as tasks complete."""
    o = options
    backlog = int(0.6 * len(tasks)) if o.backlog is None else o.backlog
    alarm = DiskAlarm(backlog, o.batch, o.hold_s)
    publish = PublishOptions(batch=o.batch, pace_s=o.pace_s, on_blocked=alarm.on_blocked,
                             gate=alarm.gate)
    exp = Experiment(workers, tasks, WorkerConfig(prefetch=prefetch), publish=publish,
                     label="alarm", save=o.save)
    result = runner.run(exp, steps=[alarm, Leftovers()], broker=broker, progress=progress)
    result.summary.update(fault=name, task_s=max(t.duration for t in tasks))
    return result


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    return (f"disk alarm from {s['alarm_raised_at_s']:.1f} s to {s['alarm_cleared_at_s']:.1f} s: "
            f"producer blocked {s['blocked_s']:.1f} s (from {s['blocked_at_s']:.1f} s), "
            f"{s['completed_while_blocked']} tasks completed meanwhile; resumed {s['resumed']} "
            f"({s['confirmed_after_alarm']} confirmed after); confirmed {s['tasks_confirmed']}, "
            f"completed {s['tasks_completed']}, lost {s['tasks_lost']}")
