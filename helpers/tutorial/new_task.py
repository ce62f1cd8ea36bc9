"""The tutorial's ``new_task.py``: publish one persistent task, e.g. ``"A task..."`` (3 dots, 3 s).

    python -m helpers.tutorial.new_task "A task..."

The queue is ``task_queue`` (``HELPERS_TUTORIAL_QUEUE`` names another); the broker is the one
``helpers`` resolves (``AMQP_URL``, else this checkout's private node).
"""
import sys

import pika

from helpers.broker import resolve
from helpers.settings import TUTORIAL_QUEUE


def declare(channel, queue: str = TUTORIAL_QUEUE) -> None:
    """The tutorial's one declaration, shared by its publisher and its worker."""
    channel.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})


def main(message: str, url: str | None = None, queue: str = TUTORIAL_QUEUE) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url or resolve.get().url))
    channel = connection.channel()
    declare(channel, queue)
    channel.basic_publish(
        exchange="", routing_key=queue, body=message,
        properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    print(f" [x] Sent {message}")
    connection.close()


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "Hello World!")
