"""Reserve mode: hold one task in reserve, and hand it back when the task in hand runs long.

At prefetch 1 a worker that acks a task waits one round trip (ack to broker, next delivery
back) before it can start the next: with 5 ms tasks and a 1 ms round trip that is a sixth
of its time. At prefetch 2 the next task is already here when the current one ends, but a
task stuck behind a long one waits for it while another worker may sit idle: the unfair
dispatch prefetch 1 exists to prevent.

Reserve mode takes both: the worker consumes at prefetch 2, so a second task (the
*reserve*) arrives while the first (*in hand*) runs. When the task in hand is still running
``after_s`` seconds after it started, and the queue holds no other task ready (while it
does, no worker is short of work, and handing back would only cost; the worker looks again
every ``after_s``), the worker cancels its consumer (so the broker sends it nothing more)
and hands the reserve back with ``basic.reject(requeue=True)``: another worker takes it.
When the long task ends and is acked, the worker consumes again.
Short tasks never wait a round trip; long ones never trap a neighbour for more than
``after_s``.

What it costs: each handed-back task is delivered again, flagged ``redelivered``, and on a
quorum queue its ``x-delivery-count`` grows by one (RabbitMQ 4.x dead-letters or drops a
message past the queue's delivery limit, 20 by default: a task handed back that often would
be lost to its queue); and the worker, once it handed a task back, waits for its next one
after the long task as a prefetch-1 worker does (one round trip, plus the consume).

The worker's I/O thread calls ``offer`` with each delivery and runs the timer; its work
thread calls ``finished`` after each task. Both take ``lock``.
"""
from __future__ import annotations

import threading
import time

#: Seconds the task in hand may run before the reserve goes back (``--reserve-after``).
DEFAULT_AFTER_S = 0.01


class ReserveKeeper:
    """The state of reserve mode for one worker (see the module docstring)."""

    def __init__(self, worker, after_s: float = DEFAULT_AFTER_S):
        self.worker, self.after_s = worker, after_s
        self.lock = threading.Lock()
        self.in_hand = None  # the job the work thread runs (or is about to)
        self.started = 0.0  # when it was handed to the work thread (monotonic)
        self.reserve = None  # the job held back, not started
        self.paused = False  # the consumer is cancelled until the task in hand ends
        self.channel = None
        self.consumer_tag = None
        self.handed_back = 0

    def consume(self, channel) -> None:
        """(Re)start consuming on ``channel`` (I/O thread)."""
        self.channel = channel
        self.consumer_tag = channel.basic_consume(self.worker.spec.name,
                                                  self.worker._on_message)
        self.paused = False

    def reset(self) -> None:
        """Forget held jobs: their connection is gone and the broker requeued them."""
        with self.lock:
            self.in_hand = self.reserve = None
            self.paused = False

    def offer(self, job) -> None:
        """A delivery arrived (I/O thread): run it now, or hold it as the reserve."""
        with self.lock:
            if self.in_hand is None:
                self._hand_over(job)
                return
            if self.reserve is not None:
                # A third delivery at prefetch 2: the broker has the ack of the task in hand,
                # whose work thread has not called ``finished`` yet. Its reserve goes next.
                reserve, self.reserve = self.reserve, None
                self._hand_over(reserve)
            self.reserve = job
            in_hand = self.in_hand
            delay = max(0.0, self.started + self.after_s - time.monotonic())
        self.worker._conn.call_later(delay, lambda: self._check(in_hand))

    def _hand_over(self, job) -> None:  # with the lock held
        self.in_hand, self.started = job, time.monotonic()
        self.worker._jobs.put(job)

    def _check(self, in_hand) -> None:
        """The timer (I/O thread): is ``in_hand`` still running with a reserve behind it?"""
        with self.lock:
            if self.in_hand is not in_hand or self.reserve is None or self.paused:
                return
        if self._backlog() > 0:  # nobody is short of work yet: keep it, look again later
            self.worker._conn.call_later(self.after_s, lambda: self._check(in_hand))
            return
        with self.lock:
            if self.in_hand is not in_hand or self.reserve is None or self.paused:
                return
            job, self.reserve = self.reserve, None
            self.paused = True
        _generation, channel, tag, delivery, task_id, _seconds, _kind = job
        try:
            channel.basic_cancel(self.consumer_tag)
            channel.basic_reject(delivery_tag=tag, requeue=True)
        except Exception as exc:  # noqa: BLE001 - the connection went: the broker requeues it
            self.worker.emit("failed", delivery=delivery, task=task_id,
                             reason=f"hand back lost: {exc!r}")
            return
        self.handed_back += 1
        self.worker.emit("handed-back", delivery=delivery, task=task_id,
                         after_s=round(time.monotonic() - self.started, 4))

    def _backlog(self) -> int:
        """Messages ready in the queue (a passive declare; 0 when it cannot tell)."""
        try:
            return self.channel.queue_declare(self.worker.spec.name,
                                              passive=True).method.message_count
        except Exception:  # noqa: BLE001 - a lost channel: the run loop notices
            return 0

    def finished(self, job) -> None:
        """The work thread is done with ``job`` (its ack is on its way): start the next."""
        with self.lock:
            if self.in_hand is not job:
                return
            self.in_hand = None
            if self.reserve is not None:
                reserve, self.reserve = self.reserve, None
                self._hand_over(reserve)
                return
            if not self.paused:
                return
        # After the ack (queued first, on the same I/O loop): consume again.
        self.worker._conn.add_callback_threadsafe(self._resume)

    def _resume(self) -> None:
        with self.lock:
            if not self.paused or self.in_hand is not None:
                return
        try:
            self.consume(self.channel)
        except Exception as exc:  # noqa: BLE001 - the run loop sees the lost connection
            self.worker.emit("failed", reason=f"consume again lost: {exc!r}")
