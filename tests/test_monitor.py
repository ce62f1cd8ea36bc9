"""Queue depth from the management API, on a real broker."""
import pytest

from helpers import monitor, producer, tasks
from helpers.pool import WorkerPool

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
    pool = WorkerPool(broker.url, queue, prefetch=5, ack="never")
    with pool:
        pool.start(1)
        # The API refreshes its consumer count and message counts at different moments:
        # wait for both to show the worker.
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
