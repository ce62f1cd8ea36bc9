"""The event lines a Celery or Dramatiq worker writes from inside, in the project's format.

The same JSON lines ``python -m helpers.worker --events`` writes (``ready``, ``delivered``
with its ``redelivered`` flag, ``started``, ``finished``, ``acked``; wall-clock ``t``), so
``helpers.pool`` reads them and ``helpers.measure.timing`` summarises them unchanged. Each
line goes to file descriptor 1 in one ``os.write``: a Celery worker's pool children share
that pipe with their parent, and a write under PIPE_BUF (4096 bytes) is never interleaved
with another process's. Imported inside the worker processes: standard library only.
"""
from __future__ import annotations

import json
import os
import time

#: This worker's name in its pool (``w1``, ``w2``, ...), given by the pool.
WORKER = os.environ.get("HELPERS_WORKER_NAME", "w?")


def emit(event: str, **fields) -> None:
    """Write one event line: its name, this worker's name, the time, the pid, ``fields``."""
    line = {"event": event, "worker": WORKER, "t": time.time(), "pid": os.getpid(), **fields}
    os.write(1, json.dumps(line).encode() + b"\n")


def delivery_key(*parts) -> str:
    """A key for one delivery, the same in every process of this worker that reports it."""
    return ":".join([WORKER, *(str(p) for p in parts)])
