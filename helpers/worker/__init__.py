"""The worker process: ``python -m helpers.worker``.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    consumer: ``Worker``, the pika consumer (prefetch, ack modes, heartbeat-safe thread or blocking)
    options: its command line, checked, and start-up (``main``)
    console: what a person's worker prints; reserve: the reserve mode (a task held behind a long one goes back)
    hooks: crash injection, the poison guard, side effects; dedup: idempotency (``DedupStore``)
    __main__: ``python -m helpers.worker``
"""
