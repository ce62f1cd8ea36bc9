"""Notebook 08's scenarios and the worker's clean shutdown, against the real broker.

Each scenario runs through its command-line twin, ``python -m helpers fault NAME --json``,
so the JSON keys are checked on the way. What depends on the RabbitMQ version (quorum-queue
priority levels, the broker's own delayed redelivery) is pinned per series, as measured on
3.10.8, 4.0.5 and 4.3.6; a series not pinned fails, saying what it measured.
"""
import json
import signal
import time

import pytest

from helpers import faults
from helpers.broker import delayed_retry
from helpers.core import tasks, topology
from helpers.faults import priority, single_active
from helpers.pool.pool import WorkerPool
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.worker.config import WorkerConfig

COMMON = ("fault", "tasks_confirmed", "tasks_completed", "tasks_lost", "duplicates",
          "redeliveries")


def fault_json(cli, tmp_path, name: str, *args: str, status: int = 0) -> dict:
    out = tmp_path / f"{name}.json"
    proc = cli("fault", name, "--json", str(out), *args, timeout=300)
    assert proc.returncode == status, proc.stderr
    summary = json.loads(out.read_text())
    assert set(COMMON) <= set(summary) and summary["fault"] == name
    assert faults.line(summary) in proc.stdout
    return summary


# -- no broker ---------------------------------------------------------------------------

def test_queue_spec_arguments_for_the_new_features():
    spec = topology.QueueSpec("q", kind="classic", max_priority=10, single_active=True,
                              max_length=20, overflow="reject-publish", retry_delays=[1, 4])
    assert spec.arguments() == {"x-max-priority": 10, "x-single-active-consumer": True,
                                "x-max-length": 20, "x-overflow": "reject-publish"}
    names = [kw["queue"] for method, kw in spec.declarations() if method == "queue_declare"]
    assert names[:3] == ["q.retry-1", "q.retry-2", "q.parked"] and names[-1] == "q"
    retry = next(kw["arguments"] for _m, kw in spec.declarations()
                 if kw.get("queue") == "q.retry-1")
    assert retry == {"x-message-ttl": 1000, "x-dead-letter-exchange": "",
                     "x-dead-letter-routing-key": "q"}
    assert topology.QueueSpec.from_json(spec.to_json()) == spec
    assert topology.QueueSpec("q").side_queues() == []


def test_levels_and_out_of_order_counts():
    assert priority.levels([p for p in range(10) for _ in range(3)]) == 1
    assert priority.levels([p for p in reversed(range(10)) for _ in range(3)]) == 10
    assert priority.levels([5, 6, 7, 8, 9, 0, 1, 2, 3, 4]) == 2
    done = [{"event": "finished", "task": f"x-a-{i:03d}", "t": t}
            for i, t in ((1, 1.0), (3, 2.0), (2, 3.0), (4, 4.0))]
    assert single_active.out_of_order(done) == 1


def test_worker_config_refuses_unknown_modes():
    from helpers.errors import BadInputError

    with pytest.raises(BadInputError, match="on_sigterm"):
        WorkerConfig(on_sigterm="ignore")
    assert WorkerConfig(on_sigterm="die", on_failure="retry").argv() == [
        "--on-failure", "retry", "--on-sigterm", "die"]


# -- the worker's clean shutdown ---------------------------------------------------------

@pytest.mark.broker
@pytest.mark.parametrize("how", ["graceful", "die"])
def test_sigterm_mid_task(broker, queue, how):
    """Graceful: the task in hand is finished and acked, the worker exits 0 within the
    task's time plus a second, the next task stays queued. Die: exit by the signal, mid-task,
    both tasks back in the queue."""
    task_s = 1.0
    with WorkerPool(broker.url, queue, WorkerConfig(on_sigterm=how)) as pool:
        handle, = pool.start(1)
        producer.publish(broker.url, queue, [tasks.Task("long", task_s), tasks.Task("next", 0.1)],
                         PublishOptions(declare_queue=False))
        assert pool.wait_for(lambda p: any(e["event"] == "started" for e in p.events), 10)
        time.sleep(0.3)
        sent = time.time()
        pool.kill(handle, signal.SIGTERM)
        code = handle.process.wait(task_s + 5)
        took = time.time() - sent
        events = [e["event"] for e in pool.snapshot()]
    left = topology.count(broker.url, queue.name)
    if how == "graceful":
        assert code == 0 and took < task_s + 1
        assert events[-4:] == ["stopping", "finished", "acked", "stopped"]
        assert left == 1
    else:
        assert code == -signal.SIGTERM and "finished" not in events and left == 2


# -- the scenarios -----------------------------------------------------------------------

@pytest.mark.broker
def test_retry_waits_then_parks(cli, tmp_path, record_property):
    s = fault_json(cli, tmp_path, "retry", "--tasks", "6")
    record_property("figures", {k: s[k] for k in ("broker_version", "gaps_s",
                                                  "hot_loop_deliveries_per_s")})
    seen = {k: s[k] for k in ("attempts", "parked", "tasks_lost", "gaps_s", "delays_s",
                              "hot_loop_deliveries_per_s", "delayed_deliveries_per_s")}
    assert s["attempts"] == 4 and s["parked"] == 1 and s["tasks_lost"] == 0, seen
    assert all(d <= g < d + 1.0 for g, d in zip(s["gaps_s"], s["delays_s"])), seen
    assert set(s["delayed_retry"]) >= {"argument type all", "argument min only"}
    assert s["hot_loop_deliveries_per_s"] > 10 * s["delayed_deliveries_per_s"], seen
    hol = s["head_of_line"]  # a per-message TTL waits for the message ahead of it
    assert hol["short_back_after_s"] >= hol["long_ttl_s"] and not hol["short_came_back_first"]


@pytest.mark.broker
def test_priorities_and_the_levels_this_broker_honours(cli, tmp_path, record_property):
    s = fault_json(cli, tmp_path, "priority", "--tasks", "100")
    record_property("figures", {k: s[k] for k in ("broker_version", "levels")})
    assert max(s["urgent_start_s_with"]) < min(s["urgent_start_s_without"])
    assert max(s["urgent_start_s_with"]) < min(s["urgent_start_s_prefetch"])
    assert s["levels"]["classic"] == 10 and s["tasks_lost"] == 0
    # Levels a quorum queue honours (the probe sends 0..63), as measured: 1 on 3.10.8 (FIFO),
    # 2 on 4.0.5 (high and normal), 32 on 4.3.6 (0..30 each a level, 31 and above one).
    assert s["probe_top"] == {"classic": 9, "quorum": 63}
    pinned = {"3.10": 1, "4.0": 2, "4.3": 32}
    series = ".".join(s["broker_version"].split(".")[:2])
    assert series in pinned, f"not pinned for {s['broker_version']}: measured {s['levels']}"
    assert s["levels"]["quorum"] == pinned[series], s["levels"]
    if series == "3.10":  # the argument itself is refused there
        assert "invalid arg 'x-max-priority'" in s["quorum_max_priority_refused"]


#: What each way of asking a quorum queue to delay its redeliveries did, per series (the
#: outcome's first word): 3.10.8 and 4.0.5 take the arguments and ignore them, and refuse the
#: policy keys; 4.3.6 delays with type ``all`` or ``failed`` (a basic.reject with requeue is
#: not ``returned``), by argument or policy (keys without ``x-``), and not with a minimum alone.
DELAYED_RETRY = {
    "3.10": dict.fromkeys(delayed_retry.WAYS, "ignored") | {
        "policy type all": "refused", "policy x- keys": "refused"},
    "4.0": dict.fromkeys(delayed_retry.WAYS, "ignored") | {
        "policy type all": "refused", "policy x- keys": "refused"},
    "4.3": {"argument min only": "ignored", "argument type all": "honoured",
            "argument type returned": "ignored", "argument type failed": "honoured",
            "policy type all": "honoured", "policy x- keys": "refused"},
}


@pytest.mark.broker
def test_the_brokers_own_delayed_retry_as_pinned_for_its_series(broker, record_property):
    """Each way, on a quorum queue, a message rejected with requeue 3 times: where honoured,
    the n-th return waits min x n ms (capped at max), as 4.3.6 did (1.01, 2.00, 3.01 s for a
    minimum of 1000 ms)."""
    if not delayed_retry.node_control.can_control(broker):
        pytest.skip("the policy ways need the management API of a private node")
    min_ms, version = 300, broker.version()
    found = delayed_retry.probe(broker, min_ms=min_ms)
    record_property("figures", {w: (g["outcome"], g["gaps_s"]) for w, g in found.items()})
    series = ".".join(version.split(".")[:2])
    measured = {way: got["outcome"].split(":")[0] for way, got in found.items()}
    assert series in DELAYED_RETRY, f"not pinned for {version}: measured {measured}"
    assert measured == DELAYED_RETRY[series], delayed_retry.sentence(found, version)
    for got in found.values():
        expected = [min(min_ms * n, 4 * min_ms) / 1000 for n in range(1, 4)]
        if got["outcome"] == "honoured":
            assert all(e * 0.9 <= g < e + 0.5 for g, e in zip(got["gaps_s"], expected)), got
        elif got["outcome"] == "ignored":
            assert len(got["gaps_s"]) == 3 and max(got["gaps_s"]) < min_ms / 2000, got


@pytest.mark.broker
def test_single_active_consumer_keeps_order_and_hands_over(cli, tmp_path):
    s = fault_json(cli, tmp_path, "single-active")
    assert s["out_of_order_single"] == 0 < s["out_of_order_competing"]
    assert s["takeover_s"] is not None and s["takeover_s"] < 2
    assert len(s["active_workers_single"]) == 2 and s["tasks_lost"] == 0


@pytest.mark.broker
def test_overflow_nacks_or_drops(cli, tmp_path):
    s = fault_json(cli, tmp_path, "overflow", status=1)  # drop-head loses, by design
    assert s["nacked_first"] > 0 and s["confirmed"] == s["flood"]
    assert s["lost_reject_publish"] == 0 < s["lost_drop_head"]
    assert s["tasks_lost"] == s["lost_drop_head"]
    # A quorum queue enforces the limit only once it has applied the burst: at least one
    # message past it gets in (how many varies, run to run).
    b = s["quorum_burst"]
    assert b["confirmed"] + b["nacked"] == s["flood"] and b["depth"] == b["confirmed"]
    assert b["confirmed"] > s["max_length"]


@pytest.mark.broker
def test_shutdown_graceful_begins_nothing_twice(cli, tmp_path):
    s = fault_json(cli, tmp_path, "shutdown")
    assert s["single_plain_exit"] == -signal.SIGTERM and s["single_plain_redelivered"] == 1
    assert s["single_graceful_exit"] == 0 and s["single_graceful_redelivered"] == 0
    assert s["single_graceful_exit_after_s"] < s["task_s"] + 1
    assert s["started_twice_graceful"] == s["duplicates_graceful"] == 0
    assert s["started_twice_plain"] >= 1 and s["tasks_lost"] == 0
