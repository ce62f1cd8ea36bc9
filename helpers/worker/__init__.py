"""The worker process: ``python -m helpers.worker``.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    consumer: ``Worker``, the pika consumer (prefetch, ack modes, heartbeat-safe thread or blocking)
    config: ``WorkerConfig``, the one list of a worker's settings (flags out, flags in)
    options: its command line, checked, and start-up (``main``)
    shutdown: SIGTERM = stop consuming, finish, ack, close; failure: a task that fails
    console: what a person's worker prints; reserve: the reserve mode (a task held behind a long one goes back)
    hooks: crash injection, the poison guard, side effects; dedup: idempotency (``DedupStore``)
    __main__: ``python -m helpers.worker``

The events a worker writes with ``--events`` (one JSON line each, with the worker's name,
the wall-clock time ``t`` and, for deliveries, a ``delivery`` key unique in its process):
``ready``; ``delivered`` (with ``redelivered``, and ``delivery_count``: a quorum queue's
``x-delivery-count``); ``started``; ``finished`` (written before the ack leaves); ``acked``;
``failed``; ``rejected`` (sent to the dead-letter queue by the guard of ``hooks``);
``crashed`` (crash injection, a poison task); ``abandoned`` (its connection went away before
the work started: the broker has requeued it); ``dead-lettered`` (a malformed body sent to
``<queue>.dead``, by the broker's policy or the queue's own argument, or by the worker
itself where neither is set); ``cancelled`` (the broker cancelled the consumer);
``stopping`` and ``stopped`` (SIGTERM: a clean shutdown); ``disconnected``.
"""
