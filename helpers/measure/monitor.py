"""A queue's depth over time: from the management HTTP API, or over AMQP and the workers.

``messages_ready`` (waiting for a consumer), ``messages_unacknowledged`` (delivered, not
yet acked) and ``consumers``: the same columns ``rabbitmqctl list_queues`` prints.

Where a management API answers (``helpers.broker.management``), the three come from it. It collects
them at its smallest sample-retention interval (5 s by default; the private node asks for
1 s, the smallest allowed) and adds its own delay: on RabbitMQ 3.10 the figures trail the
queue by one to two seconds. Use them for the shape of a run (depth growing, draining), not
to time single messages.

Where none answers (a broker without the plugin, or one whose API is elsewhere and not
named by ``HELPERS_MANAGEMENT_URL``), ``messages_ready`` and ``consumers`` come over AMQP, a
passive ``queue.declare`` that answers with both at that instant, and
``messages_unacknowledged`` from the events of the workers of a pool: what each live
worker was delivered and has not acked yet (None without a pool). ``where()`` says which
figures came from where, in one sentence. ``ReadySampler`` counts the ready messages over
AMQP, exactly and often, whatever else is there.
"""
from __future__ import annotations

import threading
import time

from helpers.broker import management
from helpers.broker.model import Broker
from helpers.errors import HelpersError
from helpers.pool.events import unacked
from helpers.procs import wait_until

FIELDS = ("messages_ready", "messages_unacknowledged", "consumers")


def queue_stats(broker: Broker, queue: str) -> dict | None:
    """Ready, unacked and consumer counts of one queue from the management API, or None if
    the queue does not exist."""
    data = management.get(broker, "queues/" + management.vhost_path(broker, queue))
    if data is None:
        return None
    return {key: data.get(key, 0) for key in FIELDS}


def where(source: str, broker: Broker, pool=None) -> str:
    """One sentence: which figures came from where, for ``source`` ``management``/``amqp``."""
    if source == "management":
        return (f"All three figures come from the management API at {broker.management_url} "
                "(as rabbitmqctl list_queues shows them, refreshed about once a second).")
    unacked_from = ("the workers' own events (delivered to a live worker, not yet acked)"
                    if pool is not None else "nowhere (no workers of ours to ask)")
    return ("No management API answered (set HELPERS_MANAGEMENT_URL if the broker has one), "
            "so messages_ready and consumers come over AMQP (a passive queue.declare) and "
            f"messages_unacknowledged from {unacked_from}.")


class _AmqpStats:
    """Ready and consumer counts by passive declares, on one connection of its own."""

    def __init__(self, broker: Broker, queue: str, pool=None):
        self.broker, self.queue, self.pool = broker, queue, pool
        self._conn = self._channel = None
        self._lock = threading.Lock()

    def sample(self) -> dict | None:
        import pika.exceptions as pe

        from helpers.core.connection import connect

        with self._lock:
            try:
                if self._conn is None or not self._conn.is_open:
                    self._conn = connect(self.broker.url, name=f"monitor {self.queue}")
                    self._channel = None
                if self._channel is None or not self._channel.is_open:
                    self._channel = self._conn.channel()
                ok = self._channel.queue_declare(queue=self.queue, passive=True)
            except pe.ChannelClosedByBroker as exc:
                self._channel = None
                if exc.reply_code == 404:
                    return None
                raise HelpersError(f"The broker refused to count {self.queue} ({exc}).") \
                    from exc
            except pe.AMQPError as exc:  # e.g. the broker restarting: try again next time
                self._conn = None
                raise HelpersError(f"Lost the broker while counting {self.queue} ({exc}).") \
                    from exc
        held = None
        if self.pool is not None:
            held = unacked(self.pool.snapshot(), {h.name for h in self.pool.alive()})
        return {"messages_ready": ok.method.message_count, "messages_unacknowledged": held,
                "consumers": ok.method.consumer_count}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._conn.is_open:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - closing a connection that is going anyway
                    pass
            self._conn = None


def list_queues(broker: Broker, prefix: str = "", pool=None):
    """``rabbitmqctl list_queues name messages_ready messages_unacknowledged``, as a DataFrame.

    Without a management API only the queue named ``prefix`` can be counted (AMQP cannot
    list queues); its unacknowledged count then comes from ``pool``'s workers.
    """
    import pandas as pd

    if management.answers(broker):
        rows = [{"name": q["name"], **{k: q.get(k, 0) for k in FIELDS}}
                for q in (management.get(broker, "queues/" + management.vhost_path(broker))
                          or []) if q["name"].startswith(prefix)]
    else:
        counter = _AmqpStats(broker, prefix, pool)
        try:
            stats = counter.sample()
        finally:
            counter.close()
        rows = [{"name": prefix, **stats}] if stats else []
    return pd.DataFrame(rows, columns=["name", *FIELDS])


class QueueMonitor:
    """Background sampler of one queue; use as a context manager, then ``frame()``.

    ``pool``: the workers consuming it, whose events give the unacknowledged count when no
    management API answers.
    """

    def __init__(self, broker: Broker, queue: str, interval: float = 0.25, pool=None,
                 source: str | None = None):
        self.broker, self.queue, self.interval, self.pool = broker, queue, interval, pool
        # ``source="amqp"``: the exact figures (AMQP and the pool's events) even where a
        # management API answers; None: the management API where one answers.
        self.source = source or ("management" if management.answers(broker) else "amqp")
        self.samples: list[dict] = []
        self._amqp = _AmqpStats(broker, queue, pool) if self.source == "amqp" else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def where(self) -> str:
        """Which figures came from where, in one sentence."""
        return where(self.source, self.broker, self.pool)

    def sample(self) -> dict | None:
        """Take one sample now (and record it)."""
        stats = queue_stats(self.broker, self.queue) if self._amqp is None \
            else self._amqp.sample()
        if stats is not None:
            stats["t"] = time.time()
            self.samples.append(stats)
        return stats

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except HelpersError:  # e.g. during a broker restart: keep going
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
        if self._amqp is not None:
            self._amqp.close()

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


def refresh_gaps_s(samples, fields=("messages_ready", "messages_unacknowledged"),
                   start_s: float | None = None, end_s: float | None = None) -> list[float]:
    """How often figures sampled from the management API were seen to change: the gaps
    (seconds) between consecutive changes of ``fields`` in ``samples`` (a ``frame()``),
    between ``start_s`` and ``end_s`` (``t_s``). While the queue changes all the time, each
    gap is the interval at which the broker refreshes them, to within the sampling
    interval; a quiet queue makes a gap a multiple of it."""
    import pandas as pd

    rows = samples
    if start_s is not None:
        rows = rows[rows["t_s"] >= start_s]
    if end_s is not None:
        rows = rows[rows["t_s"] <= end_s]
    values = rows[list(fields)].astype(float).fillna(-1)
    changed = (values.diff().abs().sum(axis=1) > 0)
    changed.iloc[:1] = False
    return [round(float(g), 3) for g in pd.Series(rows["t_s"][changed].to_numpy()).diff().dropna()]


def wait_settled(broker: Broker, queue: str, timeout: float = 10.0, quiet: int = 3) -> bool:
    """Wait until ``queue`` holds nothing ready or unacked, ``quiet`` samples in a row.

    The management figures refresh every 250 ms on the private node and trail the queue:
    one empty sample can be stale, several in a row are not. Without a management API only
    the ready count (over AMQP) can be watched.
    """
    seen = {"quiet": 0}
    sampler = QueueMonitor(broker, queue)

    def empty() -> bool:
        try:
            stats = sampler.sample()
        except HelpersError:
            stats = None
        calm = bool(stats) and stats["messages_ready"] == 0 \
            and not stats["messages_unacknowledged"]
        seen["quiet"] = seen["quiet"] + 1 if calm else 0
        return seen["quiet"] >= quiet

    try:
        return wait_until(empty, timeout, 0.3)
    finally:
        sampler.stop()


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
        from helpers.core.connection import connect
        from helpers.core.topology import message_count

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
