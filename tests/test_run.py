"""The experiment runner: round robin vs prefetch=1 on the fair-dispatch workload."""
import pytest

from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.core import tasks
from helpers.errors import BadInputError

pytestmark = pytest.mark.broker


def test_round_robin_hands_every_odd_task_to_one_worker(broker):
    result = runner.run(Experiment(2, tasks.odd_heavy(40, 0.2, 0.02), WorkerConfig(prefetch=0),
                                   save=False), broker=broker)
    s = result.summary
    assert s["tasks_completed"] == 40 and s["tasks_lost"] == 0
    counts = sorted(r["tasks"] for r in s["per_worker"])
    assert counts == [20, 20]
    assert s["imbalance"] >= 1.5
    # Task i went to worker (i mod 2): all heavy ones on one worker.
    heavy_on = set(result.deliveries[result.deliveries["duration"] == 0.2]["worker"])
    assert len(heavy_on) == 1


def test_prefetch_one_spreads_the_work(broker):
    """Behaviour, not timing (the machine is shared): with prefetch 1 each worker holds one
    task at a time, so the heavy tasks go to whoever is free. (How close to the ideal
    makespan that gets is measured by ``make bench``, not asserted here.)"""
    result = runner.run(Experiment(2, tasks.odd_heavy(40, 0.2, 0.02), WorkerConfig(prefetch=1),
                                   save=False), broker=broker)
    s, d = result.summary, result.deliveries
    assert s["tasks_completed"] == 40
    # One task at a time: a worker's next delivery comes only after its previous ack.
    for _, rows in d.sort_values("delivered_t").groupby("worker"):
        assert (rows["delivered_t"].iloc[1:].values >= rows["acked_t"].iloc[:-1].values).all()
    # The heavy tasks are shared, not dealt to one worker as round robin does.
    heavy = d[d["duration"] == 0.2].groupby("worker").size()
    assert len(heavy) == 2 and heavy.min() >= 5, heavy.to_dict()
    assert s["imbalance"] < 1.5  # round robin on this work: 1.8 (the test above)


def test_run_summary_has_the_contract_keys(broker, tmp_path, monkeypatch):
    from helpers import settings
    monkeypatch.setattr(settings, "RUNS_DIR", tmp_path)
    result = runner.run(Experiment(3, tasks.equal(9, 0.01), WorkerConfig(prefetch=1)), broker=broker)
    keys = {"workers", "prefetch", "tasks_published", "tasks_completed", "tasks_lost",
            "duplicates", "redeliveries", "makespan_s", "ideal_makespan_s", "spawn_s",
            "per_worker"}
    assert keys <= set(result.summary)
    assert {"worker", "tasks", "busy_s"} <= set(result.summary["per_worker"][0])
    assert (result.folder / "summary.json").exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(workers=0, prefetch=1), "workers"), (dict(workers=-2, prefetch=1), "workers"),
    (dict(workers=1, prefetch=-1), "prefetch")])
def test_bad_values_are_named(kwargs, match):
    with pytest.raises(BadInputError, match=match):
        Experiment(kwargs["workers"], tasks.equal(1, 0), WorkerConfig(prefetch=kwargs["prefetch"]),
                   save=False)
