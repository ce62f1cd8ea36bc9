"""Publish tasks: persistent by default, with publisher confirms kept in flight together.

Three ways to publish, measured against each other in the benchmarks:

* ``confirms="pipelined"`` (default): up to ``window`` messages are unconfirmed at once; the
  broker's acks (often covering many messages with ``multiple=True``) come back while we
  keep publishing. This is pika's asynchronous ``SelectConnection``.
* ``confirms="each"``: the tutorial-style ``BlockingChannel`` in confirm mode, which waits
  for the broker's answer to every message before sending the next.
* ``confirms="none"``: fire and forget; nothing tells you what the broker kept.

A message is *confirmed* once the broker has taken responsibility for it (for persistent
messages on durable queues: written to disk). Returned messages (``mandatory`` and no
queue to route to) are confirmed too, so they are reported apart.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .broker import connect, mask_url
from .errors import BadInputError, BrokerConnectionError
from .tasks import Task
from .topology import QueueSpec, declare

CONFIRM_MODES = ("pipelined", "each", "none")


@dataclass
class PublishResult:
    """Which task ids the broker confirmed, refused (nack) or returned, and timings."""

    published: list[str] = field(default_factory=list)
    confirmed: set[str] = field(default_factory=set)
    nacked: set[str] = field(default_factory=set)
    returned: set[str] = field(default_factory=set)
    t_first: float | None = None
    t_last: float | None = None
    reconnects: int = 0
    error: str | None = None

    @property
    def unconfirmed(self) -> set[str]:
        """Published ids the broker never answered for (connection lost, timeout)."""
        return set(self.published) - self.confirmed - self.nacked

    @property
    def elapsed_s(self) -> float:
        return (self.t_last or 0) - (self.t_first or 0)

    @property
    def rate(self) -> float:
        """Messages per second, first publish to last confirm."""
        return len(self.published) / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    def summary(self) -> dict:
        return {"published": len(set(self.published)), "confirmed": len(self.confirmed),
                "nacked": len(self.nacked), "returned": len(self.returned),
                "unconfirmed": len(self.unconfirmed), "elapsed_s": round(self.elapsed_s, 4),
                "per_s": round(self.rate, 1), "reconnects": self.reconnects}


def _properties(task_id: str, persistent: bool):
    import pika
    return pika.BasicProperties(delivery_mode=2 if persistent else 1, message_id=task_id,
                                content_type="application/json")


def _as_pairs(tasks) -> list[tuple[str, bytes]]:
    pairs = []
    for i, task in enumerate(tasks):
        if isinstance(task, Task):
            pairs.append((task.id, task.body()))
        elif isinstance(task, (bytes, str)):
            body = task.encode() if isinstance(task, str) else task
            pairs.append((f"m{i + 1:05d}", body))
        else:
            pairs.append(task)  # already (id, body)
    if not pairs:
        raise BadInputError("There are no tasks to publish.")
    return pairs


class _Pipeline:
    """One ``SelectConnection`` run: publish, keep ``window`` unconfirmed, collect answers."""

    def __init__(self, url, spec, pairs, persistent, window, mandatory, timeout, declare_queue,
                 result: PublishResult, name):
        self.url, self.spec, self.pairs = url, spec, pairs
        self.persistent, self.window, self.mandatory = persistent, window, mandatory
        self.timeout, self.declare_queue, self.result, self.name = (
            timeout, declare_queue, result, name)
        self.next = 0
        self.tag = 0
        self.pending: dict[int, str] = {}
        self.conn = None
        self.channel = None
        self.failed: str | None = None

    def run(self) -> None:
        import pika

        params = pika.URLParameters(self.url)
        params.client_properties = {"connection_name": self.name}
        self.conn = pika.SelectConnection(params, on_open_callback=self._on_open,
                                          on_open_error_callback=self._on_open_error,
                                          on_close_callback=self._on_closed)
        self.conn.ioloop.call_later(self.timeout, self._give_up)
        self.conn.ioloop.start()

    def _on_open_error(self, _conn, exc) -> None:
        self.failed = f"could not connect: {exc!r}"
        self.conn.ioloop.stop()

    def _on_closed(self, _conn, reason) -> None:
        if self.next < len(self.pairs) or self.pending:
            self.failed = self.failed or f"connection closed: {reason!r}"
        self.conn.ioloop.stop()

    def _give_up(self) -> None:
        self.failed = self.failed or f"timed out after {self.timeout:.0f} s"
        self._close()

    def _close(self) -> None:
        if self.conn.is_open:
            self.conn.close()
        elif not self.conn.is_closing:
            self.conn.ioloop.stop()

    def _on_open(self, conn) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel) -> None:
        self.channel = channel
        channel.add_on_return_callback(self._on_return)
        channel.add_on_close_callback(self._on_channel_closed)
        if self.declare_queue:
            durable = self.spec.durable or self.spec.kind == "quorum"
            if self.spec.dead_letter:
                channel.queue_declare(self.spec.dead_letter_queue, durable=durable)
            channel.queue_declare(self.spec.name, durable=durable,
                                  arguments=self.spec.arguments(), callback=self._on_declared)
        else:
            self._on_declared(None)

    def _on_channel_closed(self, _channel, reason) -> None:
        if self.next < len(self.pairs) or self.pending:
            self.failed = self.failed or f"channel closed: {reason!r}"
        self._close()

    def _on_declared(self, _frame) -> None:
        self.channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                      callback=lambda _f: self._pump())

    def _pump(self) -> None:
        props_for = self.persistent
        while self.next < len(self.pairs) and len(self.pending) < self.window:
            task_id, body = self.pairs[self.next]
            self.next += 1
            self.tag += 1
            self.pending[self.tag] = task_id
            if self.result.t_first is None:
                self.result.t_first = time.time()
            self.channel.basic_publish("", self.spec.name, body,
                                       _properties(task_id, props_for), self.mandatory)
            self.result.published.append(task_id)
        if self.next >= len(self.pairs) and not self.pending:
            self.result.t_last = time.time()
            self._close()

    def _on_confirm(self, frame) -> None:
        method = frame.method
        acked = method.NAME == "Basic.Ack"
        tags = ([t for t in self.pending if t <= method.delivery_tag] if method.multiple
                else [method.delivery_tag])
        target = self.result.confirmed if acked else self.result.nacked
        for tag in tags:
            task_id = self.pending.pop(tag, None)
            if task_id is not None:
                target.add(task_id)
        self._pump()

    def _on_return(self, _channel, _method, props, _body) -> None:
        self.result.returned.add(props.message_id)


def publish(url: str, spec: QueueSpec, tasks, *, persistent: bool = True,
            confirms: str = "pipelined", window: int = 1000, mandatory: bool = False,
            timeout: float = 120, declare_queue: bool = True, retry_for: float = 0.0,
            name: str = "producer") -> PublishResult:
    """Publish ``tasks`` (``Task``s, bodies, or ``(id, body)`` pairs) to ``spec``'s queue.

    Parameters
    ----------
    confirms: ``pipelined`` (default), ``each`` or ``none``; see the module docstring.
    window: most unconfirmed messages in flight at once (pipelined mode).
    retry_for: with pipelined confirms, keep reconnecting for this many seconds after a
        lost connection and republish whatever was not confirmed (at-least-once publishing).
    """
    if confirms not in CONFIRM_MODES:
        raise BadInputError(f"confirms must be one of {', '.join(CONFIRM_MODES)} "
                            f"(got {confirms!r}).")
    pairs = _as_pairs(tasks)
    result = PublishResult()
    if confirms != "pipelined":
        _publish_blocking(url, spec, pairs, persistent, confirms == "each", mandatory,
                          declare_queue, result, name)
        return result
    deadline = time.monotonic() + retry_for
    todo = pairs
    while True:
        run = _Pipeline(url, spec, todo, persistent, window, mandatory, timeout, declare_queue,
                        result, name)
        run.run()
        result.error = run.failed
        if run.failed is None:
            return result
        if time.monotonic() >= deadline:
            if not result.published and "could not connect" in run.failed:
                raise BrokerConnectionError(f"Could not publish to {mask_url(url)}: "
                                            f"{run.failed}")
            return result
        done = result.confirmed | result.nacked
        todo = [(tid, body) for tid, body in pairs if tid not in done]
        result.reconnects += 1
        time.sleep(0.2)


def _publish_blocking(url, spec, pairs, persistent, confirm, mandatory, declare_queue,
                      result: PublishResult, name) -> None:
    import pika.exceptions as pe

    conn = connect(url, name=name)
    try:
        channel = conn.channel()
        if declare_queue:
            declare(channel, spec)
        if confirm:
            channel.confirm_delivery()
        result.t_first = time.time()
        for task_id, body in pairs:
            result.published.append(task_id)
            try:
                channel.basic_publish("", spec.name, body, _properties(task_id, persistent),
                                      mandatory=mandatory)
            except pe.UnroutableError:
                result.returned.add(task_id)
                result.confirmed.add(task_id)
                continue
            except pe.NackError:
                result.nacked.add(task_id)
                continue
            if confirm:
                result.confirmed.add(task_id)
        result.t_last = time.time()
    finally:
        if conn.is_open:
            conn.close()
