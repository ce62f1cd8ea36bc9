"""A broker-sent ``basic.cancel`` and the project's worker (``python -m helpers.worker``).

The worker notices it (pika's ``add_on_cancel_callback``), says so in one line on stderr,
and consumes again; with ``--no-reconnect`` it exits 1 instead. The broker cancels a
consumer when its queue is deleted (every version), and, where the pinned facts say so
(RabbitMQ 4.3, quorum queues), when a delivery outlives the consumer timeout.
"""
import json
import subprocess
import sys
import threading

import pytest

from helpers.broker import node_control
from helpers.broker import version_facts as vf
from helpers.broker import version_facts_timeout as vft
from helpers.core import topology
from helpers.core.connection import connect
from helpers.core.tasks import Task

from support import eventually

pytestmark = pytest.mark.broker
SAID = "the broker cancelled its consumer on"


class Worker:
    """The worker as a child process, its stdout events and stderr lines collected."""

    def __init__(self, url: str, spec: topology.QueueSpec, *extra: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helpers.worker", "--url", url, "--queue-spec",
             spec.to_json(),
             "--events", "--name", "w-cancel", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events, self.errors = [], []
        for stream, into in ((self.proc.stdout, self.events), (self.proc.stderr, self.errors)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(json.loads(line) if line.startswith("{") else line.rstrip("\n"))

    def ready(self, generation: int) -> bool:
        return any(e["event"] == "ready" and e["generation"] == generation
                   for e in self.events)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def spec(broker):
    spec = topology.unique_spec("cancel", kind="quorum", dead_letter=False)
    yield spec
    topology.discard(broker.url, spec)


def test_the_worker_says_a_broker_cancel_in_one_line_and_consumes_again(broker, spec):
    worker = Worker(broker.url, spec)
    try:
        eventually(lambda: worker.ready(0), 30, "the worker's first ready")
        topology.discard(broker.url, spec)  # the broker cancels the queue's consumers
        eventually(lambda: worker.ready(1), 30, "the worker consuming again")
    finally:
        worker.stop()
    assert [line for line in worker.errors if SAID in line] == [
        f"worker w-cancel: {SAID} {spec.name} (queue deleted, or a consumer timeout); "
        "consuming again"]
    assert not [line for line in worker.errors if "lost the broker" in line]
    assert "cancelled" in [e["event"] for e in worker.events]


def test_with_no_reconnect_a_broker_cancel_ends_the_worker_with_status_1(broker, spec):
    worker = Worker(broker.url, spec, "--no-reconnect")
    try:
        eventually(lambda: worker.ready(0), 30, "the worker's first ready")
        topology.discard(broker.url, spec)
        assert worker.proc.wait(30) == 1
    finally:
        worker.stop()
    assert any(SAID in line for line in worker.errors)


@pytest.mark.slow
def test_a_consumer_timeout_that_cancels_makes_the_worker_consume_again(private_broker,
                                                                        spec):
    """Where the pinned facts say a quorum queue's timeout cancels the consumer (4.3): a
    task longer than the queue's timeout (a ``consumer-timeout`` policy of 1 s)."""
    row = vf.pinned(private_broker.version()) or {}
    if row.get("consumer_timeout_quorum_policy") != "consumer cancelled":
        pytest.skip(f"RabbitMQ {private_broker.version()}: a consumer timeout does not cancel "
                    "a quorum queue's consumer (data/version_facts.json)")
    ctl = lambda *a: node_control.ctl(private_broker, *a)  # noqa: E731
    topology.setup(private_broker.url, spec)
    with vft.node_settings(ctl, channel_tick_interval=vft.TICK_MS), \
            vft.policy(ctl, private_broker.url, spec.name, {"consumer-timeout": 1000}):
        with connect(private_broker.url) as conn:
            conn.channel().basic_publish("", spec.name, Task("long", 4.0).body())
        worker = Worker(private_broker.url, spec)
        try:
            eventually(lambda: worker.ready(1), 30, "the worker consuming again")
        finally:
            worker.stop()
    assert any(SAID in line for line in worker.errors)
