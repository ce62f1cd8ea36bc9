"""Steps and tools the misbehaving-task scenarios share (heartbeat, consumer timeout, poison,
duplicate, alarm): a supervisor that replaces dead workers, a time window that ends a run,
the accounting of what is still in the broker at the end, and several runs told as one.

Every message is accounted for at the end of a run: completed, still queued (a task that
keeps coming back is not lost, it is stuck), dead-lettered, or lost; the last one is what
``tasks_lost`` counts here: confirmed, never completed, and no longer in the broker.
"""
from __future__ import annotations

import threading
import time

import pandas as pd

from helpers.measure import timing
from helpers.core.connection import connect
from helpers.errors import HelpersError
from helpers.experiment.skeleton import RunResult
from helpers.experiment.steps import Run, Step


class Supervise(Step):
    """Start a replacement for every worker that dies, as systemd or Kubernetes would.

    ``replacement`` options go to the replacements (e.g. ``crash_after=0``: they do not
    crash by injection themselves).
    """

    def __init__(self, every_s: float = 0.05, **replacement):
        self.every_s, self.replacement = every_s, replacement
        self.replaced = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def started(self, run: Run) -> None:
        self._thread = threading.Thread(target=self._loop, args=(run,), name="supervisor",
                                        daemon=True)
        self._thread.start()

    def _loop(self, run: Run) -> None:
        seen: set[str] = set()
        while not self._stop.wait(self.every_s):
            for handle in list(run.pool.workers.values()):
                if handle.alive or handle.name in seen:
                    continue
                seen.add(handle.name)
                try:
                    run.pool.add(1, wait=False, **self.replacement)
                    self.replaced += 1
                except HelpersError:
                    seen.discard(handle.name)  # try again next round

    def finished(self, run: Run, done: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self, run: Run) -> dict:
        return {"workers_replaced": self.replaced}


class Window(Step):
    """End the run ``seconds`` after the first publish, whether every task is done or not;
    with ``hold``, also keep it going until then (a task done whose ack was lost comes back)."""

    def __init__(self, seconds: float, hold: bool = False):
        self.seconds, self.hold = seconds, hold
        self.extra_s = seconds

    def ends(self, run: Run) -> bool:
        t_first = run.published.t_first if run.published else None
        return t_first is not None and time.time() - t_first >= self.seconds

    def holds(self, run: Run) -> bool:
        return self.hold and not self.ends(run)


def drain_ids(url: str, queue: str, wait_s: float = 2.0) -> list[dict]:
    """Take every message left in ``queue``: its id, and why it is there (``x-death``).

    Called once no consumer is left; a message a consumer held comes back as the broker
    notices the consumer is gone, so an empty queue is asked again for up to ``wait_s``.
    """
    out = []
    deadline = time.monotonic() + wait_s
    with connect(url, name=f"drain {queue}") as conn:
        channel = conn.channel()
        while True:
            method, props, _body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                if out or time.monotonic() >= deadline:
                    return out
                time.sleep(0.1)
                continue
            death = ((props.headers or {}).get("x-death") or [{}])[0]
            out.append({"task": props.message_id, "reason": death.get("reason"),
                        "count": death.get("count")})


class Leftovers(Step):
    """At the end, stop the workers and take what the queue and its dead-letter queue hold.

    Plug it in last (its ``finished`` stops the pool after the other steps have ended).
    Adds ``still_queued``, ``dead_lettered`` (with ``dead_letter_reasons``) and sets
    ``tasks_lost`` to what is in neither and was never completed.
    """

    def __init__(self):
        self.queued: list[dict] = []
        self.dead: list[dict] = []

    def finished(self, run: Run, done: bool) -> None:
        # "finished" leaves a worker before its ack: let the acks of finished tasks go out
        # (or fail) before the workers stop, or their messages would be counted as held.
        run.pool.wait_for(lambda pool: not _unsettled(pool.log.events), 2.0)
        run.pool.stop()
        try:
            self.queued = drain_ids(run.broker.url, run.spec.name, wait_s=0 if done else 2.0)
            if run.spec.dead_letter:
                self.dead = drain_ids(run.broker.url, run.spec.dead_letter_queue, wait_s=0.5)
        except HelpersError:
            pass  # a broker that is gone: the figures say so (nothing counted as held)

    def summary(self, run: Run) -> dict:
        events = run.pool.snapshot()
        completed = {e["task"] for e in events if e["event"] == "finished"}
        held = {m["task"] for m in self.queued + self.dead}
        reasons: dict = {}
        for m in self.dead:
            reasons[m["reason"]] = reasons.get(m["reason"], 0) + 1
        return {"still_queued": len(self.queued), "dead_lettered": len(self.dead),
                "dead_letter_reasons": reasons,
                "tasks_lost": len(set(run.published.confirmed) - completed - held)}


def _unsettled(events: list[dict]) -> set:
    """Deliveries finished by a worker still alive whose ack has not been reported yet."""
    finished = {e["delivery"] for e in events if e["event"] == "finished"}
    settled = {e.get("delivery") for e in events if e["event"] in ("acked", "failed", "crashed")}
    return finished - settled


def combine(fault: str, results: dict[str, RunResult], durations: dict,
            own: dict) -> RunResult:
    """Several runs of one scenario as one result: summed figures, workers named by run.

    The summary holds the ``run`` keys over all runs (workers as ``<run>/<worker>``, task
    ids unique across runs; ``durations`` maps them to seconds), ``tasks_lost`` summed as
    each run counted it, ``fault``, and ``own``; ``deliveries`` gains a ``run`` column
    (times relative to each run's start).
    """
    events, published, confirmed, names, frames = [], [], set(), [], []
    for label, result in results.items():
        for event in result.events:
            event = dict(event, worker=f"{label}/{event['worker']}")
            if "delivery" in event:
                event["delivery"] = f"{label}/{event['delivery']}"
            events.append(event)
        published += result.publish.published
        confirmed |= result.publish.confirmed
        started = result.summary["per_worker"][:result.summary["workers"]]  # replacements after
        names += [f"{label}/{row['worker']}" for row in started]
        frames.append(result.deliveries.assign(run=label))
    first = min(r.publish.t_first for r in results.values() if r.publish.t_first)
    summary = timing.summarize(events, published, confirmed, durations, names, first)
    summary.update(fault=fault, runs=list(results),
                   spawn_s=max(r.summary.get("spawn_s", 0.0) for r in results.values()),
                   tasks_lost=sum(r.summary["tasks_lost"] for r in results.values()),
                   broker_version=next(iter(results.values())).summary.get("broker_version"),
                   **own)
    main = next(iter(results.values()))
    return RunResult(summary, pd.concat(frames, ignore_index=True), events, main.publish)


class Tally:
    """One ``progress(done, total)`` for runs side by side: ``part(label)`` is the callback
    each run reports to; ``progress`` hears the sums over the runs that have reported."""

    def __init__(self, progress=None):
        self.progress, self._counts, self._lock = progress, {}, threading.Lock()

    def part(self, label: str):
        """The callback run ``label`` reports to (None when nobody listens)."""
        if self.progress is None:
            return None

        def report(done: int, total: int) -> None:
            with self._lock:
                self._counts[label] = (done, total)
                done_all = sum(d for d, _ in self._counts.values())
                total_all = sum(t for _, t in self._counts.values())
            self.progress(done_all, total_all)
        return report
