"""Putting tasks on a queue.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    options: ``PublishOptions``, how tasks are published, the value the others take
    producer: ``publish`` (pipelined confirms by default, each, or none)
    confirms: the pipelined publisher on pika's ``SelectConnection``
    outcome: ``PublishResult``, message properties, the blocked-publisher watch
    pacing: ``PacedPublisher``, batches over time in a thread
"""
