"""A minimal tutorial-style worker, the first peer the benchmarks measure against.

What a reader of the RabbitMQ tutorial would write: one ``BlockingConnection``,
``basic_qos(prefetch_count=1)``, the task runs inside the delivery callback, and the ack
goes out right after it. It imports nothing but pika, so its start-up is the floor.

For the benchmark it prints one flushed line per task (the tutorial prints two per
message), written after the ack so that it never delays the next delivery::

    ready <t>                       once consuming
    done <task id> <start t> <end t>

Run: ``AMQP_URL=... python benchmarks/tutorial_worker.py QUEUE QUEUE_ARGUMENTS_JSON`` (the URL
comes from the environment so its password never shows in ``ps``). It exits when its stdin
closes (the harness holds the other end), so it never outlives the benchmark.
"""
import json
import os
import sys
import threading
import time

import pika


def main() -> None:
    queue, arguments = sys.argv[1], json.loads(sys.argv[2])
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True, arguments=arguments)
    channel.basic_qos(prefetch_count=1)

    def callback(ch, method, _properties, body):
        task = json.loads(body)
        start = time.time()
        time.sleep(task["duration"])
        end = time.time()
        ch.basic_ack(delivery_tag=method.delivery_tag)
        sys.stdout.write(f"done {task['id']} {start!r} {end!r}\n")
        sys.stdout.flush()

    channel.basic_consume(queue=queue, on_message_callback=callback)
    sys.stdout.write(f"ready {time.time()!r}\n")
    sys.stdout.flush()
    channel.start_consuming()


def _exit_with_parent() -> None:
    def watch():
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    _exit_with_parent()
    main()
