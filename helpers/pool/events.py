"""The events workers report, gathered as they arrive and waited on.

Each worker writes JSON lines on its stdout (see ``helpers.worker``); the pool's reader
threads parse them and hand them here in batches (``add``), under one lock with one
wake-up of the waiters. ``finished`` counts, live, how often each task was reported done.
"""
from __future__ import annotations

import collections
import json
import sys
import threading
import time


class EventLog:
    """Every event of a pool's workers, in arrival order; ``wait_for`` a condition on them."""

    def __init__(self, on_event=None):
        self.events: list[dict] = []
        #: task id -> number of times a worker reported it finished (kept live).
        self.finished: collections.Counter = collections.Counter()
        #: held while events are added; notified after each batch
        self.cond = threading.Condition()
        self.on_event = on_event

    def add(self, events: list[dict]) -> None:
        """Record a batch of events and wake whoever waits; then call ``on_event`` on each."""
        with self.cond:
            for event in events:
                self.events.append(event)
                if event.get("event") == "finished":
                    self.finished[event.get("task")] += 1
            self.cond.notify_all()
        if self.on_event is not None:
            for event in events:
                try:
                    self.on_event(event)
                except Exception:  # a display callback must never kill event collection
                    pass

    def snapshot(self) -> list[dict]:
        """A copy of the events received so far."""
        with self.cond:
            return list(self.events)

    def wait_for(self, predicate, timeout: float, progress=None) -> bool:
        """Block until ``predicate()`` is true or ``timeout`` passes; return which.

        ``predicate`` is tried again whenever new events arrived; so is ``progress()`` (keep
        both quick: the lock is held).
        """
        deadline = time.monotonic() + timeout
        seen = -1
        with self.cond:
            while True:
                if len(self.events) != seen:
                    seen = len(self.events)
                    if predicate():
                        return True
                    if progress is not None:
                        progress()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.25))


def parse_lines(lines: list[bytes], other: list[str]) -> list[dict]:
    """The events among ``lines``; any line that is not JSON goes to ``other`` as text.

    The lines are parsed as one JSON array: one call instead of one per line, and the
    decoder then shares each key's string among all the events (a run of 100,000 tasks
    keeps 400,000 events; their own copies of the keys took about a third of the parent's
    memory). Event names and worker names, repeated in every event, are interned too.
    """
    lines = [raw for raw in lines if raw.strip()]
    if not lines:
        return []
    try:
        events = json.loads(b"[" + b",".join(lines) + b"]")
        if not all(isinstance(event, dict) for event in events):
            raise ValueError("not all events")
    except ValueError:
        return _parse_each(lines, other)
    for event in events:
        _intern(event)
    return events


def _intern(event: dict) -> None:
    for key in ("event", "worker"):
        value = event.get(key)
        if type(value) is str:
            event[key] = sys.intern(value)


def _parse_each(lines: list[bytes], other: list[str]) -> list[dict]:
    events = []
    for raw in lines:
        try:
            event = json.loads(raw)
        except ValueError:
            other.append(raw.decode(errors="replace").rstrip())
            continue
        if isinstance(event, dict):
            _intern(event)
            events.append(event)
        else:
            other.append(raw.decode(errors="replace").rstrip())
    return events


def _held(events: list[dict]) -> dict[str, set]:
    """Worker -> the deliveries it holds unacked, by its own account (see ``unacked``)."""
    auto: dict[str, bool] = {}
    held: dict[str, set] = {}
    for event in events:
        worker, kind = event.get("worker"), event.get("event")
        if kind == "ready":
            auto[worker] = event.get("ack") == "auto"
            held[worker] = set()
        elif kind == "delivered" and not auto.get(worker):
            held.setdefault(worker, set()).add(event.get("delivery"))
        elif kind in ("acked", "abandoned", "dead-lettered", "requeued", "rejected") or (
                kind == "failed" and str(event.get("reason", "")).startswith("ack lost")):
            held.get(worker, set()).discard(event.get("delivery"))
        elif kind == "disconnected":
            held[worker] = set()
    return held


def unacked(events: list[dict], alive: set[str]) -> int:
    """Messages delivered to a live worker and not yet acked, by the workers' own account.

    What ``messages_unacknowledged`` counts, without asking the broker: a delivery is held
    from ``delivered`` until ``acked``; with ``auto`` acks it never is (the broker let go
    as it sent it). A worker whose connection dropped (``disconnected``), or whose process
    is gone (not in ``alive``), holds nothing: the broker has requeued what it had.
    """
    return sum(len(deliveries) for worker, deliveries in _held(events).items()
               if worker in alive)


def finished_unacked(events: list[dict], alive: set[str]) -> int:
    """Deliveries a live worker has finished but not yet acked: acks on their way.

    A worker writes ``finished`` before its ack leaves; a run ends on the last ``finished``.
    Stopping the worker in between makes the broker requeue a task that was done, and hand
    it to a worker not yet stopped: a redelivery, and a task cut, that nothing else caused.
    """
    finished = {(e.get("worker"), e.get("delivery")) for e in events
                if e.get("event") == "finished"}
    return sum((worker, delivery) in finished
               for worker, deliveries in _held(events).items() if worker in alive
               for delivery in deliveries)
