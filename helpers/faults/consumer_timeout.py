"""A task longer than the broker's delivery-acknowledgement timeout
(``python -m helpers fault consumer-timeout``).

The broker gives a consumer ``consumer_timeout`` (30 minutes by default) to acknowledge each
delivery, and checks it on each channel's tick (once a minute by default). For the lesson
the private node's tick is set to 0.25 s and the timeout to ``timeout_s``: per queue, with a
``consumer-timeout`` policy, where the broker accepts one; node-wide where it does not
(RabbitMQ 3.10 refuses the policy key and ignores an ``x-consumer-timeout`` argument: only
the global setting exists there). Three runs on quorum queues, one heartbeat-safe worker
each:

* ``too-long``: one task of ``task_s``. When its time is up the broker closes the channel
  (``406 PRECONDITION_FAILED``, 3.x and 4.0) or cancels the consumer (newer versions, on
  quorum queues); the task goes back to the queue and comes back, redelivered, again and
  again. The run is cut at ``window_s``.
* ``split``: the same work as pieces of ``timeout_s / 2``, each acked within the timeout.
* ``longer``: the task on a queue whose timeout is longer than the task (its own policy;
  where there is no per-queue timeout, the node-wide one while its channel opens).

Own keys: ``timeout_s``, ``task_s``, ``channel_closed_or_cancelled``, ``closed_because``,
``per_queue_timeout``, ``per_queue_refusal``, ``acked_too_long``, ``acked_split``,
``pieces``, ``acked_longer``, ``window_s``, ``node_consumer_timeout_ms`` and ``node_tick_ms``
(the node's own settings, put back afterwards).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import math
import re
import threading
from dataclasses import dataclass

from helpers.broker import resolve as broker_mod
from helpers.broker.model import Broker
from helpers.broker import dead_letter, node_control
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.experiment.steps import Run, Step
from helpers.checks import is_number
from helpers.core import topology
from helpers.errors import BadInputError
from helpers.core.tasks import Task
from helpers.faults.steps import Leftovers, Tally, Window, combine
from helpers.procs import in_parallel

#: How often the private node checks its channels' timers during the lesson, ms (default 60000).
TICK_MS = 250
RUNS = ("too-long", "split", "longer")
#: one task of 2.5 s per run (the CLI's --duration is the task's length)
DEFAULTS = {"workers": 1, "prefetch": 1, "tasks": 1, "duration": 2.5}


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _work(label: str, task_s: float, timeout_s: float) -> list[Task]:
    if label != "split":
        return [Task(f"ct-{label}", task_s)]
    pieces = math.ceil(task_s / (timeout_s / 2))
    return [Task(f"ct-split-{i}", task_s / pieces) for i in range(1, pieces + 1)]


def timeout_definition(seconds: float) -> dict:
    """The definition of the lesson's consumer-timeout policy: the timeout, and the
    dead-letter key. One policy per queue applies (the highest priority), so this one keeps
    the key of the project's dead-letter policy it replaces on these queues, as a user's should.
    """
    return {"consumer-timeout": _ms(seconds), **dead_letter.DEFINITION}


def timeout_policy(broker: Broker, name: str, pattern: str, seconds: float):
    """The consumer-timeout policy ``name`` on the queues ``pattern`` matches, for a block:
    yields None when the broker took it, else its refusal (RabbitMQ before 3.12)."""
    return node_control.policy(broker, name, pattern, timeout_definition(seconds))


def runs(timeout_s: float = 1.0, task_s: float = 2.5, window_s: float = 5.0, *,
         broker: Broker | None = None, progress=None) -> tuple[dict, dict]:
    """The three runs (see the module docstring); and how the timeout was set.
    ``progress(done, total)`` hears the tasks of all three."""
    broker = broker or broker_mod.get()
    tally = Tally(progress)
    node_control.require(broker, "The consumer-timeout lesson")
    # Quorum queues, as the tutorial's task_queue: the type every version checks (4.3
    # stopped checking classic queues).
    specs = {label: topology.unique_spec(f"ct-{label}", kind="quorum") for label in RUNS}

    def pattern(*labels: str) -> str:
        return "^(" + "|".join(re.escape(specs[label].name) for label in labels) + ")$"

    def one(label: str, consuming: threading.Event | None = None) -> runner.RunResult:
        steps = [Window(window_s, hold=label == "too-long"), Leftovers()]
        if consuming is not None:
            steps.insert(0, _Consuming(consuming))
        exp = Experiment(1, _work(label, task_s, timeout_s), WorkerConfig(prefetch=1),
                         queue=specs[label], label=f"ct-{label}", save=False,
                         timeout=window_s + 30)
        return runner.run(exp, steps=steps, broker=broker, progress=tally.part(label))

    with contextlib.ExitStack() as stack:
        refusal = stack.enter_context(timeout_policy(
            broker, specs["too-long"].name, pattern("too-long", "split"), timeout_s))
        per_queue = refusal is None
        env = {"channel_tick_interval": TICK_MS}
        if not per_queue:  # node-wide: the longer run's timeout first (see below)
            env["consumer_timeout"] = _ms(4 * task_s)
        before = stack.enter_context(node_control.node_env(
            broker, read=("consumer_timeout",), **env))
        if per_queue:
            stack.enter_context(timeout_policy(
                broker, specs["longer"].name, pattern("longer"), 4 * task_s))
            results = in_parallel({label: (lambda x=label: one(x)) for label in RUNS})
        else:
            results = _node_wide(one, lambda: node_control.set_env(
                broker, {"consumer_timeout": _ms(timeout_s)}))
    return results, {"per_queue_timeout": per_queue, "per_queue_refusal": refusal,
                     "node_consumer_timeout_ms": before.get("consumer_timeout"),
                     "node_tick_ms": before.get("channel_tick_interval")}


class _Consuming(Step):
    """Set ``event`` once the run's workers consume (their channels are open)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def started(self, run: Run) -> None:
        self.event.set()


def _node_wide(one, shorten) -> dict:
    """The three runs with one node-wide timeout: a channel keeps the timeout it was opened
    with, so the ``longer`` run starts first, on the long timeout; once its worker consumes,
    ``shorten()`` sets the short one for the two others."""
    consuming = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        longer = pool.submit(one, "longer", consuming)
        while not consuming.wait(0.1):
            if longer.done():
                longer.result()  # it failed before consuming: raise its error
                break
        shorten()
        results = in_parallel({label: (lambda x=label: one(x)) for label in RUNS[:2]})
        results["longer"] = longer.result()
    return results


def _acked(result: runner.RunResult) -> int:
    return sum(e["event"] == "acked" for e in result.events)


@dataclass(frozen=True)
class ConsumerTimeoutOptions:
    """How the consumer-timeout runs go, checked once."""

    #: the consumer timeout the runs' queues get (seconds)
    timeout_s: float = 1.0
    #: seconds each run goes on
    window_s: float = 5.0

    def __post_init__(self):
        if not all(is_number(v) and 0 < v < math.inf for v in (self.timeout_s, self.window_s)):
            raise BadInputError(f"timeout_s and window_s must be above 0 seconds "
                                f"(got {self.timeout_s!r}, {self.window_s!r}).")


OPTIONS = ConsumerTimeoutOptions  # what ``run`` takes (``faults.run_fault`` builds it)


def run(name: str, workers: int, prefetch: int, tasks: list,
        options: ConsumerTimeoutOptions = ConsumerTimeoutOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """The three runs as one result: one worker each, prefetch 1, the task as long as the
    longest of ``tasks``."""
    task_s = max(t.duration for t in tasks)
    timeout_s, window_s = options.timeout_s, options.window_s
    results, how = runs(timeout_s, task_s, window_s, broker=broker, progress=progress)
    events = results["too-long"].events
    closes = [e.get("reason", "") for e in events if e["event"] == "disconnected"]
    cancels = sum(e["event"] == "cancelled" for e in events)
    # the worker reports pika's exception: ChannelClosedByBroker: (406) 'PRECONDITION_FAILED ...'
    found = [m for m in (re.search(r"\((\d{3})\)\s*'([^']*)", c) for c in closes) if m]
    because = (f"{found[0].group(1)} {found[0].group(2)}" if found else
               "the broker cancelled the consumer" if cancels else None)
    own = dict(how, timeout_s=timeout_s, task_s=task_s, window_s=window_s,
               channel_closed_or_cancelled=len(closes),
               closed_because=because, pieces=len(_work("split", task_s, timeout_s)),
               **{f"acked_{label.replace('-', '_')}": _acked(r) for label, r in results.items()})
    durations = {t.id: t.duration for label in RUNS for t in _work(label, task_s, timeout_s)}
    return combine(name, results, durations, own)


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s = summary
    where = "per queue (policy)" if s["per_queue_timeout"] else "node-wide (no per-queue timeout)"
    return (f"ack timeout {s['timeout_s']} s {where}, task {s['task_s']} s: the broker ended "
            f"the consumer {s['channel_closed_or_cancelled']} times in {s['window_s']} s "
            f"({s['closed_because']}), acked {s['acked_too_long']}; split into {s['pieces']} "
            f"pieces: acked {s['acked_split']}; longer timeout: acked {s['acked_longer']}; "
            f"redeliveries {s['redeliveries']}, lost {s['tasks_lost']}")
