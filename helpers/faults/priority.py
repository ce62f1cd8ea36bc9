"""Urgent tasks behind a backlog (``fault priority``): with and without priorities.

A backlog of ``backlog`` low-priority tasks (priority 1), then ``urgent`` ones (priority 9),
published at once to workers that are already consuming; four runs side by side:

* ``fifo``: a classic queue without ``x-max-priority``: the urgent tasks wait their turn;
* ``classic-priority``: a classic queue with ``x-max-priority`` 10: they jump the queue;
* ``quorum``: a quorum queue (no argument: the tasks carry their priority); what it does
  with priorities depends on the version, so ``levels_probe`` measures it;
* ``prefetch``: the classic priority queue, workers at a large prefetch: what a worker was
  sent already is not re-ordered, so the urgent tasks wait behind it.

``levels_probe`` publishes a few messages of each priority 0..9 (classic, whose
``x-max-priority`` is 10) or 0..63 (quorum, so that the probe's own range is not the
ceiling it measures), lowest first, to a queue with no consumer, takes them back with
``basic.get`` and counts the priority levels the order honours (1: first in, first out).

Own keys: ``urgent_start_s_with``, ``urgent_start_s_without``, ``urgent_start_s_quorum``,
``urgent_start_s_prefetch`` (each urgent task's start, seconds after the first publish),
``levels`` (by queue), ``probe_top`` (the highest priority each probe sent, by queue),
``quorum_max_priority_refused`` (the broker's word, or None),
``backlog``, ``urgent``, ``task_s``, ``big_prefetch``.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from helpers.broker import resolve as broker_mod
from helpers.checks import is_whole
from helpers.core import topology
from helpers.core.connection import connect
from helpers.core.tasks import Task
from helpers.errors import BadInputError, TopologyError
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.faults.steps import Leftovers, Tally, combine
from helpers.procs import in_parallel
from helpers.settings import MAX_PREFETCH
from helpers.worker.config import WorkerConfig

RUNS = ("fifo", "classic-priority", "quorum", "prefetch")
LOW, HIGH, MAX_PRIORITY = 1, 9, 10
#: The highest priority the quorum probes send (above any level count a version announces).
QUORUM_PROBE_TOP = 63
DEFAULTS = {"workers": 2, "prefetch": 1, "tasks": 200, "duration": 0.01}


@dataclass(frozen=True)
class PriorityOptions:
    """How the priority runs go, checked once."""

    #: urgent tasks (priority 9) published after the backlog
    urgent: int = 5
    #: the workers' prefetch in the ``prefetch`` run (the others take one task at a time)
    big_prefetch: int = 50

    def __post_init__(self):
        if not (is_whole(self.urgent) and self.urgent >= 1):
            raise BadInputError(f"urgent must be a whole number of at least 1 "
                                f"(got {self.urgent!r}).")
        if not (is_whole(self.big_prefetch) and 0 <= self.big_prefetch <= MAX_PREFETCH):
            raise BadInputError(f"big_prefetch must be a whole number from 0 (unlimited) to "
                                f"{MAX_PREFETCH} (got {self.big_prefetch!r}).")


OPTIONS = PriorityOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def work(backlog: int, urgent: int, task_s: float, prefix: str) -> list[Task]:
    """The backlog (priority 1), then the urgent tasks (priority 9)."""
    return ([Task(f"{prefix}low-{i:04d}", task_s, priority=LOW) for i in range(1, backlog + 1)]
            + [Task(f"{prefix}urgent-{i}", task_s, priority=HIGH) for i in range(1, urgent + 1)])


def levels(order: list[int]) -> int:
    """Priority levels a delivery ``order`` honours (messages were published lowest first):
    walking up the priorities, a new level starts at one whose messages came, on average,
    before every message of the level below."""
    mean = {p: statistics.mean(i for i, q in enumerate(order) if q == p) for p in set(order)}
    count, band_first = 1, None
    for p in sorted(mean):
        if band_first is not None and mean[p] < band_first:
            count += 1
            band_first = mean[p]
        else:
            band_first = mean[p] if band_first is None else min(band_first, mean[p])
    return count


def levels_probe(broker, kind: str, max_priority: int | None, each: int = 3,
                 top: int = MAX_PRIORITY - 1) -> dict:
    """Publish ``each`` messages of priority 0..``top``, lowest first; take them back; count."""
    import pika

    spec = topology.unique_spec(f"levels-{kind}", kind=kind, dead_letter=False,
                                max_priority=max_priority)
    try:
        topology.setup(broker.url, spec)
    except TopologyError as exc:
        return {"levels": None, "refused": getattr(exc.__cause__, "reply_text", str(exc))}
    try:
        with connect(broker.url, name=f"probe {spec.name}") as conn:
            channel = conn.channel()
            channel.confirm_delivery()
            for p in range(top + 1):
                for _ in range(each):
                    channel.basic_publish("", spec.name, b"{}", pika.BasicProperties(priority=p))
            order = []
            while True:
                method, props, _ = channel.basic_get(spec.name, auto_ack=True)
                if method is None:
                    break
                order.append(props.priority)
    finally:
        topology.discard(broker.url, spec)
    return {"levels": levels(order), "refused": None, "order": order}


def runs(workers: int, backlog: int, task_s: float, options: PriorityOptions = PriorityOptions(),
         *, broker, progress=None) -> dict:
    """The four runs, side by side."""
    tally = Tally(progress)
    urgent, big_prefetch = options.urgent, options.big_prefetch

    def one(label: str) -> runner.RunResult:
        spec = topology.unique_spec(f"priority-{label}", kind="quorum" if label == "quorum"
                                    else "classic", max_priority=None if label in (
                                        "fifo", "quorum") else MAX_PRIORITY)
        config = WorkerConfig(prefetch=big_prefetch if label == "prefetch" else 1)
        exp = Experiment(workers, work(backlog, urgent, task_s, f"{label}-"), config,
                         queue=spec, label=f"priority-{label}", save=False)
        return runner.run(exp, broker=broker, steps=[Leftovers()], progress=tally.part(label))

    return in_parallel({label: (lambda x=label: one(x)) for label in RUNS})


def urgent_starts(result: runner.RunResult) -> list[float]:
    """Seconds from the first publish to each urgent task's (first) start."""
    first: dict = {}
    for e in result.events:
        if e["event"] == "started" and "urgent" in str(e.get("task")):
            first.setdefault(e["task"], e["t"])
    return [round(t - result.publish.t_first, 3) for _, t in sorted(first.items())]


def run(name: str, workers: int, prefetch: int, tasks: list,
        options: PriorityOptions = PriorityOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """The probes and the four runs as one result: a backlog as long as ``tasks``, of tasks
    as long as the first, then ``options.urgent`` urgent ones (prefetch is 1)."""
    broker = broker or broker_mod.get()
    backlog, task_s = len(tasks), tasks[0].duration
    urgent, big_prefetch = options.urgent, options.big_prefetch
    got = in_parallel({
        "classic": lambda: levels_probe(broker, "classic", MAX_PRIORITY),
        "quorum": lambda: levels_probe(broker, "quorum", None, top=QUORUM_PROBE_TOP),
        "quorum-arg": lambda: levels_probe(broker, "quorum", MAX_PRIORITY, top=QUORUM_PROBE_TOP),
        "runs": lambda: runs(workers, backlog, task_s, options, broker=broker,
                             progress=progress)})
    results = got["runs"]
    starts = {label: urgent_starts(result) for label, result in results.items()}
    own = {"urgent_start_s_without": starts["fifo"],
           "urgent_start_s_with": starts["classic-priority"],
           "urgent_start_s_quorum": starts["quorum"], "urgent_start_s_prefetch": starts["prefetch"],
           "levels": {"classic": got["classic"]["levels"], "quorum": got["quorum"]["levels"],
                      "quorum with x-max-priority": got["quorum-arg"]["levels"]},
           "probe_top": {"classic": MAX_PRIORITY - 1, "quorum": QUORUM_PROBE_TOP},
           "quorum_max_priority_refused": got["quorum-arg"]["refused"],
           "backlog": backlog, "urgent": urgent, "task_s": task_s, "big_prefetch": big_prefetch}
    durations = {t.id: t.duration for label in RUNS
                 for t in work(backlog, urgent, task_s, f"{label}-")}
    return combine(name, results, durations, own)


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary

    def last(key: str) -> str:
        return f"{max(s[key]):.2f} s" if s[key] else "never"

    return (f"{s['urgent']} urgent tasks behind {s['backlog']}: all started by "
            f"{last('urgent_start_s_without')} without priorities, {last('urgent_start_s_with')} "
            f"with x-max-priority, {last('urgent_start_s_quorum')} on a quorum queue, "
            f"{last('urgent_start_s_prefetch')} with priorities at prefetch "
            f"{s['big_prefetch']}; levels honoured {s['levels']}; lost {s['tasks_lost']}")
