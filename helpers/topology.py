"""The single declaration of the queues that producer and workers share.

RabbitMQ refuses to redeclare an existing queue with other arguments (406
PRECONDITION_FAILED), so both sides must build their arguments from the same
``QueueSpec``. This module is the only place that calls ``queue_declare`` on a work queue.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from .errors import TopologyError

#: The tutorial's queue name; experiments use unique names so runs never share a queue.
DEFAULT_QUEUE = "task_queue"


@dataclass(frozen=True)
class QueueSpec:
    """What a work queue looks like.

    Parameters
    ----------
    name: the queue name.
    durable: survive a broker restart (the queue itself; messages need ``persistent``).
    kind: ``"classic"`` or ``"quorum"`` (quorum queues are always durable).
    dead_letter: reject poison messages into ``<name>.dead`` instead of dropping them.
    delivery_limit: quorum queues only: dead-letter (or drop) a message after this many
        redeliveries (``x-delivery-limit``; None: the broker's default).
    """

    name: str = DEFAULT_QUEUE
    durable: bool = True
    kind: str = "classic"
    dead_letter: bool = True
    delivery_limit: int | None = None

    @property
    def dead_letter_queue(self) -> str:
        """Name of the queue that receives rejected messages."""
        return f"{self.name}.dead"

    def arguments(self) -> dict:
        """The ``x-`` arguments sent with ``queue_declare``."""
        args: dict = {}
        if self.kind == "quorum":
            args["x-queue-type"] = "quorum"
        if self.delivery_limit is not None:
            args["x-delivery-limit"] = self.delivery_limit
        if self.dead_letter:
            args["x-dead-letter-exchange"] = ""
            args["x-dead-letter-routing-key"] = self.dead_letter_queue
        return args

    def to_json(self) -> str:
        """Serialise, to hand the spec to a worker process on its command line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "QueueSpec":
        """Inverse of ``to_json``."""
        return cls(**json.loads(text))


def _explain(exc: Exception, spec: QueueSpec) -> TopologyError | None:
    code = getattr(exc, "reply_code", None)
    text = getattr(exc, "reply_text", str(exc))
    if code == 406:
        detail = text.split(" - ", 1)[-1]  # the broker repeats the code name before " - "
        return TopologyError(
            f"The broker refused to declare queue '{spec.name}' (406 PRECONDITION_FAILED: "
            f"{detail}): a queue of that name already exists with other arguments; delete it "
            "or use a new queue name.")
    if code in (403, 405):
        return TopologyError(f"The broker refused queue '{spec.name}' ({code}: {text}).")
    return None


def declare(channel, spec: QueueSpec) -> int:
    """Declare ``spec`` (and its dead-letter queue) on ``channel``; return the ready count.

    A clash with an existing queue raises ``TopologyError`` (the channel is then closed by
    the broker, as AMQP requires).
    """
    import pika.exceptions as pe

    try:
        if spec.dead_letter:
            channel.queue_declare(queue=spec.dead_letter_queue, durable=spec.durable or
                                  spec.kind == "quorum")
        result = channel.queue_declare(queue=spec.name, durable=spec.durable or
                                       spec.kind == "quorum", arguments=spec.arguments())
    except pe.ChannelClosedByBroker as exc:
        explained = _explain(exc, spec)
        if explained is None:
            raise
        raise explained from exc
    return result.method.message_count


def delete(channel, spec: QueueSpec) -> None:
    """Delete the queue and its dead-letter queue (no error if they do not exist)."""
    channel.queue_delete(queue=spec.name)
    if spec.dead_letter:
        channel.queue_delete(queue=spec.dead_letter_queue)


def discard(url: str, spec: QueueSpec) -> None:
    """Delete ``spec``'s queues on a connection of their own; a broker that is gone is fine.

    For ``finally`` clauses: clean-up must never hide the error that got us there.
    """
    from .connection import connect
    from .errors import HelpersError

    try:
        with connect(url, name=f"cleanup {spec.name}") as conn:
            delete(conn.channel(), spec)
    except HelpersError:
        pass


def message_count(channel, name: str) -> int:
    """Messages ready in queue ``name`` (passive declare: never creates it)."""
    return channel.queue_declare(queue=name, passive=True).method.message_count
