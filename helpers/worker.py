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

Every event is one JSON line on stdout: ``ready``, ``delivered`` (with ``redelivered``),
``started``, ``finished``, ``acked``, ``failed``, ``crashed`` (crash injection: it dies
half-way), ``abandoned`` (a task whose connection went away before the work started: the
broker has requeued it), ``disconnected``. Each line carries the
worker name, the wall-clock time ``t`` and, for deliveries, a ``delivery`` key unique in
this process, so a parent can rebuild one row per delivery.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import sys
import threading
import time

from . import tasks as task_bodies
from .settings import ACK_MODES, DEFAULT_QUEUE, INLINE_MAX_S, WORK_MODES, amqp_url
from .topology import QueueSpec, declare

#: One encoder for every event line (json.dumps with options builds a new one per call).
_encode_line = json.JSONEncoder(separators=(",", ":")).encode


class Worker:
    """One consumer with its own connection; see the module docstring."""

    def __init__(self, url: str, spec: QueueSpec, name: str, prefetch: int = 1,
                 ack: str = "manual", mode: str = "thread", speed: float = 1.0,
                 unit: float = task_bodies.DOT_UNIT_S, heartbeat: int | None = None,
                 crash_after: int = 0, reconnect: bool = True, out=None):
        self.url, self.spec, self.name = url, spec, name
        self.prefetch, self.ack, self.mode = prefetch, ack, mode
        self.speed, self.unit, self.heartbeat = speed, unit, heartbeat
        self.crash_after, self.reconnect = crash_after, reconnect
        self.out = out or sys.stdout
        self._out_lock = threading.Lock()
        self._seq = 0
        self._started = 0
        self._generation = 0
        self._jobs: queue.Queue = queue.Queue()
        self._conn = None
        self._ready_generation = 0  # the generation whose connection last became ready

    # -- events --------------------------------------------------------------------------
    def emit(self, event: str, flush: bool = True, **fields) -> None:
        """Write one event line (thread-safe); ``flush=False``: the next event carries it."""
        fields.update(event=event, worker=self.name, t=time.time())
        line = _encode_line(fields) + "\n"
        with self._out_lock:
            self.out.write(line)
            if flush:
                self.out.flush()

    # -- the work ------------------------------------------------------------------------
    def _do(self, delivery: str, task_id, seconds: float, kind: str) -> None:
        self._started += 1
        # A task with no work has no middle to die in: its "started" leaves with "finished".
        self.emit("started", flush=seconds > 0, delivery=delivery, task=task_id)
        if self.crash_after and self._started >= self.crash_after:
            # Crash injection: die half-way through this task, as a killed worker would.
            task_bodies.work(seconds / self.speed / 2, kind)
            self.emit("crashed", delivery=delivery, task=task_id)
            os._exit(17)
        task_bodies.work(seconds / self.speed, kind)
        self.emit("finished", delivery=delivery, task=task_id)

    def _ack(self, channel, tag: int, delivery: str, task_id) -> None:
        try:
            channel.basic_ack(delivery_tag=tag)
            self.emit("acked", delivery=delivery, task=task_id)
        except Exception as exc:  # channel gone: the broker will redeliver the task
            self.emit("failed", delivery=delivery, task=task_id, reason=f"ack lost: {exc!r}")

    def _on_message(self, channel, method, props, body) -> None:
        self._seq += 1
        delivery = f"{self.name}:{self._seq}"
        try:
            task_id, seconds, kind = task_bodies.decode(body, self.unit)
        except task_bodies.MalformedTask as exc:
            self.emit("delivered", delivery=delivery, task=props.message_id,
                      redelivered=method.redelivered)
            self.emit("failed", delivery=delivery, task=props.message_id,
                      reason=f"malformed: {exc}")
            if self.ack != "auto":  # reject to the dead-letter queue, never requeue poison
                channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
            return
        task_id = task_id or props.message_id or delivery
        inline = self.mode == "blocking" or self._inline(seconds)
        self.emit("delivered", flush=not inline, delivery=delivery, task=task_id,
                  redelivered=method.redelivered)
        job = (self._generation, channel, method.delivery_tag, delivery, task_id, seconds, kind)
        if inline:
            self._run_job(job, threadsafe=False)
        else:
            self._jobs.put(job)

    def _run_job(self, job, threadsafe: bool) -> None:
        generation, channel, tag, delivery, task_id, seconds, kind = job
        if generation != self._generation:
            # Its connection is gone, so the broker has already requeued it.
            self.emit("abandoned", delivery=delivery, task=task_id)
            return
        # "finished" always leaves before the ack: a worker SIGKILLed between an ack and its
        # report would hide a task the broker counts as done (a false loss in the figures);
        # the other way round it is a duplicate, which at-least-once allows and we count.
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
                self._jobs.task_done()  # the I/O thread inlines only once this is idle

    # -- the consumer --------------------------------------------------------------------
    def _consume_once(self) -> None:
        from .connection import connect

        self._conn = connect(self.url, name=f"worker {self.name}", heartbeat=self.heartbeat)
        channel = self._conn.channel()
        declare(channel, self.spec)
        if self.prefetch:
            channel.basic_qos(prefetch_count=self.prefetch)
        channel.basic_consume(self.spec.name, self._on_message, auto_ack=self.ack == "auto")
        self._ready_generation = self._generation
        params = self._conn._impl.params  # of the broker that answered, when given several
        self.emit("ready", pid=os.getpid(), prefetch=self.prefetch, ack=self.ack,
                  mode=self.mode, speed=self.speed, generation=self._generation,
                  broker=f"{params.host}:{params.port}")
        channel.start_consuming()

    def run(self) -> int:
        """Consume until killed; reconnect after a lost connection unless told not to."""
        import pika.exceptions as pe

        from .errors import BrokerAuthError, BrokerConnectionError, TopologyError

        if self.mode == "thread":
            threading.Thread(target=self._work_loop, name="work", daemon=True).start()
        backoff = 0.1
        while True:
            try:
                self._consume_once()
                return 0
            except (TopologyError, BrokerAuthError) as exc:  # retrying cannot help
                self.emit("failed", reason=str(exc))
                print(f"error: {exc}", file=sys.stderr, flush=True)
                return 2
            except (pe.AMQPError, BrokerConnectionError, OSError) as exc:
                self._generation += 1
                self.emit("disconnected", reason=repr(exc)[:300])
                if not self.reconnect:
                    return 1
                if self._ready_generation == self._generation - 1:
                    # First failure since the last good connection: say so once (on stderr,
                    # the events stay on stdout), and start the back-off from the bottom.
                    print(f"worker {self.name}: lost the broker ({type(exc).__name__}); "
                          "reconnecting until it is back", file=sys.stderr, flush=True)
                    backoff = 0.1
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)


def _exit_with_parent() -> None:
    """Exit as soon as stdin reaches EOF: the parent (pool, kernel) has gone away."""
    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def build_parser(prog: str = "python -m helpers.worker",
                 add_help: bool = True) -> argparse.ArgumentParser:
    """Command-line options of a worker (shared with ``python -m helpers worker``)."""
    p = argparse.ArgumentParser(prog=prog, description="Consume a work queue and print events.",
                                add_help=add_help)
    p.add_argument("--url", help="AMQP URL, or several separated by commas: the first that "
                   "answers is used (default: AMQP_URL, else the broker helpers resolves)")
    p.add_argument("--queue", default=DEFAULT_QUEUE, help=f"queue name (default {DEFAULT_QUEUE})")
    p.add_argument("--queue-spec", help="full queue spec as JSON (overrides --queue)")
    p.add_argument("--name", default=f"worker-{os.getpid()}", help="name shown in events")
    p.add_argument("--prefetch", type=int, default=1, help="prefetch count; 0 = unlimited")
    p.add_argument("--ack", choices=ACK_MODES, default="manual")
    p.add_argument("--mode", choices=WORK_MODES, default="thread")
    p.add_argument("--speed", type=float, default=1.0, help="2 = twice as fast")
    p.add_argument("--unit", type=float, default=task_bodies.DOT_UNIT_S,
                   help="seconds of work per dot in tutorial-style bodies")
    p.add_argument("--heartbeat", type=int, help="heartbeat interval to ask for (s)")
    p.add_argument("--crash-after", type=int, default=0,
                   help="crash half-way through the Nth task (crash injection)")
    p.add_argument("--no-reconnect", action="store_true")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="exit when stdin closes (set by the pool)")
    return p


def worker_from_args(args: argparse.Namespace) -> Worker:
    """Validate parsed options and build a ``Worker``."""
    from .errors import BadInputError

    if args.prefetch < 0:
        raise BadInputError(f"--prefetch must be 0 (unlimited) or more (got {args.prefetch}).")
    if not args.speed > 0:  # also refuses nan
        raise BadInputError(f"--speed must be above 0 (got {args.speed}).")
    if args.heartbeat is not None and args.heartbeat < 0:
        raise BadInputError(f"--heartbeat must be 0 (off) or more seconds (got {args.heartbeat}).")
    spec = QueueSpec.from_json(args.queue_spec) if args.queue_spec else QueueSpec(args.queue)
    # AMQP_URL may list several brokers (the pool's workers get the cluster's nodes so).
    url = args.url or amqp_url()
    if not url:
        from . import broker
        url = broker.get().url
    return Worker(url, spec, args.name, prefetch=args.prefetch, ack=args.ack, mode=args.mode,
                  speed=args.speed, unit=args.unit, heartbeat=args.heartbeat,
                  crash_after=args.crash_after, reconnect=not args.no_reconnect)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m helpers.worker``."""
    from .errors import HelpersError

    args = build_parser().parse_args(argv)
    if args.exit_with_parent:
        _exit_with_parent()
    try:
        worker = worker_from_args(args)
    except HelpersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        code = worker.run()
    except KeyboardInterrupt:
        code = 0
    if args.exit_with_parent:
        # The stdin watcher thread is blocked in a read; a normal interpreter exit would
        # trip over its buffered stdin lock, so leave directly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
