"""What a worker does around a task besides the work: crash injection, a poison guard, effects.

Kept apart from ``helpers.worker`` so the worker still reads as the tutorial's consumer:

* crash injection (``--crash-after N --crash-at middle|before-ack``): die during the Nth
  task, half-way through it, or once it is done but before its ack has left (the window
  in which at-least-once delivery produces a duplicate);
* a poison task (a body with ``"kind": "crash"``) kills whichever worker runs it;
* the worker's own poison guard (``--max-attempts N``): a message that quorum queues say
  was delivered N times before (``x-delivery-count``) is rejected to the dead-letter queue
  instead of being run again;
* side effects (``--effects PATH``): each finished task is recorded in a SQLite file twice,
  plainly and through the deduplication store of ``helpers.worker.dedup`` (the idempotency lesson).
"""
from __future__ import annotations

from dataclasses import dataclass

from helpers.settings import POISON_KIND

#: Where crash injection kills the worker: half-way through the task, or once the task is
#: done (and its side effect recorded) but before the ack leaves.
CRASH_POINTS = ("middle", "before-ack")


@dataclass
class TaskHooks:
    """A worker's crash injection, poison guard and side-effect log (all off by default)."""

    crash_after: int = 0
    crash_at: str = "middle"
    max_attempts: int = 0
    effects: str | None = None

    def __post_init__(self):
        self._log = None

    def reject_reason(self, earlier: int | None) -> str | None:
        """Why a delivery seen ``earlier`` times before goes to the dead-letter queue, or None."""
        if self.max_attempts and (earlier or 0) >= self.max_attempts:
            return f"delivered {earlier + 1} times (--max-attempts {self.max_attempts})"
        return None

    def dies_midway(self, started: int, kind: str) -> bool:
        """True when the ``started``-th task (of ``kind``) kills the worker half-way."""
        return kind == POISON_KIND or self._due(started, "middle")

    def dies_before_ack(self, started: int) -> bool:
        """True when the worker dies after the ``started``-th task, before acking it."""
        return self._due(started, "before-ack")

    def _due(self, started: int, point: str) -> bool:
        return bool(self.crash_after) and self.crash_at == point and started >= self.crash_after

    def record(self, task_id: str, worker: str) -> None:
        """Record the task's side effect (when ``effects`` names a file)."""
        if not self.effects:
            return
        if self._log is None:
            from helpers.worker.dedup import EffectLog
            self._log = EffectLog(self.effects)
        self._log.record(task_id, worker)

    @staticmethod
    def add_arguments(parser) -> None:
        """The command-line options of the hooks, on a worker's ``argparse`` parser."""
        parser.add_argument("--crash-after", type=int, default=0, metavar="N",
                            help="crash injection: die during the Nth task, see --crash-at "
                                 "(default: 0 = never)")
        parser.add_argument("--crash-at", choices=CRASH_POINTS, default="middle",
                            help="where --crash-after dies: middle (half-way through the task) "
                                 "or before-ack (done, not yet acked) (default: middle)")
        parser.add_argument("--max-attempts", type=int, default=0, metavar="N",
                            help="dead-letter a message already delivered N times "
                                 "(x-delivery-count, quorum queues) (default: 0 = off)")
        parser.add_argument("--effects", metavar="SQLITE",
                            help="SQLite file recording each task's side effect, plainly and "
                                 "deduplicated (default: none)")

    @classmethod
    def from_args(cls, args) -> "TaskHooks":
        """The hooks asked for on the command line."""
        from helpers.errors import BadInputError

        if args.crash_after < 0 or args.max_attempts < 0:
            raise BadInputError("--crash-after and --max-attempts must be 0 (off) or more.")
        return cls(args.crash_after, args.crash_at, args.max_attempts, args.effects)
