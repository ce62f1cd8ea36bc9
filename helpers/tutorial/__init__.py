"""RabbitMQ's tutorial two ("Work queues"), written for this project, runnable as in the tutorial.

Modules (layer 3: they import only ``settings`` and ``broker.resolve`` below them)::

    new_task: ``python -m helpers.tutorial.new_task "A task..."``, the tutorial's publisher
    worker: ``python -m helpers.tutorial.worker``, the tutorial's worker (one second per dot)

Both declare ``task_queue`` exactly as the tutorial and ``helpers.core.topology`` do (a
quorum queue, durable, no other argument), so they share the queue with ``python -m helpers
worker`` and ``new-task``. Notebook 01 shows them from this source; later notebooks show
only the line of the project's worker that differs.
"""
