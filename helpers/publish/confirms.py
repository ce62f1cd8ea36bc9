"""Pipelined publisher confirms: many messages in flight, the broker's acks as they come.

One ``SelectConnection`` run (``_Pipeline``) publishes while up to ``window`` messages are
unconfirmed and collects the broker's answers (often covering many messages at once, with
``multiple=True``); ``publish_pipelined`` runs it again after a lost connection, for
whatever was not confirmed, until ``retry_for`` seconds pass without progress. Called by
``producer.publish`` with ``PublishOptions(confirms="pipelined")``, the default.
"""
from __future__ import annotations

import re
import time

from helpers.core import topology
from helpers.core.connection import describe_error, explain_connect_error, refusal_is_final, url_list
from helpers.publish.options import PublishOptions
from helpers.publish.outcome import PublishResult, blocked_sentence, message_properties, watch_blocked
from helpers.settings import BLOCKED_TIMEOUT_S
from helpers.core.topology import QueueSpec

#: Messages handed to the socket in the first turn of the I/O loop; each later turn hands
#: it twice as many as the one before, up to ``PUMP_BATCH_MAX``.
PUMP_BATCH = 16
#: The most messages handed to the socket per turn of the I/O loop.
PUMP_BATCH_MAX = 4096


class _Pipeline:
    """One ``SelectConnection`` run: publish, keep ``window`` unconfirmed, collect answers."""

    def __init__(self, url: str, spec: QueueSpec, pairs: list, result: PublishResult,
                 options: PublishOptions):
        self.url, self.spec, self.pairs = url, spec, pairs
        self.result, self.options = result, options
        self.next = 0
        self.batch = PUMP_BATCH
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
        params.client_properties = {"connection_name": self.options.name}
        # Blocked by a resource alarm for this long, pika closes the connection (and we say why).
        params.blocked_connection_timeout = BLOCKED_TIMEOUT_S
        self.conn = pika.SelectConnection(params, on_open_callback=self._on_open,
                                          on_open_error_callback=self._on_open_error,
                                          on_close_callback=self._on_closed)
        watch_blocked(self.conn, self.result, self.options.on_blocked)
        self.conn.ioloop.call_later(self.options.timeout, self._give_up)
        self.conn.ioloop.start()

    def _on_open_error(self, _conn, exc) -> None:
        self.open_error = exc
        self.failed = f"could not connect: {describe_error(exc)}"
        self.conn.ioloop.stop()

    def _on_closed(self, _conn, reason) -> None:
        import pika.exceptions as pe

        if isinstance(reason, pe.ConnectionBlockedTimeout) and self.result.blocked:
            self.failed = self.failed or (
                f"Publishing gave up after {BLOCKED_TIMEOUT_S:.0f} s blocked: "
                + blocked_sentence(self.result.blocked[-1]["reason"]))
        if self.next < len(self.pairs) or self.pending:
            self.failed = self.failed or f"the connection closed: {describe_error(reason)}"
        self.conn.ioloop.stop()

    def _give_up(self) -> None:
        self.failed = self.failed or f"timed out after {self.options.timeout:.0f} s"
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
        if self.options.declare_queue:
            topology.declare_async(channel, self.spec, self._on_declared)
        else:
            self._on_declared()

    def _on_channel_closed(self, _channel, reason) -> None:
        self.channel_error = reason
        if self.next < len(self.pairs) or self.pending:
            self.failed = self.failed or f"the channel closed: {describe_error(reason)}"
        self._close()

    def _on_declared(self) -> None:
        self.declared = True
        self.channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                      callback=lambda _f: self._pump())

    def _pump(self, resumed: bool = False) -> None:
        # PUMP_BATCH messages in the first turn of the I/O loop, which writes them before it
        # calls us again: the first task reaches the broker (and a worker) at once, instead
        # of after the whole window has been encoded (20 ms for 400 tasks, all counted in
        # the makespan, which starts at the first publish). Then twice as many each turn:
        # with 16 per turn for good, 10,000 persistent messages took 1.4-2x as long to be
        # queued as with batches growing to thousands (the broker takes fewer, larger
        # reads, and confirms them after fewer fsyncs).
        if resumed:
            self.resume_pending = False
            if self.failed or not self.channel.is_open:
                return  # the channel went away in between: run() reports it
        props_for, window = self.options.persistent, self.options.window
        batch_end = self.next + self.batch
        self.batch = min(self.batch * 2, PUMP_BATCH_MAX)
        while (self.next < len(self.pairs) and len(self.pending) < window
               and self.next < batch_end):
            task_id, body, headers, priority = self.pairs[self.next]
            self.next += 1
            self.tag += 1
            self.pending[self.tag] = task_id
            if self.result.t_first is None:
                self.result.t_first = time.time()
            self.channel.basic_publish("", self.spec.name, body,
                                       message_properties(task_id, props_for, headers, priority),
                                       self.options.mandatory)
            self.result.published.append(task_id)
        if (self.next < len(self.pairs) and len(self.pending) < window
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


def publish_pipelined(url: str, spec: QueueSpec, pairs: list, result: PublishResult,
                      options: PublishOptions) -> None:
    """Publish ``pairs`` into ``result``; after a lost connection, republish what is left.

    ``url`` may list several brokers: each run uses the next one after a failed or lost
    connection, and publishing gives up only once every one has failed in a row.
    """
    urls = url_list(url)
    retry_for = options.retry_for
    deadline = time.monotonic() + retry_for
    todo = pairs
    size_error = None
    failures = 0  # in a row: every broker of the list gets its turn before we give up
    while True:
        confirmed_before = len(result.confirmed)
        run = _Pipeline(urls[failures % len(urls)], spec, todo, result, options)
        run.run()
        result.error = run.failed
        _raise_if_hopeless(run, run.url, spec)
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


def _raise_if_hopeless(run: "_Pipeline", url: str, spec: QueueSpec) -> None:
    """Raise the one-sentence error for failures that retrying cannot mend."""
    if run.open_error is not None and refusal_is_final(run.open_error):
        raise explain_connect_error(url, run.open_error) from run.open_error
    refused = getattr(run.channel_error, "reply_code", None) in (403, 405, 406)
    if refused and not run.declared:  # e.g. 406: the queue exists with other arguments
        raise topology.explain(run.channel_error, spec) from run.channel_error


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
