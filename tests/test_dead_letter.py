"""Dead-lettering by policy, over each way there is to set one, and by the worker without.

Three brokers as the project meets them: the private node (management API), the second
node without the management plugin reached as our own node (``rabbitmqctl``), and the same
node reached only through ``AMQP_URL`` (no way to set a policy: the worker does it). In each,
a worker meets a poison message among good tasks; the poison must end up in
``<queue>.dead`` exactly once, with the reason ``rejected``, and say who put it there.
"""
import time
import uuid

import pytest

from helpers import broker as broker_mod
from helpers import dead_letter, producer, topology
from helpers.connection import connect
from helpers.pool import WorkerPool
from helpers.tasks import Task

pytestmark = pytest.mark.broker

#: The ways in, and what each must report: (route, how the policy was set).
WAYS = {
    "management API": ("policy", "management API"),
    "rabbitmqctl": ("policy", "rabbitmqctl"),
    "AMQP only": ("worker", None),
}


@pytest.fixture(params=list(WAYS))
def way(request, broker):
    """(name, a broker seen that way)."""
    if request.param == "management API":
        if not dead_letter.management.answers(broker):
            pytest.skip("the session's broker has no management API")
        return request.param, broker
    node = request.getfixturevalue("bare_node")
    if request.param == "rabbitmqctl":
        return request.param, node
    return request.param, broker_mod.Broker(url=node.url)


def test_a_poison_message_reaches_the_dead_letter_queue_once(way):
    name, where = way
    route, how = WAYS[name]
    spec = dead_letter.prepare(where, topology.QueueSpec(f"test-dlx-{uuid.uuid4().hex[:8]}"))
    assert dead_letter.route(spec) == route
    assert dead_letter.ensure(where) == how
    print(f"{name}: {dead_letter.describe(spec, where)}")
    good = [Task(f"good-{i}", 0.0) for i in range(3)]
    try:
        topology.setup(where.url, spec)
        producer.publish(where.url, spec, [*good[:2], ("poison", b"{not json"), good[2]],
                         declare_queue=False)
        with WorkerPool(where.url, spec, prefetch=1) as pool:
            pool.start(1)
            assert pool.wait_for(lambda p: len(p.finished) == 3 and any(
                e["event"] == "dead-lettered" for e in p.events), 30)
        with connect(where.url) as conn:
            channel = conn.channel()
            got, deadline = [], time.monotonic() + 10
            while time.monotonic() < deadline:  # dead-lettered a moment after the reject
                method, props, body = channel.basic_get(spec.dead_letter_queue, auto_ack=True)
                if method is not None:
                    got.append((props, body))
                elif got:
                    break
                else:
                    time.sleep(0.1)
        assert [body for _props, body in got] == [b"{not json"]
        headers = got[0][0].headers
        assert headers["x-death"][0]["reason"] == "rejected"
        assert headers["x-death"][0]["queue"] == spec.name
        assert headers.get("x-dead-lettered-by") == ("worker" if route == "worker" else None)
        by = [e["by"] for e in pool.events if e["event"] == "dead-lettered"]
        assert by == ["worker" if route == "worker" else "broker"]
    finally:
        topology.discard(where.url, spec)


def test_a_queue_outside_the_pattern_is_dead_lettered_by_the_worker(broker):
    spec = dead_letter.prepare(broker, topology.QueueSpec(f"mine-{uuid.uuid4().hex[:6]}"))
    assert dead_letter.route(spec) == "worker"
    assert "does not cover this queue name" in dead_letter.describe(spec, broker)


def test_the_pattern_covers_the_project_queues_and_not_their_dead_letter_queues():
    for name in ("task_queue", "wq-run-1a2b3c4d", "test-x", "bench-project-1"):
        assert dead_letter.covers(name), name
    for name in ("task_queue.dead", "wq-run-1a2b3c4d.dead", "orders", "task_queue2"):
        assert not dead_letter.covers(name), name
