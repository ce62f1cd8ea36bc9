"""``python -m helpers.lessons.probe QUEUE LIMIT``: consume up to LIMIT messages, say how it went.

Notebook 07 runs it in a subprocess with a deadline (``cluster.try_get``): a broker asked for
a classic queue whose node is down may take more than a minute to answer (RabbitMQ 4.0), and
a process is the one thing that can be given up on cleanly. The broker's URL comes in the
environment (``PROBE_URL``), never on the command line (any local user can read that).
Prints one line per message consumed (``1``), then one line of JSON: ``{"answer": ...}``.
"""
from __future__ import annotations

import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Consume (``basic_get``, then ack) up to LIMIT messages of QUEUE."""
    import pika
    import pika.exceptions as pe

    queue, limit = (argv or sys.argv[1:])[:2]
    params = pika.URLParameters(os.environ["PROBE_URL"])
    params.client_properties = {"connection_name": f"probe {queue}"}
    consumed, answer = 0, None
    try:
        with pika.BlockingConnection(params) as conn:
            channel = conn.channel()
            while consumed < int(limit):
                method, _props, _body = channel.basic_get(queue)
                if method is None:
                    answer = f"got {consumed}, then the queue was empty"
                    break
                channel.basic_ack(method.delivery_tag)
                consumed += 1
                print(1, flush=True)
            answer = answer or f"got all {consumed}"
    except pe.ChannelClosedByBroker as exc:
        answer = f"refused: {exc.reply_code} {exc.reply_text}"
    except pe.AMQPError as exc:
        answer = f"failed: {exc!r}"
    print(json.dumps({"answer": answer}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
