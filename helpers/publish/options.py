"""``PublishOptions``: how tasks are published, as one value checked once.

It travels down the publish chain whole (``producer.publish``, the pipelined publisher in
``confirms``, the blocking one, ``PacedPublisher``); each function takes it plus what varies
(the broker's URL, the queue, the tasks)::

    producer.publish(url, spec, tasks)                                   # the defaults
    producer.publish(url, spec, tasks, PublishOptions(confirms="each"))
    PacedPublisher(url, spec, tasks, PublishOptions(batch=10, pace_s=0.05)).start()

A bad value is refused in ``__post_init__`` with one sentence, wherever it comes from.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from helpers.checks import is_number, is_whole
from helpers.errors import BadInputError
from helpers.settings import CONFIRM_MODES


@dataclass(frozen=True)
class PublishOptions:
    """How tasks are published; the defaults are persistent messages, pipelined confirms."""

    #: ``pipelined`` (up to ``window`` unconfirmed at once), ``each`` (wait for every
    #: message's confirm) or ``none`` (fire and forget); see ``helpers.publish.producer``
    confirms: str = "pipelined"
    #: most unconfirmed messages in flight at once (pipelined confirms). 5,000: with 1,000,
    #: 10,000 persistent tasks took about 1.5x as long to reach the queue (``make bench``)
    window: int = 5000
    #: delivery mode 2: a durable queue keeps the message across a broker restart
    persistent: bool = True
    #: ask the broker to return a message no queue takes (reported in ``returned``)
    mandatory: bool = False
    #: seconds one connection's publishing may take before it gives up
    timeout: float = 120.0
    #: declare the queue first (False: it exists already)
    declare_queue: bool = True
    #: pipelined confirms: keep reconnecting this many seconds after a lost connection and
    #: republish whatever was not confirmed (at-least-once publishing)
    retry_for: float = 0.0
    #: the connection's name, as the management UI shows it
    name: str = "producer"
    #: ``PacedPublisher``: tasks per publish call; None: all at once, not paced
    batch: int | None = None
    #: ``PacedPublisher``: seconds between batches (after each is confirmed, or, with
    #: ``fixed_rate``, from one batch's start to the next's)
    pace_s: float = 0.05
    #: ``PacedPublisher``: batch *i* leaves at ``start_at + i * pace_s`` (tasks arriving
    #: at a steady rate), instead of a pause after each confirmed batch
    fixed_rate: bool = False
    #: pipelined confirms: called with one sentence when the broker blocks publishing (a
    #: disk or memory alarm) and with None when it unblocks
    on_blocked: Callable[[str | None], None] | None = field(default=None, compare=False)
    #: ``confirms`` ``each`` or ``none``: called after the last message went out, before the
    #: connection closes (without confirms, closing at once can lose messages)
    on_published: Callable[[], None] | None = field(default=None, compare=False)
    #: ``PacedPublisher``: ``gate(n)`` is called before batch ``n`` leaves (it may wait)
    gate: Callable[[int], None] | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.confirms not in CONFIRM_MODES:
            raise BadInputError(f"confirms must be one of {', '.join(CONFIRM_MODES)} "
                                f"(got {self.confirms!r}).")
        if not is_whole(self.window) or self.window < 1:
            raise BadInputError(f"window must be a whole number of at least 1 "
                                f"(got {self.window!r}).")
        if not (is_number(self.timeout) and 0 < self.timeout < math.inf):
            raise BadInputError(f"timeout must be a positive number of seconds "
                                f"(got {self.timeout!r}).")
        if not (is_number(self.retry_for) and self.retry_for >= 0):
            raise BadInputError(f"retry_for must be 0 or more seconds (got {self.retry_for!r}).")
        if self.batch is not None and (not is_whole(self.batch) or self.batch < 1):
            raise BadInputError(f"batch must be a whole number of at least 1, or None to "
                                f"publish all at once (got {self.batch!r}).")
        if not (is_number(self.pace_s) and 0 <= self.pace_s < math.inf):
            raise BadInputError(f"pace_s must be 0 or more seconds (got {self.pace_s!r}).")
        if self.paced and self.confirms != "pipelined":
            raise BadInputError(f"Publishing in batches needs pipelined confirms "
                                f"(got confirms={self.confirms!r}).")
        if self.fixed_rate and not self.paced:
            raise BadInputError("fixed_rate paces batches: give batch too.")

    @property
    def paced(self) -> bool:
        """True when tasks go out ``batch`` at a time over a while (a ``PacedPublisher``)."""
        return self.batch is not None

    def replace(self, **changes) -> "PublishOptions":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)
