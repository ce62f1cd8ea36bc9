"""The command line of a worker: ``python -m helpers worker`` and ``python -m helpers.worker``.

Its options, checked, become a ``helpers.worker.consumer.Worker``. A person's worker (``--queue``)
sets the dead-letter policy for its queue, or learns that it must dead-letter itself, and
says which; a pool's worker gets its whole queue spec, settled, as ``--queue-spec`` JSON.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading

from helpers.core import tasks as task_bodies
from helpers.settings import ACK_MODES, FAILURE_MODES, SIGTERM_MODES, DEFAULT_QUEUE, DEFAULT_QUEUE_KIND, QUEUE_KINDS, WORK_MODES, amqp_url
from helpers.worker.hooks import TaskHooks
from helpers.core.topology import QueueSpec
from helpers.worker.config import WorkerConfig
from helpers.worker.consumer import Worker


def build_parser(prog: str = "python -m helpers.worker",
                 add_help: bool = True) -> argparse.ArgumentParser:
    """Command-line options of a worker (shared with ``python -m helpers worker``)."""
    p = argparse.ArgumentParser(prog=prog, description="Consume a work queue: say what it does, "
                                "or print its events (--events).", add_help=add_help)
    p.add_argument("--url", help="AMQP URL, or several separated by commas: the first that "
                   "answers is used (default: the broker helpers resolves)")
    p.add_argument("--queue", default=DEFAULT_QUEUE, help=f"queue name (default {DEFAULT_QUEUE})")
    p.add_argument("--queue-type", choices=QUEUE_KINDS, default=DEFAULT_QUEUE_KIND,
                   help=f"the queue's type (default {DEFAULT_QUEUE_KIND}, as in the tutorial)")
    p.add_argument("--queue-spec", help="full queue spec as JSON (overrides --queue)")
    p.add_argument("--events", action="store_true",
                   help="one JSON line per event instead of lines for a person (the pool's)")
    p.add_argument("--name", default=f"worker-{os.getpid()}", help="name shown in events")
    p.add_argument("--prefetch", type=int, default=1, help="prefetch count; 0 = unlimited")
    p.add_argument("--ack", choices=ACK_MODES, default="manual")
    p.add_argument("--mode", choices=WORK_MODES, default="thread")
    p.add_argument("--speed", type=float, default=1.0, help="2 = twice as fast")
    p.add_argument("--unit", type=float, default=task_bodies.DOT_UNIT_S,
                   help="seconds of work per dot in tutorial-style bodies")
    p.add_argument("--heartbeat", type=int, help="heartbeat interval to ask for (s)")
    p.add_argument("--reserve", action="store_true",
                   help="reserve mode: prefetch 2, the second task handed back to the queue "
                        "when the first runs long (helpers.worker.reserve)")
    p.add_argument("--reserve-after", type=float, default=None,
                   help="seconds the task in hand may run before the reserve goes back "
                        "(default 0.01; implies --reserve)")
    TaskHooks.add_arguments(p)
    p.add_argument("--on-failure", choices=FAILURE_MODES, default="reject",
                   help="a failed task: dead-letter it (reject), requeue it at once "
                        "(requeue) or send it to its retry queue (retry; the queue's delays)")
    p.add_argument("--on-sigterm", choices=SIGTERM_MODES, default="graceful",
                   help="graceful: stop consuming, finish the task in hand, ack, close, "
                        "exit 0; die: end at once, mid-task (Python's default)")
    p.add_argument("--no-reconnect", action="store_true")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="exit when stdin closes (set by the pool)")
    return p


def worker_from_args(args: argparse.Namespace) -> Worker:
    """Validate parsed options (``WorkerConfig`` checks them) and build a ``Worker``."""
    config = WorkerConfig.from_args(args)
    note = None
    if args.queue_spec:  # a pool's worker: the pool has settled the spec (dead-lettering too)
        spec = QueueSpec.from_json(args.queue_spec)
        # The pool passes AMQP_URL: no broker resolution, nor its imports (start-up time).
        url = args.url or amqp_url() or _resolved().url
    else:  # a person's worker: set the dead-letter policy, or say how it goes without
        from helpers.broker import dead_letter
        from helpers.broker.model import Broker

        resolved = None if args.url else _resolved()
        url = args.url or resolved.url
        where = resolved or Broker(url=url)
        spec = dead_letter.prepare(where, QueueSpec(args.queue, kind=args.queue_type))
        note = dead_letter.describe(spec, where)
    return Worker(url, spec, args.name, config, reconnect=not args.no_reconnect,
                  human=not args.events, note=note)


def _resolved():
    """The broker ``helpers`` resolves, running (a private node is started if need be)."""
    from helpers.broker import resolve as broker_mod

    return broker_mod.get()


def _exit_with_parent() -> None:
    """Exit as soon as stdin reaches EOF: the parent (pool, kernel) has gone away."""
    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m helpers.worker``."""
    from helpers.errors import HelpersError

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
