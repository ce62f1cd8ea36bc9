"""Stop or crash the broker in the middle of a run, and count what survived.

A ``BrokerDown`` step plugged into the run skeleton (``helpers.experiment.skeleton.run``): tasks are
published in small batches with publisher confirms (``helpers.publish.pacing``) while K workers
consume them; a second thread restarts the broker cleanly (``restart``) or SIGKILLs its
node and starts it again (``crash``). Producer and workers are left to find their way back
on their own: the producer republishes what the broker had not confirmed and each worker
reconnects in a loop. The run ends when every confirmed task has been done and the queue
has settled. (Worker kills are the ``helpers.experiment.kills.WorkerKills`` step: ``run --kill-every``.)

Used by ``python -m helpers fault restart|crash`` (through ``helpers.faults.run_fault``), by
tests/test_faults.py and by the README's "Guarantees" section, so the three report the same
figures the same way.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from helpers.broker.model import Broker
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.experiment.steps import Run, Step
from helpers import settings
from helpers.core import topology
from helpers.core.connection import mask_url
from helpers.checks import is_whole
from helpers.errors import BadInputError, BrokerControlError, HelpersError
from helpers.measure.monitor import wait_settled
from helpers.core.tasks import Task
from helpers.faults.options import PacedFaultOptions

#: What this scenario can do to the broker: the ``Broker`` method of each name.
HOW = ("restart", "crash")
NAN = float("nan")


class BrokerDown(Step):
    """Take the broker down once three things hold: ``after_s`` seconds have passed since
    publishing began; for a crash, ``settings.SETTLE_S`` since the queue was declared (a
    node SIGKILLed sooner may come back without it); and at least ``min_held`` confirmed
    tasks are unfinished, as observed (or publishing is over: no more can come). The last
    makes "something was at stake" a fact of the run, not a bet on the machine's load."""

    #: a restart may take two boots' time on top of the work
    extra_s = 2 * settings.BOOT_TIMEOUT_S

    def __init__(self, how: str, after_s: float, min_held: int = 0):
        self.how, self.after_s, self.min_held = how, after_s, min_held
        self.fault: dict = {}
        self.settled = False
        self._thread: threading.Thread | None = None

    def check(self, broker: Broker) -> None:
        if not broker.can_restart:
            raise BrokerControlError(
                f"Cannot {self.how} the {broker.kind} broker at {mask_url(broker.url)} from "
                "here, so this measurement needs a private node (unset AMQP_URL).")

    def started(self, run: Run) -> None:
        self._thread = threading.Thread(target=self._inject, args=(run,), name="broker-fault",
                                        daemon=True)
        self._thread.start()

    def _inject(self, run: Run) -> None:
        run.publisher.started.wait()
        time.sleep(self.after_s)
        if self.how == "crash":  # a clean stop writes the declarations down itself
            topology.wait_settled_declarations(run.declared_at)
        while True:
            # Finished first: a task confirmed after this read and done since is not "held".
            finished = set(run.pool.finished)
            confirmed = set(run.publisher.confirmed_t.copy())  # the copy is atomic
            if len(confirmed - finished) >= self.min_held or not run.publisher.is_alive():
                break
            time.sleep(0.01)
        self.fault["finished_before"] = finished
        self.fault["confirmed_before"] = confirmed
        self.fault["t_down"] = time.time()
        try:
            getattr(run.broker, self.how)()
        except HelpersError as exc:
            self.fault["error"] = str(exc)
        self.fault["t_up"] = time.time()

    def finished(self, run: Run, done: bool) -> None:
        if self._thread is not None:
            self._thread.join(timeout=self.extra_s)
        if "error" in self.fault:
            raise BrokerControlError(f"The broker {self.how} failed ({self.fault['error']}): "
                                     "see `python -m helpers broker status`.")
        self.settled = done and wait_settled(run.broker, run.spec.name)

    def summary(self, run: Run) -> dict:
        events, published, fault = run.pool.snapshot(), run.published, self.fault
        held = fault.get("confirmed_before", set()) - fault.get("finished_before", set())
        completed = {e["task"] for e in events if e["event"] == "finished"}
        t_down = fault.get("t_down", NAN)
        return dict(
            settled=self.settled, publish_error=run.publisher.error, fault=self.how,
            fault_at_s=round(t_down - published.t_first, 3),
            down_s=round(fault.get("t_up", float("inf")) - t_down, 3),
            held_at_fault=len(held), recovered=len(held & completed),
            confirmed_after_fault=len(published.confirmed - fault.get("confirmed_before", set())),
            publisher_retries=published.reconnects,
            republished=len(published.published) - len(set(published.published)),
            worker_disconnects=sum(e["event"] == "disconnected" for e in events),
            worker_reconnects=sum(e["event"] == "ready" and e.get("generation", 0) > 0
                                  for e in events))

#: the options of ``python -m helpers fault`` this scenario takes
COMMAND_LINE = ("fault_after_s", "queue_type")


@dataclass(frozen=True)
class BrokerDownOptions(PacedFaultOptions):
    """How a broker-down run goes (``restart``, ``crash``), checked once."""

    #: once ``fault_after_s`` has passed, wait until at least this many confirmed tasks are
    #: unfinished (or publishing is over), so the fault finds something at stake
    min_held: int = 10
    #: ``quorum`` (the default) or ``classic``
    queue_type: str = settings.DEFAULT_QUEUE_KIND

    def __post_init__(self):
        if not is_whole(self.min_held) or self.min_held < 0:
            raise BadInputError(f"min_held must be a whole number, 0 or more "
                                f"(got {self.min_held!r}).")
        super().__post_init__()


OPTIONS = BrokerDownOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def run(how: str, workers: int, prefetch: int, tasks: list[Task],
        options: BrokerDownOptions = BrokerDownOptions(), *, broker: Broker | None = None,
        progress=None) -> runner.RunResult:
    """Run ``tasks`` on ``workers`` workers and restart or crash the broker mid-run.

    ``how``: ``restart`` (clean stop, then start) or ``crash`` (SIGKILL the node, then
    start); ``progress(done, total)`` is called as tasks complete.

    The summary holds the ``run`` keys plus: ``fault``, ``down_s`` (broker unreachable),
    ``held_at_fault`` (confirmed, not yet done when it went down), ``recovered`` (of those,
    done in the end), ``confirmed_after_fault`` (published once it was back),
    ``publisher_retries`` (connection attempts after a loss),
    ``republished``, ``worker_disconnects``, ``worker_reconnects``.
    """
    if how not in HOW:
        raise BadInputError(f"the fault must be one of {', '.join(HOW)} (got {how!r}).")
    o = options
    step = BrokerDown(how, o.fault_after_s, o.min_held)
    label = o.label or f"fault-{how}"
    exp = Experiment(workers, tasks, WorkerConfig(prefetch=prefetch), publish=o.publish(),
                     label=label, queue=topology.unique_spec(label, kind=o.queue_type),
                     timeout=o.timeout, save=o.save)
    return runner.run(exp, steps=[step], broker=broker, progress=progress)


def line(summary: dict) -> str:
    """The figures of a broker-fault run in one line, as the CLI prints them."""
    s = summary
    return (f"{s['fault']} {s['fault_at_s']:.1f} s into the run, broker away {s['down_s']:.1f} s: "
            f"confirmed {s['tasks_confirmed']}, completed {s['tasks_completed']}, "
            f"lost {s['tasks_lost']}; held by the broker at the fault {s['held_at_fault']}, "
            f"recovered {s['recovered']}; duplicates {s['duplicates']}, redeliveries "
            f"{s['redeliveries']}; producer retries {s['publisher_retries']} (republished "
            f"{s['republished']}), worker reconnects {s['worker_reconnects']}")
