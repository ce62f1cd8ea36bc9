"""The one place that declares, counts, purges and deletes queues.

RabbitMQ refuses to redeclare an existing queue with other arguments (406
PRECONDITION_FAILED), so producer and workers build their declarations from the same
``QueueSpec``, here: every ``queue_declare`` that creates a queue (blocking or
asynchronous) and every ``queue_delete`` of this package is in this module. Passive
declares, which only read a queue's counts, are made where the counts are read (the
monitor, the proxy's readiness check, the worker's reserve mode); the version probes
(``helpers.broker.version_facts``) declare bare queues of their own on purpose.

The default work queue is declared exactly as the official tutorial declares it:
``queue_declare("task_queue", durable=True, arguments={"x-queue-type": "quorum"})`` and
nothing else, so the tutorial's ``new_task.py`` and ``worker.py`` share it with this
project's ``new-task`` and ``worker``. Dead-lettering therefore takes no queue argument: a
policy does it (``helpers.broker.dead_letter``), through the exchange ``helpers.dead-letter`` to
which each ``<queue>.dead`` is bound with its queue's name.
"""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import asdict, dataclass

from helpers import settings
from helpers.errors import BadInputError, HelpersError, TopologyError
from helpers.settings import DEAD_LETTER_EXCHANGE, DEFAULT_QUEUE, DEFAULT_QUEUE_KIND, QUEUE_KINDS

#: Who moves a rejected message to ``<queue>.dead``: the broker, because a dead-letter policy
#: covers the queue (``broker``) or because the queue names its dead-letter exchange in its own
#: arguments (``arguments``: no policy could be set, and the queue has a delivery limit, past
#: which the broker would otherwise drop the message); or the worker (``worker``: no policy
#: could be set, so it publishes a rejected message there itself).
DEAD_LETTER_BY = ("broker", "arguments", "worker")
#: Reply codes after which declaring again cannot help (the rest, e.g. 541 while a quorum
#: queue's replica is still starting, are worth a retry).
FINAL_CODES = (403, 404, 405, 406)


@dataclass(frozen=True)
class QueueSpec:
    """What a work queue looks like.

    Parameters
    ----------
    name: the queue name.
    durable: survive a broker restart (the queue itself; messages need ``persistent``).
    kind: ``"quorum"`` (the default, as in the tutorial; always durable) or ``"classic"``.
    dead_letter: keep a ``<name>.dead`` queue for the messages a worker rejects (poison).
    dead_letter_by: ``"broker"`` (a policy dead-letters them), ``"arguments"`` (the queue's
        own ``x-dead-letter-exchange`` does) or ``"worker"`` (the worker republishes them
        there); see ``DEAD_LETTER_BY``. ``dead_letter.prepare`` picks.
    delivery_limit: quorum queues only: dead-letter (or drop) a message after this many
        redeliveries (``x-delivery-limit``; None: the broker's default).
    retry_delays: seconds a failed task waits before each retry: a queue ``<name>.retry-<i>``
        per delay whose TTL dead-letters it back here; then ``<name>.parked`` (notebook 08).
    max_priority: ``x-max-priority`` (a classic queue's priority levels; None: none).
    single_active: ``x-single-active-consumer``: one consumer at a time gets the messages.
    max_length, overflow: ``x-max-length``, ``x-overflow`` (``reject-publish``, ``drop-head``).
    """

    name: str = DEFAULT_QUEUE
    durable: bool = True
    kind: str = DEFAULT_QUEUE_KIND
    dead_letter: bool = True
    delivery_limit: int | None = None
    dead_letter_by: str = "broker"
    retry_delays: tuple = ()
    max_priority: int | None = None
    single_active: bool = False
    max_length: int | None = None
    overflow: str | None = None

    def __post_init__(self):
        if self.kind not in QUEUE_KINDS:
            raise BadInputError(f"The queue type must be one of {', '.join(QUEUE_KINDS)} "
                                f"(got {self.kind!r}).")
        object.__setattr__(self, "retry_delays", tuple(self.retry_delays))
        if not all(isinstance(d, (int, float)) and d > 0 for d in self.retry_delays):
            raise BadInputError(f"Retry delays must be seconds above 0 (got {self.retry_delays}).")

    def retry_queue(self, attempt: int) -> str:
        """The queue a task that failed ``attempt`` times (from 0) waits in."""
        return f"{self.name}.retry-{attempt + 1}"

    parked_queue = property(lambda self: f"{self.name}.parked", doc="After the last retry.")

    def side_queues(self) -> list[str]:
        """The retry queues and the parked queue (none without ``retry_delays``)."""
        return [self.retry_queue(i) for i in range(len(self.retry_delays))] + \
            [self.parked_queue] * bool(self.retry_delays)

    @property
    def dead_letter_queue(self) -> str:
        """Name of the queue that receives rejected messages."""
        return f"{self.name}.dead"

    def arguments(self) -> dict:
        """The ``x-`` arguments of ``queue_declare``: the queue type (all the tutorial's queue
        has), and those asked for; dead-lettering is a policy's (``helpers.broker.dead_letter``)."""
        args: dict = {"x-queue-type": "quorum"} if self.kind == "quorum" else {}
        if self.delivery_limit is not None:
            args["x-delivery-limit"] = self.delivery_limit
        asked = {"x-max-priority": self.max_priority, "x-max-length": self.max_length,
                 "x-overflow": self.overflow, "x-single-active-consumer": self.single_active}
        args.update({k: v for k, v in asked.items() if v not in (None, False)})
        return args

    def _retry_declarations(self) -> list[tuple[str, dict]]:
        """Retry queues (TTL, then back here by the default exchange); the parked queue."""
        back = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.name}
        out = [("queue_declare", {"queue": self.retry_queue(i), "durable": True, "arguments":
                                  {"x-message-ttl": round(delay * 1000), **back}})
               for i, delay in enumerate(self.retry_delays)]
        return out + [("queue_declare", {"queue": self.parked_queue, "durable": True,
                                         "arguments": {}})] if out else []

    def declarations(self) -> list[tuple[str, dict]]:
        """``(channel method, keyword arguments)`` in order; the work queue's comes last."""
        durable = self.durable or self.kind == "quorum"
        if not self.dead_letter:
            return self._retry_declarations() + [("queue_declare", {
                "queue": self.name, "durable": durable, "arguments": self.arguments()})]
        dead = QueueSpec(kind=self.kind, delivery_limit=self.delivery_limit)  # type and limit
        out = self._retry_declarations() + [("queue_declare", {
            "queue": self.dead_letter_queue, "durable": durable, "arguments": dead.arguments()})]
        work_arguments = self.arguments()
        if self.dead_letter_by == "arguments":
            work_arguments["x-dead-letter-exchange"] = DEAD_LETTER_EXCHANGE
        if self.dead_letter_by in ("broker", "arguments"):
            out = [("exchange_declare", {"exchange": DEAD_LETTER_EXCHANGE,
                                         "exchange_type": "direct", "durable": True}),
                   *out,
                   ("queue_bind", {"queue": self.dead_letter_queue,
                                   "exchange": DEAD_LETTER_EXCHANGE, "routing_key": self.name})]
        return out + [("queue_declare", {"queue": self.name, "durable": durable,
                                         "arguments": work_arguments})]

    def to_json(self) -> str:
        """Serialise, to hand the spec to a worker process on its command line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "QueueSpec":
        """Inverse of ``to_json``."""
        return cls(**json.loads(text))


def explain(exc: Exception, spec: QueueSpec) -> TopologyError:
    """The one-sentence error for the broker's refusal ``exc`` to declare ``spec``."""
    code = getattr(exc, "reply_code", None)
    text = getattr(exc, "reply_text", str(exc))
    if code == 406:
        detail = text.split(" - ", 1)[-1]  # the broker repeats the code name before " - "
        return TopologyError(
            f"The broker refused to declare queue '{spec.name}' (406 PRECONDITION_FAILED: "
            f"{detail}): a queue of that name already exists with other arguments; delete it "
            "or use a new queue name.")
    return TopologyError(f"The broker refused queue '{spec.name}' ({code}: {text}): check "
                         "the user's permissions and the broker's queue settings.",
                         final=code in FINAL_CODES)


def declare(channel, spec: QueueSpec) -> int:
    """Declare ``spec`` (and its dead-letter queue) on ``channel``; return the ready count.

    A refusal (e.g. a clash with an existing queue) raises ``TopologyError``; the channel
    is then closed by the broker, as AMQP requires.
    """
    import pika.exceptions as pe

    try:
        for method, kwargs in spec.declarations():
            result = getattr(channel, method)(**kwargs)
    except pe.ChannelClosedByBroker as exc:
        raise explain(exc, spec) from exc
    return result.method.message_count


def declare_async(channel, spec: QueueSpec, on_declared) -> None:
    """``declare`` on an asynchronous (``SelectConnection``) channel; then ``on_declared()``.

    A refusal closes the channel: the channel's close callback sees it (``explain`` it).
    """
    *first, (method, last) = spec.declarations()
    for name, kwargs in first:
        getattr(channel, name)(**kwargs)
    getattr(channel, method)(**last, callback=lambda _frame: on_declared())


def setup(url: str, spec: QueueSpec, purge: bool = False) -> None:
    """Declare ``spec`` on a connection of its own, and empty it when ``purge``."""
    from helpers.core.connection import connect

    with connect(url, name=f"declare {spec.name}") as conn:
        channel = conn.channel()
        declare(channel, spec)
        if purge:
            channel.queue_purge(spec.name)


def unique_spec(label: str, **options) -> QueueSpec:
    """A spec with a name no other run uses: ``wq-<label>-<8 hex digits>``."""
    return QueueSpec(f"wq-{label}-{uuid.uuid4().hex[:8]}", **options)


@contextlib.contextmanager
def scratch_queue(url: str, label: str, **options):
    """Declare a fresh, uniquely named, empty queue; delete it afterwards (even after an error)."""
    spec = unique_spec(label, **options)
    setup(url, spec, purge=True)
    try:
        yield spec
    finally:
        discard(url, spec)


def delete(channel, spec: QueueSpec | str) -> None:
    """Delete a queue (and a spec's dead-letter queue); no error if they do not exist."""
    if isinstance(spec, str):
        channel.queue_delete(queue=spec)
        return
    channel.queue_delete(queue=spec.name)
    if spec.dead_letter:
        channel.queue_delete(queue=spec.dead_letter_queue)
    for name in spec.side_queues():
        channel.queue_delete(queue=name)


def discard(url: str, *queues: QueueSpec | str) -> None:
    """Delete ``queues`` on a connection of their own; a broker that is gone is fine.

    For ``finally`` clauses: clean-up must never hide the error that got us there.
    """
    from helpers.core.connection import connect

    with contextlib.suppress(HelpersError):
        with connect(url, name="cleanup " + " ".join(getattr(q, "name", q) for q in queues)) \
                as conn:
            channel = conn.channel()
            for queue in queues:
                delete(channel, queue)


def message_count(channel, name: str) -> int:
    """Messages ready in queue ``name`` (passive declare: never creates it)."""
    return channel.queue_declare(queue=name, passive=True).method.message_count


def consumer_count(channel, name: str) -> int:
    """Consumers of queue ``name`` (passive declare: never creates it)."""
    return channel.queue_declare(queue=name, passive=True).method.consumer_count


def count(url: str, name: str) -> int | None:
    """``message_count`` on a connection of its own; None when the queue does not exist."""
    import pika.exceptions as pe

    from helpers.core.connection import connect

    with connect(url, name=f"count {name}") as conn:
        try:
            return message_count(conn.channel(), name)
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise


def count_recovered(url: str, name: str, expected: int,
                    wait_s: float = settings.RECOVERY_WAIT_S) -> int | None:
    """``count`` of a queue just after a start, polled until it reaches ``expected`` or
    ``wait_s`` runs out (a quorum queue's member answers 0 until it has recovered)."""
    deadline = time.monotonic() + wait_s
    while True:
        ready = count(url, name)
        if ready is None or ready >= expected or time.monotonic() > deadline:
            return ready
        time.sleep(0.2)


def wait_settled_declarations(declared_at: float, settle_s: float = settings.SETTLE_S) -> float:
    """Sleep until ``settle_s`` seconds after ``declared_at`` (``time.monotonic()``); return
    the seconds since ``declared_at`` (see ``settings.SETTLE_S``: before a crash)."""
    time.sleep(max(0.0, declared_at + settle_s - time.monotonic()))
    return time.monotonic() - declared_at
