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

from helpers.broker.model import Broker
from helpers.broker import dead_letter
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.core import topology
from helpers.core.connection import connect
from helpers.worker.config import WorkerConfig
from helpers.pool.pool import WorkerPool
from helpers.procs import wait_until
from helpers.core.tasks import Task

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
    return request.param, Broker(url=node.url)


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
                         PublishOptions(declare_queue=False))
        with WorkerPool(where.url, spec, WorkerConfig(prefetch=1)) as pool:
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


#: The way a quorum queue's poison must travel, by way in: a delivery limit needs the broker
#: (a policy, or the queue's own argument: with neither it drops the message); the worker's
#: guard goes through the policy, or the worker itself.
POISON_ROUTES = {"management API": ("policy", "policy"), "rabbitmqctl": ("policy", "policy"),
                 "AMQP only": ("arguments", "worker")}


def _dead_letters(url: str, queue: str, expect: int) -> list:
    """The x-death reasons of what reaches ``queue``, once ``expect`` messages have (10 s)."""
    with connect(url, name="test dead letters") as conn:
        channel = conn.channel()
        got, deadline = [], time.monotonic() + 10
        while len(got) < expect and time.monotonic() < deadline:
            method, props, _body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                time.sleep(0.1)
            else:
                got.append(props.headers["x-death"][0]["reason"])
        return got


def test_a_poison_past_its_limit_or_its_attempts_is_dead_lettered_not_dropped(way):
    """Quorum queues: past ``x-delivery-limit`` the broker lets a message go, and drops it
    unless a dead-letter exchange is set; the worker's guard rejects it for good."""
    name, where = way
    limit_route, guard_route = POISON_ROUTES[name]
    limited = dead_letter.prepare(where, topology.unique_spec("test-limit", delivery_limit=1))
    guarded = dead_letter.prepare(where, topology.unique_spec("test-guard"))
    assert (dead_letter.route(limited), dead_letter.route(guarded)) == (limit_route,
                                                                        guard_route)
    try:
        for spec in (limited, guarded):
            topology.setup(where.url, spec)
            producer.publish(where.url, spec, [Task(f"poison-{spec.name}", 0.0)],
                             PublishOptions(declare_queue=False))
        # basic.reject, which counts toward the limit on every version (basic.nack stopped
        # counting in 4.3: data/version_facts.json, past_limit_nack_with_dlx).
        with connect(where.url, name="test reject twice") as conn:
            channel = conn.channel()
            for spec, rejects in ((limited, 2), (guarded, 1)):  # limit 1: the second goes
                for _ in range(rejects):
                    method = wait_until(lambda q=spec.name: channel.basic_get(q)[0], 5, 0.05)
                    assert method, f"the poison did not come back to {spec.name}"
                    channel.basic_reject(method.delivery_tag, requeue=True)
        assert _dead_letters(where.url, limited.dead_letter_queue, 1) == ["delivery_limit"]
        with WorkerPool(where.url, guarded, WorkerConfig(prefetch=1, max_attempts=1)) as pool:
            pool.start(1)
            assert pool.wait_for(lambda p: any(e["event"] == "rejected" for e in p.events), 30)
        assert _dead_letters(where.url, guarded.dead_letter_queue, 1) == ["rejected"]
        assert [e["by"] for e in pool.events if e["event"] == "rejected"] == [
            "worker" if guard_route == "worker" else "broker"]
    finally:
        for spec in (limited, guarded):
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
