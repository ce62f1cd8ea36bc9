"""Reserve mode (helpers.worker.reserve): a task held behind a long one goes back to the queue,
another worker runs it, and every task completes exactly once (real broker)."""
import dataclasses

import pytest

from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.errors import BadInputError
from helpers.pool.pool import WorkerPool
from helpers.core.tasks import Task

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("kind", ["classic", "quorum"])
def test_a_task_held_behind_a_long_one_is_handed_back_and_run_elsewhere(broker, queue, kind):
    queue = dataclasses.replace(queue, kind=kind)
    long_task, short_task = Task("long", 1.0), Task("short", 0.0)
    with WorkerPool(broker.url, queue, WorkerConfig(prefetch=2, reserve=True)) as pool:
        pool.start(1)
        # The lone worker takes both: the long one in hand, the short one in reserve, which
        # it hands back once the long one has run 10 ms with nothing else queued.
        producer.publish(broker.url, queue, [long_task, short_task], PublishOptions(declare_queue=False))
        assert pool.wait_for(lambda p: any(e["event"] == "handed-back" for e in p.events), 10)
        pool.start(1)  # a second worker: it gets the short task while w1 is still busy
        assert pool.wait_for(lambda p: p.finished["long"] and p.finished["short"], 20)
        events = pool.snapshot()
    by = {(e["event"], e.get("task")): e for e in events}
    assert by[("handed-back", "short")]["worker"] == "w1"
    assert by[("finished", "short")]["worker"] == "w2"
    assert by[("finished", "short")]["t"] < by[("finished", "long")]["t"]
    assert [e["redelivered"] for e in events
            if e["event"] == "delivered" and e["task"] == "short"] == [False, True]
    if kind == "quorum":  # the cost on a quorum queue: one more delivery counted
        assert by[("delivered", "short")].get("delivery_count") == 1
    assert dict(pool.finished) == {"long": 1, "short": 1}


def test_reserve_mode_completes_every_task_once(broker):
    work = [Task(f"t{i:03d}", 0.03 if i % 4 == 0 else 0.002) for i in range(120)]
    result = runner.run(Experiment(3, work, WorkerConfig(prefetch=2, reserve=True), save=False,
                                   label="test-reserve", queue_type="classic"), broker=broker)
    s = result.summary
    assert s["tasks_completed"] == 120 and s["tasks_lost"] == 0
    assert s["duplicates"] == 0  # handed back unstarted: never run twice
    assert s["redeliveries"] == s["handed_back"]


def test_reserve_mode_needs_prefetch_two():
    with pytest.raises(BadInputError, match="prefetch 2"):
        runner.run(Experiment(2, [Task("a", 0.0)], WorkerConfig(prefetch=1, reserve=True)))
