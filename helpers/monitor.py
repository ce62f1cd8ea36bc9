"""A queue's depth over time: from the management HTTP API, or exactly over AMQP.

``messages_ready`` (waiting for a consumer), ``messages_unacknowledged`` (delivered, not
yet acked) and ``consumers``: the same columns ``rabbitmqctl list_queues`` prints. The
management plugin collects them at its smallest sample-retention interval (5 s by default;
the private node asks for 1 s, the smallest allowed) and adds its own delay: on RabbitMQ
3.10 the figures trail the queue by one to two seconds. Use them for the shape of a run
(depth growing, draining), not to time single messages. ``ReadySampler`` counts the ready
messages exactly, at the instant it asks (a passive declare over AMQP), but nothing else.
"""
from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from .broker import Broker
from .errors import BrokerConnectionError, HelpersError
from .procs import wait_until

FIELDS = ("messages_ready", "messages_unacknowledged", "consumers")


def management_get(broker: Broker, path: str, timeout: float = 5.0):
    """GET ``/api/<path>`` from ``broker``'s management API: the decoded JSON, None for 404."""
    if not broker.management_url:
        raise BrokerConnectionError("This broker has no management URL: set "
                                    "RABBITMQ_MANAGEMENT_URL (e.g. http://localhost:15672).")
    user, password = broker.management_auth()
    request = urllib.request.Request(broker.management_url.rstrip("/") + "/api/" + path)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise BrokerConnectionError(f"The management API answered {exc.code} for /api/{path}: "
                                    "is the management plugin enabled and the user allowed?") \
            from exc
    except (urllib.error.URLError, OSError) as exc:
        raise BrokerConnectionError(f"The management API at {broker.management_url} did not "
                                    f"answer ({exc}): is the management plugin enabled?") from exc


def queue_stats(broker: Broker, queue: str) -> dict | None:
    """Ready, unacked and consumer counts of one queue, or None if it does not exist."""
    vhost = urllib.parse.quote(broker.vhost(), safe="")
    data = management_get(broker, f"queues/{vhost}/{urllib.parse.quote(queue, safe='')}")
    if data is None:
        return None
    return {key: data.get(key, 0) for key in FIELDS}


def list_queues(broker: Broker, prefix: str = ""):
    """``rabbitmqctl list_queues name messages_ready messages_unacknowledged``, as a DataFrame."""
    import pandas as pd

    vhost = urllib.parse.quote(broker.vhost(), safe="")
    queues = management_get(broker, f"queues/{vhost}") or []
    rows = [{"name": q["name"], **{k: q.get(k, 0) for k in FIELDS}}
            for q in queues if q["name"].startswith(prefix)]
    return pd.DataFrame(rows, columns=["name", *FIELDS])


class QueueMonitor:
    """Background sampler of one queue; use as a context manager, then ``frame()``."""

    def __init__(self, broker: Broker, queue: str, interval: float = 0.25):
        self.broker, self.queue, self.interval = broker, queue, interval
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> dict | None:
        """Take one sample now (and record it)."""
        stats = queue_stats(self.broker, self.queue)
        if stats is not None:
            stats["t"] = time.time()
            self.samples.append(stats)
        return stats

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except BrokerConnectionError:  # e.g. during a broker restart: keep going
                pass
            self._stop.wait(self.interval)

    def start(self) -> "QueueMonitor":
        self._thread = threading.Thread(target=self._loop, name="queue-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(last sample)`` holds; True when it did within ``timeout``."""
        return wait_until(lambda: bool(self.samples) and predicate(self.samples[-1]), timeout,
                          0.1)

    def __enter__(self) -> "QueueMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def frame(self, t0: float | None = None):
        """Samples as a DataFrame; ``t_s`` is seconds since ``t0`` (default: first sample)."""
        import pandas as pd

        df = pd.DataFrame(self.samples, columns=["t", *FIELDS])
        if len(df):
            df["t_s"] = df["t"] - (t0 if t0 is not None else df["t"].iloc[0])
        else:
            df["t_s"] = pd.Series(dtype=float)
        return df


def wait_settled(broker: Broker, queue: str, timeout: float = 10.0, quiet: int = 3) -> bool:
    """Wait until ``queue`` holds nothing ready or unacked, ``quiet`` samples in a row.

    The management figures refresh every 250 ms on the private node and trail the queue:
    one empty sample can be stale, several in a row are not.
    """
    seen = {"quiet": 0}

    def empty() -> bool:
        try:
            stats = queue_stats(broker, queue)
        except HelpersError:
            stats = None
        calm = bool(stats) and stats["messages_ready"] == 0 \
            and stats["messages_unacknowledged"] == 0
        seen["quiet"] = seen["quiet"] + 1 if calm else 0
        return seen["quiet"] >= quiet

    return wait_until(empty, timeout, 0.3)


class ReadySampler:
    """Samples ``messages_ready`` exactly and often, by passive declares over AMQP.

    The management API (``QueueMonitor``) refreshes once a second at best and trails the
    queue; a passive ``queue.declare`` answers with the count at that instant.
    """

    def __init__(self, broker: Broker, queue: str, interval: float = 0.1):
        self.broker, self.queue, self.interval = broker, queue, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ready-sampler", daemon=True)

    def _loop(self) -> None:
        from .connection import connect
        from .topology import message_count

        with connect(self.broker.url, name=f"sampler {self.queue}") as conn:
            channel = conn.channel()
            while not self._stop.is_set():
                self.samples.append((time.time(), message_count(channel, self.queue)))
                self._stop.wait(self.interval)

    def start(self) -> "ReadySampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def frame(self, t0: float):
        """Samples as ``t_s`` (seconds since ``t0``) and ``ready``."""
        import pandas as pd

        df = pd.DataFrame(self.samples, columns=["t", "ready"])
        df["t_s"] = df["t"] - t0
        return df
