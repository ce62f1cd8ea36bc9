"""A failing task, retried later and later (``fault retry``), against the hot loop.

Good tasks with one task that fails every time (``kind: fail``), two runs side by side:

* ``hot-loop``: workers that ``basic_nack(requeue=True)`` a failure; the task is back at
  once, failed again at once: the run is cut at ``window_s`` and its deliveries counted;
* ``delayed``: workers that publish a failure to the retry queue of its attempt
  (``QueueSpec.retry_delays``: one queue per delay, its TTL dead-letters the task back to
  the work queue), and after the last one to ``<queue>.parked`` (``helpers.worker.failure``).

Beside them, ``head_of_line_probe`` shows why one queue per delay: in one queue with a
*per-message* TTL (``expiration``), a message expires only once it reaches the head, so a
short delay waits behind a long one. And ``helpers.broker.delayed_retry.probe`` asks the
broker itself to delay a quorum queue's redeliveries (``x-delayed-retry-*``, or a policy):
what this broker did with each way.

Own keys: ``attempts`` (deliveries of the failing task, delayed run), ``delays_s``
(configured), ``gaps_s`` (measured: each failure to the next attempt), ``parked``,
``hot_loop_deliveries``, ``hot_loop_deliveries_per_s``, ``delayed_deliveries_per_s``,
``window_s``, ``good_completed``, ``head_of_line`` (the probe's figures), ``delayed_retry``
(``{way: {"settings", "outcome", "gaps_s"}}``: ``honoured``, ``ignored``, ``refused: ...``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from helpers.broker import delayed_retry
from helpers.broker import resolve as broker_mod
from helpers.checks import is_number, is_whole
from helpers.core import topology
from helpers.core.connection import connect
from helpers.core.tasks import Task, equal
from helpers.errors import BadInputError
from helpers.experiment import skeleton as runner
from helpers.experiment.steps import Run, Step
from helpers.experiment.value import Experiment
from helpers.faults.steps import Leftovers, Tally, Window, combine, drain_ids
from helpers.procs import in_parallel
from helpers.settings import FAIL_KIND
from helpers.worker.config import WorkerConfig

#: The lesson's back-off is 1, 4 and 16 s; the default run divides it by four (time).
DELAYS_S = (0.25, 1.0, 4.0)
DEFAULTS = {"workers": 2, "prefetch": 1, "tasks": 20, "duration": 0.05}


@dataclass(frozen=True)
class RetryOptions:
    """How the retry runs go, checked once."""

    #: seconds the failing task waits before each retry (one retry queue per delay)
    delays: tuple = DELAYS_S
    #: seconds the hot loop's run goes on (it never ends by itself)
    window_s: float = 1.5
    #: the minimum delay the broker's own delayed redelivery is asked for (milliseconds)
    broker_delay_ms: int = 1000

    def __post_init__(self):
        if isinstance(self.delays, (list, tuple)):
            object.__setattr__(self, "delays", tuple(self.delays))
        if not (isinstance(self.delays, tuple) and self.delays
                and all(is_number(d) and d > 0 for d in self.delays)):
            raise BadInputError(f"delays must be one or more seconds above 0 "
                                f"(got {self.delays!r}).")
        if not (is_number(self.window_s) and self.window_s > 0):
            raise BadInputError(f"window_s must be above 0 seconds (got {self.window_s!r}).")
        if not (is_whole(self.broker_delay_ms) and self.broker_delay_ms >= 1):
            raise BadInputError(f"broker_delay_ms must be a whole number of milliseconds, at "
                                f"least 1 (got {self.broker_delay_ms!r}).")


OPTIONS = RetryOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def work(good: int, good_s: float, prefix: str, fail_s: float = 0.01) -> list[Task]:
    """``good`` tasks of ``good_s`` and one failing task after the third."""
    tasks = [Task(f"{prefix}{t.id}", t.duration) for t in equal(good, good_s)]
    return tasks[:3] + [Task(f"{prefix}fails", fail_s, FAIL_KIND)] + tasks[3:]


class UntilParked(Step):
    """End the run once every good task is done and the failing one is parked."""

    def __init__(self, good: set[str]):
        self.good, self._next = good, 0.0

    def ends(self, run: Run) -> bool:
        if not all(run.pool.finished[t] for t in self.good) or time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + 0.1
        return any(e["event"] == "failed" and e.get("then") == "parked" for e in run.pool.events)


class Parked(Leftovers):
    """``Leftovers``, and the parked queue's messages: held, not lost."""

    def finished(self, run: Run, done: bool) -> None:
        super().finished(run, done)
        self.parked = drain_ids(run.broker.url, run.spec.parked_queue, wait_s=0.5) \
            if run.spec.retry_delays else []

    def summary(self, run: Run) -> dict:
        out = super().summary(run)
        lost = set(run.published.confirmed) - {e["task"] for e in run.pool.snapshot()
                                               if e["event"] == "finished"}
        held = {m["task"] for m in self.queued + self.dead + self.parked}
        return dict(out, parked=len(self.parked), tasks_lost=len(lost - held))


def head_of_line_probe(broker, short_s: float, long_s: float) -> dict:
    """Two messages in one retry queue, the long per-message TTL first: when does the short
    one come back? (Queue TTL ``long_s``; per-message ``expiration`` long, then short.)"""
    import pika

    spec = topology.unique_spec("hol", kind="classic", dead_letter=False, retry_delays=(long_s,))
    topology.setup(broker.url, spec)
    try:
        with connect(broker.url, name=f"probe {spec.name}") as conn:
            channel = conn.channel()
            channel.confirm_delivery()
            start = time.time()
            for name, ttl in (("long", long_s), ("short", short_s)):
                props = pika.BasicProperties(message_id=name, expiration=str(round(ttl * 1000)))
                channel.basic_publish("", spec.retry_queue(0), b"{}", props)
            back: dict = {}
            while len(back) < 2 and time.time() - start < long_s + 10:
                method, props, _ = channel.basic_get(spec.name, auto_ack=True)
                if method is None:
                    time.sleep(0.01)
                else:
                    back[props.message_id] = round(time.time() - start, 3)
    finally:
        topology.discard(broker.url, spec)
    return {"short_ttl_s": short_s, "long_ttl_s": long_s, "short_back_after_s": back.get("short"),
            "long_back_after_s": back.get("long"), "short_came_back_first":
            back.get("short", 1e9) < back.get("long", 1e9)}


def runs(workers: int, good: int, good_s: float, options: RetryOptions = RetryOptions(), *,
         broker, progress=None) -> dict:
    """The hot loop and the delayed retries, side by side."""
    tally = Tally(progress)
    delays, window_s = options.delays, options.window_s

    def one(label: str) -> runner.RunResult:
        tasks = work(good, good_s, f"{label}-")
        hot = label == "hot-loop"
        spec = topology.unique_spec(label, kind="classic" if hot else "quorum",
                                    retry_delays=() if hot else delays)
        ending = Window(window_s) if hot else UntilParked(
            {t.id for t in tasks if t.kind != FAIL_KIND})
        exp = Experiment(workers, tasks, WorkerConfig(on_failure="requeue" if hot else "retry"),
                         queue=spec, label=f"retry-{label}", save=False,
                         timeout=window_s + sum(delays) + 30)
        return runner.run(exp, broker=broker, steps=[ending, Parked()],
                          progress=tally.part(label))

    return in_parallel({label: (lambda x=label: one(x)) for label in ("hot-loop", "delayed")})


def attempts_of(result: runner.RunResult, run: str) -> list[dict]:
    """The failing task's attempts in run ``run``: started and failed times, then what."""
    mine = sorted((e for e in result.events if e["worker"].startswith(f"{run}/")
                   and str(e.get("task", "")).endswith("fails")), key=lambda e: e["t"])
    out: list[dict] = []
    for e in mine:
        if e["event"] == "started":
            out.append({"started_t": e["t"]})
        elif e["event"] == "failed" and out:
            out[-1].update(failed_t=e["t"], then=e.get("then"), delay_s=e.get("delay_s"))
    return out


def run(name: str, workers: int, prefetch: int, tasks: list,
        options: RetryOptions = RetryOptions(), *, broker=None,
        progress=None) -> runner.RunResult:
    """The probes and both runs as one result: as many good tasks as ``tasks``, as long as
    the first, and one failing task among them (prefetch is 1)."""
    broker = broker or broker_mod.get()
    delays, window_s = options.delays, options.window_s
    good, good_s = len(tasks), tasks[0].duration
    both = in_parallel({"probe": lambda: head_of_line_probe(broker, delays[0], delays[-1]),
                        "broker": lambda: delayed_retry.probe(broker, options.broker_delay_ms),
                        "runs": lambda: runs(workers, good, good_s, options, broker=broker,
                                             progress=progress)})
    results = both["runs"]
    tries = attempts_of(combine(name, results, {}, {}), "delayed")
    gaps = [round(b["started_t"] - a["failed_t"], 3) for a, b in zip(tries, tries[1:])]
    hot = sum(e["event"] == "started" and str(e.get("task")).endswith("fails")
              for e in results["hot-loop"].events)
    span = tries[-1]["failed_t"] - tries[0]["started_t"] if len(tries) > 1 else float("nan")
    own = {"attempts": len(tries), "delays_s": list(delays), "gaps_s": gaps,
           "parked": results["delayed"].summary["parked"], "window_s": window_s,
           "hot_loop_deliveries": hot, "hot_loop_deliveries_per_s": round(hot / window_s, 1),
           "delayed_deliveries_per_s": round(len(tries) / span, 2),
           "good_completed": len({e["task"] for r in results.values() for e in r.events
                                  if e["event"] == "finished"}),
           "head_of_line": both["probe"], "delayed_retry": both["broker"]}
    durations = {t.id: t.duration for label in results for t in work(good, good_s, f"{label}-")}
    return combine(name, results, durations, own)


def line(summary: dict) -> str:
    """The figures in one line, as the CLI prints them."""
    s, h = summary, summary["head_of_line"]
    return (f"a failing task: requeued at once, delivered {s['hot_loop_deliveries']} times in "
            f"{s['window_s']} s ({s['hot_loop_deliveries_per_s']}/s); retried after "
            f"{s['delays_s']} s: {s['attempts']} attempts, waits {s['gaps_s']} s "
            f"({s['delayed_deliveries_per_s']}/s), parked {s['parked']}; per-message TTL "
            f"{h['short_ttl_s']} s behind {h['long_ttl_s']} s came back after "
            f"{h['short_back_after_s']} s; the broker's own delayed retry: "
            f"{delayed_retry.summary(s['delayed_retry'])}; lost {s['tasks_lost']}")
