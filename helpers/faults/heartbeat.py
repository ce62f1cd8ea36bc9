"""A task longer than three heartbeat intervals: the tutorial's blocking worker loses its
connection, the heartbeat-safe worker does not (``python -m helpers fault heartbeat``).

Two runs side by side, one task each, on two queues: a worker in ``blocking`` mode does the
work inside pika's delivery callback, as the tutorial's ``worker.py`` does, so pika's I/O
loop sends no heartbeat until the task ends; a worker in ``thread`` mode does it in a work
thread and acks through ``connection.add_callback_threadsafe``. Beside them, a silent
connection measures after how long the broker gives up on a client it does not hear from.
The blocking run is cut at ``window_s`` at the earliest, and not before its worker has been
cut off ``CUTS`` times and given the task again (on a loaded machine reconnecting takes
longer, and a fixed window would end the run between two cuts); whatever it has not
finished is still in its queue.

Own keys: ``heartbeat_s``, ``task_s``, ``broker_cut_s`` (a silent connection was closed by
the broker after this long), ``default_heartbeat_s`` (what a connection that asks for no
particular heartbeat gets: the broker's proposal, which pika accepts), and for each mode (``_blocking``, ``_thread``): ``deliveries``,
``disconnects``, ``times_done`` (the work done), ``acked``, ``still_queued`` (at the end);
``window_s``, and ``blocking_run_s`` (when the blocking run ended: ``window_s`` or later;
None when its budget ended it before the cuts).
"""
from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass

from helpers.broker import resolve as broker_mod
from helpers.broker.model import Broker
from helpers.checks import is_number, is_whole
from helpers.errors import BadInputError
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.core.tasks import Task
from helpers.faults.steps import Leftovers, Tally, Window, combine
from helpers.procs import in_parallel

MODES = ("blocking", "thread")
#: the blocking run goes on until its worker has been cut off this often (within its budget)
CUTS = 2
#: one task of 4 s per run (the CLI's --duration is the task's length)
DEFAULTS = {"workers": 1, "prefetch": 1, "tasks": 1, "duration": 4.0}


def silent_connection_cut(url: str, heartbeat_s: int, limit_s: float = 30.0) -> float | None:
    """Open a connection asking for ``heartbeat_s``, then say nothing: seconds until the
    broker closes it (None if it did not within ``limit_s``, or pika's socket is not found)."""
    from helpers.core.connection import connect

    conn = connect(url, name="silent client", heartbeat=heartbeat_s)
    sock = getattr(getattr(conn._impl, "_transport", None), "_sock", None)  # pika's own socket
    if not isinstance(sock, socket.socket):
        conn.close()
        return None
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < limit_s:
            if select.select([sock], [], [], 0.05)[0] and not sock.recv(65536):
                return round(time.monotonic() - t0, 2)  # read by us, not pika: no heartbeat sent
    except OSError:  # reset by the broker
        return round(time.monotonic() - t0, 2)
    finally:
        try:
            sock.close()
        except OSError:
            pass
    return None


def agreed_heartbeat(url: str) -> int | None:
    """The heartbeat (s) a pika connection that asks for none agrees with the broker: the
    broker proposes its own setting (``heartbeat``, 60 s unless configured) and pika takes it."""
    from helpers.core.connection import connect

    conn = connect(url, name="heartbeat default probe")
    try:
        return conn._impl.params.heartbeat  # set from the broker's connection.tune
    finally:
        conn.close()


class CutOff(Window):
    """Keep the blocking run going for ``seconds`` after the first publish, and then until
    its worker has lost its connection ``cuts`` times and had the task delivered again
    (the run's budget still ends it, cut off or not)."""

    def __init__(self, seconds: float, cuts: int = CUTS):
        super().__init__(seconds, hold=True)
        self.cuts, self.ended_s = cuts, None

    def ends(self, run) -> bool:
        if not super().ends(run):
            return False
        events = [e["event"] for e in run.pool.snapshot()]
        cut = events.count("disconnected")
        if cut >= self.cuts and events.count("delivered") > cut:
            self.ended_s = self.ended_s or round(time.time() - run.published.t_first, 2)
            return True
        return False

    def summary(self, run) -> dict:
        return {"run_s": self.ended_s}


def runs(heartbeat_s: int = 1, task_s: float = 4.0, window_s: float = 8.5, *,
         broker: Broker | None = None, progress=None) -> tuple[dict, float | None]:
    """The blocking and the thread run, side by side; and the silent connection's cut.
    ``progress(done, total)`` hears the tasks of both runs."""
    broker = broker or broker_mod.get()
    tally = Tally(progress)

    def one(mode: str):
        ending = CutOff(window_s) if mode == "blocking" else Window(window_s)
        steps = [ending, Leftovers()]
        exp = Experiment(1, [Task(f"long-{mode}", task_s)],
                         WorkerConfig(prefetch=1, mode=mode, heartbeat=heartbeat_s),
                         label=f"heartbeat-{mode}", save=False, timeout=window_s + 30)
        return runner.run(exp, steps=steps, broker=broker, progress=tally.part(mode))

    results = in_parallel({mode: (lambda m=mode: one(m)) for mode in MODES}
                          | {"cut": lambda: silent_connection_cut(broker.url, heartbeat_s)})
    cut = results.pop("cut")
    return results, cut


@dataclass(frozen=True)
class HeartbeatOptions:
    """How the heartbeat runs go, checked once."""

    #: the heartbeat interval the workers ask for (seconds)
    heartbeat_s: int = 1
    #: the blocking run is cut here (None: two tasks' time, and a bit)
    window_s: float | None = None

    def __post_init__(self):
        if not is_whole(self.heartbeat_s) or self.heartbeat_s < 1:
            raise BadInputError(f"heartbeat_s must be a whole number of seconds, at least 1 "
                                f"(got {self.heartbeat_s!r}).")
        if self.window_s is not None and not (is_number(self.window_s) and self.window_s > 0):
            raise BadInputError(f"window_s must be above 0 seconds (got {self.window_s!r}).")


OPTIONS = HeartbeatOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def run(name: str, workers: int, prefetch: int, tasks: list,
        options: HeartbeatOptions = HeartbeatOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """Both runs as one result: one worker each, one task each as long as the longest of
    ``tasks``; the blocking run is cut at ``options.window_s``."""
    task_s = max(t.duration for t in tasks)
    heartbeat_s = options.heartbeat_s
    window_s = options.window_s or 2 * task_s + 0.5
    results, cut = runs(heartbeat_s, task_s, window_s, broker=broker, progress=progress)
    own = {"heartbeat_s": heartbeat_s, "task_s": task_s, "window_s": window_s,
           "broker_cut_s": cut, "default_heartbeat_s": agreed_heartbeat(
               (broker or broker_mod.get()).url)}
    for mode, result in results.items():
        events = result.events
        own[f"disconnects_{mode}"] = sum(e["event"] == "disconnected" for e in events)
        own[f"deliveries_{mode}"] = sum(e["event"] == "delivered" for e in events)
        own[f"times_done_{mode}"] = sum(e["event"] == "finished" for e in events)
        own[f"acked_{mode}"] = sum(e["event"] == "acked" for e in events)
        own[f"still_queued_{mode}"] = result.summary["still_queued"]
    own["blocking_run_s"] = results["blocking"].summary.get("run_s")
    durations = {f"long-{mode}": task_s for mode in MODES}
    return combine(name, results, durations, own)


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    return (f"heartbeat {s['heartbeat_s']} s, task {s['task_s']} s (the broker closed a silent "
            f"connection after {s['broker_cut_s']} s): blocking worker disconnected "
            f"{s['disconnects_blocking']} times in {s['blocking_run_s']} s, task delivered "
            f"{s['deliveries_blocking']} times, done {s['times_done_blocking']}, acked "
            f"{s['acked_blocking']}; thread worker disconnected {s['disconnects_thread']} times, "
            f"done {s['times_done_thread']}, acked {s['acked_thread']}; redeliveries "
            f"{s['redeliveries']}, lost {s['tasks_lost']}")
