"""The ground the rest stands on: talking to a broker and describing the work.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    connection: open a pika connection from a URL (masked in every message), name it, explain a refusal
    topology: the one place that declares, counts, purges and deletes queues (``QueueSpec``)
    tasks: task bodies (JSON with an id and a duration, or the tutorial's dotted strings) and workloads
"""
