"""The broker runs out of room: a disk alarm while tasks are published (``fault alarm``).

Tasks are published a few at a time, faster than the workers take them, so a backlog
builds up. ``after_s`` into publishing the private node's disk alarm is raised (its
free-disk limit set above the free space, ``node_control.disk_alarm``) and cleared
``hold_s`` later. While it is on, the broker blocks every connection that publishes
(``connection.blocked``): the producer says so in one sentence and waits, instead of
hanging silently; the consumers, on their own connections, keep draining the backlog. When
the alarm clears, publishing resumes and every task is done: nothing is lost.

Own keys: ``blocked_s`` (the producer was blocked this long), ``resumed`` (tasks were
confirmed after the alarm cleared), ``alarm_raised_at_s``, ``alarm_cleared_at_s``,
``blocked_at_s``, ``unblocked_at_s`` (seconds since the first publish),
``completed_while_blocked``, ``confirmed_after_alarm``, ``producer_said``, ``hold_s``.
"""
from __future__ import annotations

import threading
import time

from .. import broker as broker_mod
from .. import node_control, runner
from ..errors import HelpersError
from ..tasks import Task
from .steps import Leftovers

NAN = float("nan")
#: 2 workers, 60 tasks of 0.2 s, published faster than they are done; the alarm 0.5 s in
DEFAULTS = {"workers": 2, "prefetch": 1, "tasks": 60, "duration": 0.2, "after": 0.5}


class DiskAlarm(runner.Step):
    """Raise the node's disk alarm ``after_s`` after the first publish, for ``hold_s``."""

    def __init__(self, after_s: float, hold_s: float):
        self.after_s, self.hold_s = after_s, hold_s
        self.extra_s = hold_s + 60  # rabbitmqctl boots an Erlang VM first
        self.alarm: dict = {}
        self.said: list[str] = []
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def on_blocked(self, sentence: str | None) -> None:
        """What the producer says when it is blocked (the paced publisher calls this)."""
        if sentence:
            self.said.append(sentence)

    def check(self, broker: broker_mod.Broker) -> None:
        node_control.require(broker, "The disk-alarm lesson")

    def started(self, run: runner.Run) -> None:
        def raise_alarm() -> None:
            run.publisher.started.wait()
            time.sleep(self.after_s)
            try:
                self.alarm = node_control.disk_alarm(run.broker, self.hold_s)
            except HelpersError as exc:
                self.error = str(exc)

        self._thread = threading.Thread(target=raise_alarm, name="disk-alarm", daemon=True)
        self._thread.start()

    def finished(self, run: runner.Run, done: bool) -> None:
        if self._thread is not None:
            self._thread.join()
        if self.error:
            raise HelpersError(self.error)

    def summary(self, run: runner.Run) -> dict:
        published, t0 = run.published, run.published.t_first
        blocked = published.blocked
        first = blocked[0]["t"] if blocked else NAN
        last = blocked[-1]["until"] if blocked and blocked[-1]["until"] else NAN
        events = run.pool.snapshot()
        cleared = self.alarm.get("cleared_t", NAN)
        confirmed_t = run.publisher.confirmed_t.values()
        return {
            "hold_s": self.hold_s, "blocked_s": round(published.blocked_s, 3),
            "alarm_raised_at_s": round(self.alarm.get("raised_t", NAN) - t0, 3),
            "alarm_cleared_at_s": round(cleared - t0, 3),
            "blocked_at_s": round(first - t0, 3), "unblocked_at_s": round(last - t0, 3),
            "completed_while_blocked": sum(e["event"] == "finished" and first <= e["t"] <= last
                                           for e in events),
            "confirmed_after_alarm": sum(t > cleared for t in confirmed_t),
            "resumed": any(t > cleared for t in confirmed_t),
            "producer_said": self.said[0] if self.said else None}


def run(name: str, workers: int, prefetch: int, tasks: list[Task], *,
        fault_after_s: float = 0.5, hold_s: float = 2.5, batch: int = 3, every_s: float = 0.2,
        broker=None, save: bool = False, **_ignored) -> runner.RunResult:
    """Publish ``tasks`` ``batch`` at a time every ``every_s`` to ``workers`` workers; a disk
    alarm ``fault_after_s`` after the first publish, for ``hold_s``."""
    alarm = DiskAlarm(fault_after_s, hold_s)
    pace = {"batch": batch, "every_s": every_s, "fixed_rate": True,
            "on_blocked": alarm.on_blocked}
    result = runner.execute(workers, prefetch, tasks, steps=[alarm, Leftovers()], pace=pace,
                            broker=broker, label="alarm", save=save)
    result.summary["fault"] = name
    return result


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    return (f"disk alarm from {s['alarm_raised_at_s']:.1f} s to {s['alarm_cleared_at_s']:.1f} s: "
            f"producer blocked {s['blocked_s']:.1f} s (from {s['blocked_at_s']:.1f} s), "
            f"{s['completed_while_blocked']} tasks completed meanwhile; resumed {s['resumed']} "
            f"({s['confirmed_after_alarm']} confirmed after); confirmed {s['tasks_confirmed']}, "
            f"completed {s['tasks_completed']}, lost {s['tasks_lost']}")
