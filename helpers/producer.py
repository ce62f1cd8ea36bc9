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

import re
import time
from dataclasses import dataclass, field

from .connection import connect, explain_connect_error, url_list
from .errors import BadInputError
from .tasks import Task
from .topology import QueueSpec, declare

CONFIRM_MODES = ("pipelined", "each", "none")
#: Messages handed to the socket per turn of the I/O loop (pipelined mode).
PUMP_BATCH = 16


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
    #: ids the broker refused outright: bodies above its ``max_message_size``.
    refused: set[str] = field(default_factory=set)
    #: the queue published to (named in ``explain()``).
    queue: str | None = None
    #: ``(wall-clock time, "host:port")`` of each connection opened (pipelined mode): which
    #: broker of several took the messages, and when the producer moved to another.
    connections: list[tuple[float, str]] = field(default_factory=list)

    @property
    def unconfirmed(self) -> set[str]:
        """Published ids the broker never answered for (connection lost, timeout)."""
        return set(self.published) - self.confirmed - self.nacked - self.refused

    def explain(self) -> str | None:
        """One sentence on what did not go as asked (None when every message was taken)."""
        if self.error:
            return self.error
        if self.returned:
            return (f"{len(self.returned)} of {len(set(self.published))} messages were "
                    f"returned unroutable (mandatory): no queue named '{self.queue}' exists "
                    "to route them to; declare it first (declare_queue=True), then publish "
                    "them again.")
        if self.nacked:
            return (f"The broker refused (nack) {len(self.nacked)} messages; publish them "
                    "again later.")
        return None

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


def _properties(task_id: str, persistent: bool, headers: dict | None = None):
    import pika
    return pika.BasicProperties(delivery_mode=2 if persistent else 1, message_id=task_id,
                                content_type="application/json", content_encoding="utf-8",
                                headers=headers)


def _as_pairs(tasks) -> list[tuple[str, bytes, dict | None]]:
    """Normalise tasks to ``(id, body, headers)``; headers are ``None`` unless given."""
    pairs = []
    for i, task in enumerate(tasks):
        if isinstance(task, Task):
            pairs.append((task.id, task.body(), None))
        elif isinstance(task, (bytes, str)):
            body = task.encode() if isinstance(task, str) else task
            pairs.append((f"m{i + 1:05d}", body, None))
        else:  # already (id, body) or (id, body, headers), e.g. another framework's message
            task_id, body, *rest = task
            pairs.append((task_id, body, rest[0] if rest else None))
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
        self.resume_pending = False
        #: pika's exception when the connection could not open, or the broker's channel
        #: close (with reply code and text); ``declared`` tells which phase it hit.
        self.open_error: Exception | None = None
        self.channel_error: Exception | None = None
        self.declared = False

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
        self.open_error = exc
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
        self.result.connections.append((time.time(), f"{conn.params.host}:{conn.params.port}"))
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
        self.channel_error = reason
        if self.next < len(self.pairs) or self.pending:
            self.failed = self.failed or f"channel closed: {reason!r}"
        self._close()

    def _on_declared(self, _frame) -> None:
        self.declared = True
        self.channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                      callback=lambda _f: self._pump())

    def _pump(self, resumed: bool = False) -> None:
        # At most PUMP_BATCH messages per turn of the I/O loop, which writes them before it
        # calls us again: the first task reaches the broker (and a worker) at once, instead
        # of after the whole window has been encoded (20 ms for 400 tasks, all counted in
        # the makespan, which starts at the first publish).
        if resumed:
            self.resume_pending = False
            if self.failed or not self.channel.is_open:
                return  # the channel went away in between: run() reports it
        props_for = self.persistent
        batch_end = self.next + PUMP_BATCH
        while (self.next < len(self.pairs) and len(self.pending) < self.window
               and self.next < batch_end):
            task_id, body, headers = self.pairs[self.next]
            self.next += 1
            self.tag += 1
            self.pending[self.tag] = task_id
            if self.result.t_first is None:
                self.result.t_first = time.time()
            self.channel.basic_publish("", self.spec.name, body,
                                       _properties(task_id, props_for, headers), self.mandatory)
            self.result.published.append(task_id)
        if (self.next < len(self.pairs) and len(self.pending) < self.window
                and not self.resume_pending):
            self.resume_pending = True
            self.conn.ioloop.call_later(0, lambda: self._pump(resumed=True))
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
    """Publish ``tasks`` to ``spec``'s queue.

    ``tasks`` are ``Task``s, bodies, ``(id, body)`` pairs or ``(id, body, headers)`` triples
    (headers: AMQP message headers, e.g. to publish another framework's task messages).

    Parameters
    ----------
    confirms: ``pipelined`` (default), ``each`` or ``none``; see the module docstring.
    window: most unconfirmed messages in flight at once (pipelined mode).
    retry_for: with pipelined confirms, keep reconnecting for this many seconds after a
        lost connection and republish whatever was not confirmed (at-least-once publishing).
    url: one AMQP URL, or several (a list, or separated by commas): the first that answers
        takes the messages; after a lost connection the next one is tried, each in turn.
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
    result.queue = spec.name
    urls = url_list(url)
    deadline = time.monotonic() + retry_for
    todo = pairs
    size_error = None
    failures = 0  # in a row: every broker of the list gets its turn before we give up
    while True:
        confirmed_before = len(result.confirmed)
        run = _Pipeline(urls[failures % len(urls)], spec, todo, persistent, window, mandatory,
                        timeout, declare_queue, result, name)
        run.run()
        result.error = run.failed
        # A node of several that refuses the vhost may be booting: try the others.
        _raise_if_hopeless(run, run.url, spec, open_errors=len(urls) == 1)
        too_large = _too_large(run.channel_error, todo)
        if too_large:
            result.refused |= too_large
            size_error = run.channel_error
        if run.failed is None:
            break
        if len(result.confirmed) > confirmed_before:  # this run got somewhere: clock restarts
            deadline = time.monotonic() + retry_for
            failures = 0
        if not too_large:
            failures += 1
        if not too_large and time.monotonic() >= deadline and failures >= len(urls):
            if not result.published and run.open_error is not None:
                raise explain_connect_error(url, run.open_error) from run.open_error
            break
        done = result.confirmed | result.nacked | result.refused
        todo = [pair for pair in pairs if pair[0] not in done]
        if not todo:
            result.error = None
            break
        if not too_large:  # an oversized message is dropped and the rest go on at once
            result.reconnects += 1
            if failures % len(urls) == 0:  # pause once every broker of the list has failed
                time.sleep(0.2)
    if result.refused and not result.unconfirmed:
        result.error = _too_large_sentence(size_error, pairs, result.refused)
    return result


def _raise_if_hopeless(run: "_Pipeline", url: str, spec: QueueSpec,
                       open_errors: bool = True) -> None:
    """Raise the one-sentence error for failures that retrying cannot mend."""
    import pika.exceptions as pe

    from .topology import _explain

    if open_errors and isinstance(run.open_error, (pe.ProbableAuthenticationError,
                                   pe.ProbableAccessDeniedError)):
        raise explain_connect_error(url, run.open_error) from run.open_error
    if run.channel_error is not None and not run.declared:
        explained = _explain(run.channel_error, spec)  # 406: redeclared with other arguments
        if explained is not None:
            raise explained from run.channel_error


_SIZE_TEXT = re.compile(r"message size (\d+) is larger than configured max size (\d+)")


def _too_large(channel_error, pairs) -> set[str]:
    """Ids of ``pairs`` too large for the broker, when it closed the channel for that."""
    match = _SIZE_TEXT.search(getattr(channel_error, "reply_text", "") or "")
    if getattr(channel_error, "reply_code", None) != 406 or not match:
        return set()
    limit = int(match.group(2))
    return {pair[0] for pair in pairs if len(pair[1]) > limit}


def _too_large_sentence(channel_error, pairs, refused: set[str]) -> str:
    match = _SIZE_TEXT.search(getattr(channel_error, "reply_text", "") or "")
    limit = f"{int(match.group(2)) / 2**20:.1f} MiB" if match else "its limit"
    biggest = max(len(pair[1]) for pair in pairs if pair[0] in refused)
    names = ", ".join(sorted(refused)[:3]) + (" ..." if len(refused) > 3 else "")
    return (f"The broker refused {len(refused)} message(s) ({names}; the largest "
            f"{biggest / 2**20:.1f} MiB) because they exceed its max_message_size of {limit}: "
            "split the work into smaller messages or raise the limit; the other messages "
            "were published.")


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
        for task_id, body, headers in pairs:
            result.published.append(task_id)
            try:
                channel.basic_publish("", spec.name, body,
                                      _properties(task_id, persistent, headers),
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
