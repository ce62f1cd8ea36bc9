"""Queue depth from the management API, or over AMQP and the workers' events, on real brokers."""
import pytest

from helpers.measure import monitor
from helpers.publish import producer
from helpers.core import tasks
from helpers.worker.config import WorkerConfig
from helpers.pool.pool import WorkerPool

pytestmark = pytest.mark.broker


def _wait(predicate, sampler, timeout=15.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = sampler.sample()
        if stats and predicate(stats):
            return stats
        time.sleep(0.1)
    raise AssertionError(f"never true; last sample {sampler.samples[-1:]}")


def test_ready_then_unacked_then_ready_again(broker, queue):
    producer.publish(broker.url, queue, tasks.equal(12, 0))
    sampler = monitor.QueueMonitor(broker, queue.name)
    _wait(lambda s: s["messages_ready"] == 12 and s["consumers"] == 0, sampler)
    pool = WorkerPool(broker.url, queue, WorkerConfig(prefetch=5, ack="never"))
    with pool:
        pool.start(1)
        # Each management figure trails on its own (a quorum queue's consumer count on
        # 3.10 came a sample after its unacked count): wait for both.
        stats = _wait(lambda s: s["messages_unacknowledged"] == 5 and s["consumers"] == 1,
                      sampler)
        assert stats["messages_ready"] == 7
    _wait(lambda s: s["messages_ready"] == 12 and s["messages_unacknowledged"] == 0, sampler)
    frame = sampler.frame()
    assert list(frame.columns[:4]) == ["t", "messages_ready", "messages_unacknowledged",
                                       "consumers"]
    assert frame["messages_unacknowledged"].max() == 5


def test_list_queues_is_the_rabbitmqctl_view(broker, queue):
    producer.publish(broker.url, queue, tasks.equal(3, 0))
    table = monitor.list_queues(broker, prefix=queue.name)
    assert set(table["name"]) == {queue.name, queue.dead_letter_queue}


def test_missing_queue_is_none(broker):
    assert monitor.queue_stats(broker, "no-such-queue-here") is None


def test_without_a_management_api_the_figures_come_over_amqp_and_from_the_workers(
        bare_node):
    """The same story on a broker with no management plugin, reached through its URL only."""
    from helpers.core import topology
    from helpers.broker.model import Broker

    external = Broker(url=bare_node.url)  # as AMQP_URL alone resolves it
    spec = topology.unique_spec("test-amqp-monitor")
    topology.setup(external.url, spec)
    try:
        producer.publish(external.url, spec, tasks.equal(12, 0))
        pool = WorkerPool(external.url, spec, WorkerConfig(prefetch=5, ack="never"))
        sampler = monitor.QueueMonitor(external, spec.name, pool=pool)
        assert sampler.source == "amqp"
        assert "No management API answered" in sampler.where()
        assert "the workers' own events" in sampler.where()
        stats = _wait(lambda s: s["messages_ready"] == 12, sampler)
        assert stats["consumers"] == 0 and stats["messages_unacknowledged"] == 0
        with pool:
            pool.start(1)
            stats = _wait(lambda s: s["messages_unacknowledged"] == 5, sampler)
            assert stats["messages_ready"] == 7 and stats["consumers"] == 1
            listing = monitor.list_queues(external, prefix=spec.name, pool=pool)
            assert listing.to_dict("records") == [
                {"name": spec.name, "messages_ready": 7, "messages_unacknowledged": 5,
                 "consumers": 1}]
        _wait(lambda s: s["messages_ready"] == 12 and s["messages_unacknowledged"] == 0,
              sampler)
        sampler.stop()
    finally:
        topology.discard(external.url, spec)


def test_unacked_counts_what_live_workers_hold():
    from helpers.pool.events import unacked

    def ev(kind, worker, delivery=None, **extra):
        return {"event": kind, "worker": worker, "delivery": delivery, **extra}

    events = [ev("ready", "w1", ack="manual"), ev("ready", "w2", ack="auto"),
              ev("ready", "w3", ack="never"),
              ev("delivered", "w1", "a"), ev("delivered", "w1", "b"), ev("acked", "w1", "a"),
              ev("delivered", "w2", "c"),  # auto acks: the broker let go already
              ev("delivered", "w3", "d"), ev("delivered", "w3", "e")]
    assert unacked(events, {"w1", "w2", "w3"}) == 3
    assert unacked(events, {"w1", "w2"}) == 1  # w3's process is gone: requeued
    assert unacked(events + [ev("disconnected", "w1")], {"w1"}) == 0


def test_finished_unacked_counts_acks_still_on_their_way():
    """What the pool's stop waits for: a task finished by a live worker, its ack not seen."""
    from helpers.pool.events import finished_unacked

    def ev(kind, worker, delivery=None, **extra):
        return {"event": kind, "worker": worker, "delivery": delivery, **extra}

    events = [ev("ready", "w1", ack="manual"), ev("ready", "w2", ack="manual"),
              ev("delivered", "w1", "a"), ev("finished", "w1", "a"),  # ack on its way
              ev("delivered", "w1", "b"),                               # still working
              ev("delivered", "w2", "c"), ev("finished", "w2", "c"), ev("acked", "w2", "c")]
    assert finished_unacked(events, {"w1", "w2"}) == 1
    assert finished_unacked(events + [ev("acked", "w1", "a")], {"w1", "w2"}) == 0
    assert finished_unacked(events, {"w2"}) == 0  # w1 is gone: nothing to wait for
