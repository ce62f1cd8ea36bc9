"""``WorkerConfig``: the one list of a worker's settings, written once and passed whole.

The pool turns it into command-line flags (``argv()``) for ``python -m helpers.worker``;
the worker turns its parsed flags back into one (``from_args()``). Every check of a
worker's settings is here, in ``__post_init__``, so a bad value is refused in one sentence
wherever it comes from (the CLI, a notebook's slider, a test)::

    config = WorkerConfig(prefetch=1, ack="manual")
    WorkerPool(url, spec, config)              # every worker of the pool starts with it
    config.replace(speed=2.0)                  # one worker twice as fast
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from helpers.checks import check_prefetch
from helpers.core.tasks import DOT_UNIT_S
from helpers.errors import BadInputError
from helpers.settings import ACK_MODES, FAILURE_MODES, SIGTERM_MODES, WORK_MODES
from helpers.worker.hooks import CRASH_POINTS, TaskHooks


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker consumes; the defaults are the tutorial's (prefetch 1, manual acks)."""

    #: unacknowledged deliveries the broker may hand this worker at once; 0 = no limit
    prefetch: int = 1
    #: ``manual`` (ack after the work), ``auto`` (acked on delivery) or ``never`` (forgotten)
    ack: str = "manual"
    #: ``thread`` (work off pika's thread, heartbeat-safe) or ``blocking`` (the tutorial's)
    mode: str = "thread"
    #: speed factor: 2 = a task takes half its duration
    speed: float = 1.0
    #: seconds of work per dot in the tutorial's dotted bodies
    unit: float = DOT_UNIT_S
    #: heartbeat interval to ask the broker for (s); None: the broker's
    heartbeat: int | None = None
    #: reserve mode: a second task held in reserve goes back when the first runs long
    reserve: bool = False
    #: seconds the task in hand may run before the reserve goes back (None: the default)
    reserve_after: float | None = None
    #: crash injection: die during the Nth task (0: off), at ``crash_at``
    crash_after: int = 0
    crash_at: str = "middle"
    #: dead-letter a message delivered this often before (0: off)
    max_attempts: int = 0
    #: SQLite file recording each task's side effect (the idempotency lesson)
    effects: str | None = None
    #: a failed task: ``reject`` (dead-letter), ``requeue`` (at once) or ``retry`` (later)
    on_failure: str = "reject"
    #: SIGTERM: ``graceful`` (finish, ack, close, exit 0) or ``die`` (at once, mid-task)
    on_sigterm: str = "graceful"

    def __post_init__(self):
        check_prefetch(self.prefetch)
        if self.ack not in ACK_MODES:
            raise BadInputError(f"ack must be one of {', '.join(ACK_MODES)} (got {self.ack!r}).")
        if self.mode not in WORK_MODES:
            raise BadInputError(f"mode must be one of {', '.join(WORK_MODES)} "
                                f"(got {self.mode!r}).")
        if not (isinstance(self.speed, (int, float)) and 0 < self.speed < math.inf):
            raise BadInputError(f"speed (--speed) must be above 0 (got {self.speed!r}).")
        if self.heartbeat is not None and self.heartbeat < 0:
            raise BadInputError(f"heartbeat (--heartbeat) must be 0 (off) or more seconds "
                                f"(got {self.heartbeat}).")
        if self.crash_after < 0 or self.max_attempts < 0:
            raise BadInputError("crash_after and max_attempts (--crash-after, --max-attempts) must be 0 (off) "
                                "or more.")
        if self.crash_at not in CRASH_POINTS:
            raise BadInputError(f"crash_at must be one of {', '.join(CRASH_POINTS)} "
                                f"(got {self.crash_at!r}).")
        if self.on_failure not in FAILURE_MODES or self.on_sigterm not in SIGTERM_MODES:
            raise BadInputError(f"on_failure must be one of {', '.join(FAILURE_MODES)} and "
                                f"on_sigterm one of {', '.join(SIGTERM_MODES)} (--on-failure, "
                                f"--on-sigterm; got {self.on_failure!r}, {self.on_sigterm!r}).")
        if self.reserve_after is not None and not self.reserve_after >= 0:
            raise BadInputError(f"reserve_after (--reserve-after) must be 0 or more seconds "
                                f"(got {self.reserve_after}).")
        if self.in_reserve_mode and (self.prefetch != 2 or self.ack != "manual"
                                     or self.mode != "thread"):
            raise BadInputError("Reserve mode holds one task in hand and one in reserve: it "
                                "needs prefetch 2, manual acks and thread mode (got prefetch "
                                f"{self.prefetch}, ack {self.ack}, mode {self.mode}).")

    @property
    def in_reserve_mode(self) -> bool:
        return self.reserve or self.reserve_after is not None

    def replace(self, **changes) -> "WorkerConfig":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def hooks(self) -> TaskHooks:
        """The crash injection, poison guard and side-effect log this config asks for."""
        return TaskHooks(self.crash_after, self.crash_at, self.max_attempts, self.effects)

    def argv(self) -> list[str]:
        """Flags of ``python -m helpers.worker`` for every setting that is not the default."""
        out = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value == field.default or value is None or value is False:
                continue
            flag = "--" + field.name.replace("_", "-")
            out += [flag] if value is True else [flag, str(value)]
        return out

    @classmethod
    def from_args(cls, args) -> "WorkerConfig":
        """The config of a worker's parsed command line (``helpers.worker.options``)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
