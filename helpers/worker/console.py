"""What a worker says to a person in a terminal, in place of its JSON event lines.

The tutorial's ``worker.py`` prints ``[*] Waiting for messages``, then ``[x] Received ...``
and ``[x] Done`` for every task; ``python -m helpers worker`` says the same (and a little
more: the queue type, redeliveries, where a poison message went). ``--events`` switches
back to one JSON line per event, which is what the pool reads.
"""
from __future__ import annotations

#: Longest part of a message body shown in a "Received" line.
PREVIEW_CHARS = 60


def preview(body: bytes) -> str:
    """The start of a message body, as text, for a person to recognise it."""
    text = body[:PREVIEW_CHARS * 4].decode("utf-8", errors="replace")
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 3] + "..."


def human_line(event: dict, worker) -> str | None:
    """The line a person sees for ``event`` of ``worker`` (None: nothing to say)."""
    kind = event["event"]
    if kind == "ready":
        spec = worker.spec
        if event.get("generation"):
            return f" [*] Connected again: consuming {spec.name} once more"
        prefetch = worker.prefetch or "unlimited"
        return (f" [*] Waiting for messages in {spec.name} ({spec.kind} queue, prefetch "
                f"{prefetch}, {worker.ack} acks). To exit press CTRL+C")
    if kind == "delivered":
        again = " (redelivered)" if event.get("redelivered") else ""
        return f" [x] Received {event.get('body', event.get('task'))!r}{again}"
    if kind == "finished":
        return " [x] Done"
    if kind == "failed":
        return f" [!] {event.get('reason')}"
    if kind == "dead-lettered":
        if event.get("by") == "worker":
            return f" [!] Moved it to {event['queue']} (published there by this worker)"
        if event.get("queue"):
            return f" [!] Rejected it: the broker dead-letters it to {event['queue']}"
        return " [!] Rejected it (no dead-letter queue: it is dropped)"
    if kind == "crashed":
        return " [!] Crashing half-way through this task (crash injection)"
    if kind == "abandoned":
        return " [!] Left it: the connection it came on is gone, the broker has requeued it"
    return None  # acked, started, disconnected (said on stderr): nothing for a person
