"""The one place that declares, counts, purges and deletes queues.

RabbitMQ refuses to redeclare an existing queue with other arguments (406
PRECONDITION_FAILED), so producer and workers build their declarations from the same
``QueueSpec``, here: every ``queue_declare`` of this package (blocking or asynchronous,
active or passive) and every ``queue_delete`` is in this module.
"""
from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import asdict, dataclass

from .errors import HelpersError, TopologyError
from .settings import DEFAULT_QUEUE


@dataclass(frozen=True)
class QueueSpec:
    """What a work queue looks like.

    Parameters
    ----------
    name: the queue name.
    durable: survive a broker restart (the queue itself; messages need ``persistent``).
    kind: ``"classic"`` or ``"quorum"`` (quorum queues are always durable).
    dead_letter: reject poison messages into ``<name>.dead`` instead of dropping them.
    """

    name: str = DEFAULT_QUEUE
    durable: bool = True
    kind: str = "classic"
    dead_letter: bool = True

    @property
    def dead_letter_queue(self) -> str:
        """Name of the queue that receives rejected messages."""
        return f"{self.name}.dead"

    def arguments(self) -> dict:
        """The ``x-`` arguments sent with ``queue_declare``."""
        args: dict = {}
        if self.kind == "quorum":
            args["x-queue-type"] = "quorum"
        if self.dead_letter:
            args["x-dead-letter-exchange"] = ""
            args["x-dead-letter-routing-key"] = self.dead_letter_queue
        return args

    def declarations(self) -> list[dict]:
        """The ``queue_declare`` keyword arguments, dead-letter queue first."""
        durable = self.durable or self.kind == "quorum"
        out = [{"queue": self.dead_letter_queue, "durable": durable}] if self.dead_letter else []
        return out + [{"queue": self.name, "durable": durable, "arguments": self.arguments()}]

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
                         "the user's permissions and the broker's queue settings.")


def declare(channel, spec: QueueSpec) -> int:
    """Declare ``spec`` (and its dead-letter queue) on ``channel``; return the ready count.

    A refusal (e.g. a clash with an existing queue) raises ``TopologyError``; the channel
    is then closed by the broker, as AMQP requires.
    """
    import pika.exceptions as pe

    try:
        for kwargs in spec.declarations():
            result = channel.queue_declare(**kwargs)
    except pe.ChannelClosedByBroker as exc:
        raise explain(exc, spec) from exc
    return result.method.message_count


def declare_async(channel, spec: QueueSpec, on_declared) -> None:
    """``declare`` on an asynchronous (``SelectConnection``) channel; then ``on_declared()``.

    A refusal closes the channel: the channel's close callback sees it (``explain`` it).
    """
    *first, last = spec.declarations()
    for kwargs in first:
        channel.queue_declare(**kwargs)
    channel.queue_declare(**last, callback=lambda _frame: on_declared())


def setup(url: str, spec: QueueSpec, purge: bool = False) -> None:
    """Declare ``spec`` on a connection of its own, and empty it when ``purge``."""
    from .connection import connect

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


def discard(url: str, *queues: QueueSpec | str) -> None:
    """Delete ``queues`` on a connection of their own; a broker that is gone is fine.

    For ``finally`` clauses: clean-up must never hide the error that got us there.
    """
    from .connection import connect

    with contextlib.suppress(HelpersError):
        with connect(url, name="cleanup " + " ".join(getattr(q, "name", q) for q in queues)) \
                as conn:
            channel = conn.channel()
            for queue in queues:
                delete(channel, queue)


def message_count(channel, name: str) -> int:
    """Messages ready in queue ``name`` (passive declare: never creates it)."""
    return channel.queue_declare(queue=name, passive=True).method.message_count


def count(url: str, name: str) -> int | None:
    """``message_count`` on a connection of its own; None when the queue does not exist."""
    import pika.exceptions as pe

    from .connection import connect

    with connect(url, name=f"count {name}") as conn:
        try:
            return message_count(conn.channel(), name)
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise
