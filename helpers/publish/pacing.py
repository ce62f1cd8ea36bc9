"""The paced publisher: tasks published a batch at a time, in a thread, over a while.

Two paces, one class:

* ``fixed_rate=True``: batch *i* leaves at ``start_at + i * pace_s`` (tasks *arriving* at
  a steady rate, faster or slower than the workers take them: the backlog lesson);
* ``fixed_rate=False``: a pause of ``pace_s`` after each batch is confirmed, so publishing
  is still under way when something breaks (the broker-down faults); with ``retry_for`` a
  batch whose connection was lost is published again on a new one until confirmed.

Every batch is published with pipelined confirms; a nacked message is published again. The
merged ``PublishResult`` is ``result``; ``confirmed_t`` says when each task was confirmed.
"""
from __future__ import annotations

import threading
import time

from helpers.publish import producer
from helpers.publish.outcome import PublishResult
from helpers.core.connection import first_to
from helpers.errors import BadInputError, HelpersError
from helpers.publish.options import PublishOptions
from helpers.core.topology import QueueSpec


#: Pause before a nacked message is published again (seconds).
NACK_PAUSE_S = 0.2


class PacedPublisher(threading.Thread):
    """Publish ``tasks`` ``options.batch`` at a time, at the pace the module docstring
    describes (``options``: a paced ``PublishOptions``, e.g. ``PublishOptions(batch=10)``)."""

    def __init__(self, url: str, spec: QueueSpec, tasks: list, options: PublishOptions):
        super().__init__(name="paced-publisher", daemon=True)
        if not options.paced:
            raise BadInputError("A paced publisher publishes in batches: give the options a "
                                "batch (e.g. PublishOptions(batch=1)).")
        self.url, self.spec, self.tasks = url, spec, list(tasks)
        #: every batch goes out with these (onto the queue declared already)
        self.options = options.replace(declare_queue=False, name=f"producer {spec.name}")
        #: with ``options.fixed_rate``: when batch 0 leaves (None: when ``run`` starts)
        self.start_at: float | None = None
        self.result = PublishResult(queue=spec.name)
        #: task id -> wall-clock time its batch was confirmed
        self.confirmed_t: dict[str, float] = {}
        #: nacks received in all (a message nacked twice counts twice)
        self.nacks = 0
        #: why publishing stopped before the last task, in one sentence (None: it did not)
        self.error: str | None = None
        #: set once the first batch has been answered (or publishing gave up)
        self.started = threading.Event()
        self._halt = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish nothing more; wait up to ``timeout`` s for a batch under way."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

    def _wait_turn(self, n: int) -> bool:
        """Wait for batch ``n``'s turn; False when stopped meanwhile."""
        pace_s = self.options.pace_s
        if self.options.fixed_rate:
            start = self.start_at if self.start_at is not None else time.time()
            self.start_at = start
            return not self._halt.wait(max(0.0, start + n * pace_s - time.time()))
        return not self._halt.wait(pace_s) if n else not self._halt.is_set()

    def run(self) -> None:
        try:
            batch, gate = self.options.batch, self.options.gate
            for n, i in enumerate(range(0, len(self.tasks), batch)):
                if not self._wait_turn(n):
                    return
                if gate is not None:
                    gate(n)
                todo = self.tasks[i:i + batch]
                while todo:  # a nacked message is republished like an unconfirmed one
                    # Of several brokers, start where the last batch went (not a dead one).
                    urls = (first_to(self.url, self.result.connections[-1][1])
                            if self.result.connections else self.url)
                    part = producer.publish(urls, self.spec, todo, self.options)
                    self._merge(part)
                    if part.unconfirmed:
                        self.error = part.error or "messages left unconfirmed"
                        return
                    todo = [t for t in todo if t.id in part.nacked]
                    # A queue that cannot take messages (a quorum queue without a majority,
                    # on RabbitMQ 3.10) nacks at once: pause instead of spinning.
                    if todo and self._halt.wait(NACK_PAUSE_S):
                        return
        except HelpersError as exc:
            self.error = str(exc)
        finally:
            self.started.set()

    def _merge(self, part: PublishResult) -> None:
        now = time.time()
        r = self.result
        r.published += part.published
        r.confirmed |= part.confirmed
        r.nacked = (r.nacked | part.nacked) - r.confirmed
        r.reconnects += part.reconnects
        r.connections += part.connections
        self.nacks += len(part.nacked)
        r.blocked += part.blocked
        if r.t_first is None:
            r.t_first = part.t_first
        r.t_last = part.t_last or now
        for task_id in part.confirmed:
            self.confirmed_t.setdefault(task_id, now)
        self.started.set()
