"""The worker process: ``python -m helpers.worker`` consumes a work queue and reports events.

Two ways to do the work:

* ``thread`` (default, heartbeat-safe): pika's I/O loop keeps running in the main thread
  while a single work thread does the task; the ack is handed back to the I/O loop with
  ``connection.add_callback_threadsafe``, the only thread-safe call a pika connection has.
* ``blocking``: the task runs inside the delivery callback, exactly like the tutorial's
  ``worker.py``. A task longer than about three heartbeat intervals gets the connection
  closed by the broker, and the task is redelivered.

In ``thread`` mode a short task (at most ``INLINE_MAX_S``, far below any heartbeat
interval) runs in the I/O thread like ``blocking`` mode does, when the worker holds one
task at a time (prefetch 1, manual acks) and the work thread is idle: it cannot starve the
heartbeats, and it saves two thread hops per task, which is most of a short task's
overhead. The event lines of one task then leave in two writes: up to ``finished``
before the ack, ``acked`` after it.

In a terminal the worker speaks to a person, as the tutorial's ``worker.py`` does
(``helpers.worker.console``); with ``--events`` (what the pool passes) it writes one JSON
line per event on stdout (the list is in ``helpers.worker``'s docstring).
"""
from __future__ import annotations

import functools
import json
import os
import queue
import sys
import threading
import time

from helpers.core import tasks as task_bodies
from helpers.worker.console import human_line
from helpers.worker.console import preview as _preview
from helpers.worker.config import WorkerConfig
from helpers.worker import failure
from helpers.worker.reserve import DEFAULT_AFTER_S, ReserveKeeper
from helpers.worker.shutdown import GracefulStop
from helpers.settings import FAIL_KIND, INLINE_MAX_S
from helpers.core.topology import QueueSpec, declare

#: One encoder for every event line (json.dumps with options builds a new one per call).
_encode_line = json.JSONEncoder(separators=(",", ":")).encode


class Worker:
    """One consumer with its own connection; see the module docstring."""

    def __init__(self, url: str, spec: QueueSpec, name: str,
                 config: WorkerConfig = WorkerConfig(), *, reconnect: bool = True, out=None,
                 human: bool = False, note: str | None = None):
        self.url, self.spec, self.name = url, spec, name
        self.config = config
        self.prefetch, self.ack, self.mode = config.prefetch, config.ack, config.mode
        self.speed, self.unit, self.heartbeat = config.speed, config.unit, config.heartbeat
        self.hooks, self.reconnect = config.hooks(), reconnect
        self.out = out or sys.stdout
        #: lines for a person instead of JSON events; ``note``: said once, at the start
        self.human, self.note = human, note
        self._out_lock = threading.Lock()
        self._seq = 0
        self._started = 0
        self._generation = 0
        self._jobs: queue.Queue = queue.Queue()
        self._conn = None
        self._ready_generation = 0  # the generation whose connection last became ready
        #: reserve mode (``helpers.worker.reserve``)
        self.keeper = None
        if config.in_reserve_mode:
            after = DEFAULT_AFTER_S if config.reserve_after is None else config.reserve_after
            self.keeper = ReserveKeeper(self, after)
        self._broker_cancelled = False
        self.stop, self._channel = GracefulStop(self), None  # SIGTERM (helpers.worker.shutdown)

    # -- events --------------------------------------------------------------------------
    def emit(self, event: str, flush: bool = True, **fields) -> None:
        """Write one event line (thread-safe); ``flush=False``: the next event carries it."""
        fields.update(event=event, worker=self.name, t=time.time())
        if self.human:
            line = human_line(fields, self)
            if line is None:
                return
            line += "\n"
        else:
            line = _encode_line(fields) + "\n"
        self._write(line, flush)

    def _write(self, line: str, flush: bool = True) -> None:
        with self._out_lock:
            self.out.write(line)
            if flush:
                self.out.flush()

    # -- the work ------------------------------------------------------------------------
    def _do(self, delivery: str, task_id, seconds: float, kind: str) -> None:
        self._started += 1
        # A task with no work has no middle to die in: its "started" leaves with "finished".
        self.emit("started", flush=seconds > 0, delivery=delivery, task=task_id)
        if self.hooks.dies_midway(self._started, kind):
            # A poison task, or crash injection: die half-way, as a killed worker would.
            task_bodies.work(seconds / self.speed / 2, "cpu" if kind == "cpu" else "sleep")
            self._die(delivery, task_id)
        # Its "finished" line is built before the work: between the work's end and the ack
        # (where the next task's round trip starts) only the time and one write are left.
        done = None if self.human else _encode_line({"delivery": delivery, "task": task_id,
                                                     "event": "finished", "worker": self.name})
        task_bodies.work(seconds / self.speed, kind)
        self.hooks.record(task_id, self.name)  # the task's side effect is part of its work
        if done is None:
            self.emit("finished", delivery=delivery, task=task_id)
        else:
            self._write(f'{done[:-1]},"t":{time.time()!r}}}\n')
        if self.hooks.dies_before_ack(self._started):
            self._die(delivery, task_id)

    def _die(self, delivery: str, task_id) -> None:
        self.emit("crashed", delivery=delivery, task=task_id)
        os._exit(17)

    def _ack(self, channel, tag: int, delivery: str, task_id) -> None:
        try:
            channel.basic_ack(delivery_tag=tag)
            self.emit("acked", delivery=delivery, task=task_id)
        except Exception as exc:  # channel gone: the broker will redeliver the task
            self.emit("failed", delivery=delivery, task=task_id, reason=f"ack lost: {exc!r}")

    def _on_message(self, channel, method, props, body) -> None:
        self._seq += 1
        delivery = f"{self.name}:{self._seq}"
        shown = {"body": _preview(body)} if self.human else {}
        try:
            task_id, seconds, kind = task_bodies.decode(body, self.unit)
        except task_bodies.MalformedTask as exc:
            self.emit("delivered", delivery=delivery, task=props.message_id,
                      redelivered=method.redelivered, **shown)
            self.emit("failed", delivery=delivery, task=props.message_id,
                      reason=f"malformed: {exc}")
            if self.ack != "auto":  # to the dead-letter queue, never requeue poison
                self._dead_letter(channel, method, props, body, delivery)
            return
        task_id = task_id or props.message_id or delivery
        earlier = (props.headers or {}).get("x-delivery-count")  # quorum queues count them
        inline = self.mode == "blocking" or self._inline(seconds)
        self.emit("delivered", flush=not inline, delivery=delivery, task=task_id,
                  redelivered=method.redelivered, **shown,
                  **({} if earlier is None else {"delivery_count": earlier}))
        reason = self.hooks.reject_reason(earlier)
        if reason and self.ack != "auto":  # the worker's own poison guard: never run it again
            by = failure.reject_for_good(channel, self.spec, method, props, body)
            self.emit("rejected", delivery=delivery, task=task_id, reason=reason, by=by)
            return
        if kind == FAIL_KIND and self.ack == "manual":  # a task that fails: failure.settle
            return failure.fail(self, channel, method, props, body, delivery, task_id, seconds)
        job = (self._generation, channel, method.delivery_tag, delivery, task_id, seconds, kind)
        if inline:
            self._run_job(job, threadsafe=False)
        elif self.keeper is not None:
            self.keeper.offer(job)
        else:
            self._jobs.put(job)

    def _dead_letter(self, channel, method, props, body: bytes, delivery: str) -> None:
        """Send a malformed message to the dead-letter queue, and say so."""
        by = failure.reject_for_good(channel, self.spec, method, props, body)
        self.emit("dead-lettered", delivery=delivery, task=props.message_id, by=by,
                  queue=self.spec.dead_letter_queue if self.spec.dead_letter else None)

    def _run_job(self, job, threadsafe: bool) -> None:
        generation, channel, tag, delivery, task_id, seconds, kind = job
        if generation != self._generation:
            # Its connection is gone, so the broker has already requeued it.
            self.emit("abandoned", delivery=delivery, task=task_id)
            return
        # "finished" leaves before the ack: a worker SIGKILLed between an ack and its report
        # would hide a task the broker counts as done (a false loss, and a run that waits for
        # it); the other way round it is a duplicate, which at-least-once allows and we count.
        self._do(delivery, task_id, seconds, kind)
        if self.ack != "manual":
            return
        if not threadsafe:
            self._ack(channel, tag, delivery, task_id)
            return
        try:
            self._conn.add_callback_threadsafe(
                functools.partial(self._ack, channel, tag, delivery, task_id))
        except Exception as exc:
            self.emit("failed", delivery=delivery, task=task_id, reason=f"ack lost: {exc!r}")

    def _inline(self, seconds: float) -> bool:
        """True when this task may run in the I/O thread (see the module docstring)."""
        limit = INLINE_MAX_S if not self.heartbeat else min(INLINE_MAX_S, self.heartbeat / 4)
        return (self.prefetch == 1 and self.ack == "manual" and seconds / self.speed <= limit
                and self._jobs.unfinished_tasks == 0)

    def _work_loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                self._run_job(job, threadsafe=True)
            finally:
                if self.keeper is not None:
                    self.keeper.finished(job)
                self._jobs.task_done()  # the I/O thread inlines only once this is idle

    # -- the consumer --------------------------------------------------------------------
    def _consume_once(self) -> None:
        import pika.exceptions as pika_errors

        from helpers.core.connection import connect

        self._broker_cancelled = False
        self._conn = connect(self.url, name=f"worker {self.name}", heartbeat=self.heartbeat)
        channel = self._channel = self._conn.channel()
        declare(channel, self.spec)
        if self.prefetch:
            channel.basic_qos(prefetch_count=self.prefetch)
        channel.add_on_cancel_callback(self._on_cancelled)
        if self.keeper is not None:
            self.keeper.reset()
            self.keeper.consume(channel)
        else:
            channel.basic_consume(self.spec.name, self._on_message,
                                  auto_ack=self.ack == "auto")
        self._ready_generation = self._generation
        params = self._conn._impl.params  # of the broker that answered, when given several
        self.emit("ready", pid=os.getpid(), prefetch=self.prefetch, ack=self.ack,
                  mode=self.mode, speed=self.speed, generation=self._generation,
                  broker=f"{params.host}:{params.port}",
                  **({} if self.keeper is None else {"reserve_after": self.keeper.after_s}))
        if self.keeper is None:
            channel.start_consuming()
        else:  # start_consuming would return while the consumer is cancelled on purpose
            self._broker_cancelled = False
            while not (self._broker_cancelled or self.stop.requested):
                self._conn.process_data_events(time_limit=1)
        if self.stop.requested:  # SIGTERM: finish the task in hand, ack it, close
            return self.stop.finish(self._conn)
        self._conn.close()  # it returns once no consumer is left: the broker cancelled ours
        raise pika_errors.ConsumerCancelled("the broker cancelled the consumer")

    def _on_cancelled(self, _frame) -> None:
        # A broker-sent basic.cancel: the queue was deleted, or (RabbitMQ 4.3, quorum
        # queues) a delivery outlived the consumer timeout. Said once on stderr; the worker
        # then consumes again (``run``), as after a lost connection.
        self._broker_cancelled = True
        self.emit("cancelled")
        print(f"worker {self.name}: the broker cancelled its consumer on {self.spec.name} "
              "(queue deleted, or a consumer timeout); consuming again", file=sys.stderr,
              flush=True)

    def run(self) -> int:
        """Consume until killed; reconnect after a lost connection unless told not to."""
        import pika.exceptions as pe

        from helpers.errors import BrokerAuthError, BrokerConnectionError, TopologyError

        self.stop.install()
        if self.mode == "thread":
            threading.Thread(target=self._work_loop, name="work", daemon=True).start()
        if self.human and self.note:
            print(f" [*] {self.note}", file=self.out, flush=True)
        backoff = 0.1
        while True:
            try:
                self._consume_once()
                return 0
            except (TopologyError, BrokerAuthError) as exc:
                if isinstance(exc, BrokerAuthError) or exc.final:  # retrying cannot help
                    self.emit("failed", reason=str(exc))
                    print(f"error: {exc}", file=sys.stderr, flush=True)
                    return 2
                problem: Exception = exc  # e.g. a quorum queue still starting after a restart
            except (pe.AMQPError, BrokerConnectionError, OSError) as exc:
                problem = exc
            self._close_quietly()
            self._generation += 1
            self.emit("disconnected", reason=repr(problem)[:300])
            if not self.reconnect:
                return 1
            if self._ready_generation == self._generation - 1 and not self._broker_cancelled:
                # First failure since the last good connection: say so once (on stderr,
                # the events stay on stdout), and start the back-off from the bottom.
                print(f"worker {self.name}: lost the broker ({type(problem).__name__}); "
                      "reconnecting until it is back", file=sys.stderr, flush=True)
                backoff = 0.1
            time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _close_quietly(self) -> None:
        """Close a connection a refused declaration left open (the broker closed only the
        channel); one that is already gone is fine."""
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:  # noqa: BLE001 - whatever state it is in, we are leaving it
            pass

