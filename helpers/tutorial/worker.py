"""The tutorial's ``worker.py``: one task at a time, one second per dot, acked when done.

    python -m helpers.tutorial.worker          # Ctrl+C to stop

The queue is ``task_queue`` (``HELPERS_TUTORIAL_QUEUE`` names another). Like the tutorial,
it does the work inside pika's callback, which blocks heartbeats during a long task; the
project's worker (``python -m helpers worker``) does it in a thread instead.
"""
import time

import pika

from helpers.broker import resolve
from helpers.settings import TUTORIAL_QUEUE
from helpers.tutorial.new_task import declare


def callback(ch, method, properties, body: bytes) -> None:
    print(f" [x] Received {body.decode()}", flush=True)
    time.sleep(body.count(b"."))
    print(" [x] Done", flush=True)
    ch.basic_ack(delivery_tag=method.delivery_tag)


def main(url: str | None = None, queue: str = TUTORIAL_QUEUE) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url or resolve.get().url))
    channel = connection.channel()
    declare(channel, queue)
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue=queue, on_message_callback=callback)
    print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
    try:
        channel.start_consuming()
    except KeyboardInterrupt:
        connection.close()


if __name__ == "__main__":
    main()
