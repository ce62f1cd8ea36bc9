"""Notebook 05's ground: ``run --latency``, the prefetch arithmetic, and the lessons on a real
broker (workers behind the pool's latency proxy, workers added mid-run); what prefetch 0
means to each queue type is pinned by ``tests/test_queue_types.py``.

Timing on a shared 2-core machine is noisy, so the checks on the broker are bounds that
cannot hold unless the thing under test works: a worker 40 ms away at prefetch 1 cannot do
a task in less than 40 ms, whatever the load; one at prefetch 10 must at least double that.
"""
import json
import math

import pytest

from helpers.measure import prefetch
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.core import tasks
from helpers.errors import BadInputError
from helpers.pool.pool import WorkerPool
from helpers.procs import pid_alive
from helpers.measure.prefetch import busy_bound, recommend_prefetch, throughput_bound


# -- the arithmetic (no broker) ----------------------------------------------------------

@pytest.mark.parametrize("round_trip_s, task_s, expected", [
    (0.0, 0.005, 1),      # next to the broker: one at a time is enough
    (0.005, 0.005, 2),    # (5 + 5) / 5
    (0.020, 0.005, 5),    # exactly 5: no rounding up of 5.000000000000001
    (0.021, 0.005, 6),    # just over: up
    (0.050, 0.005, 11),
    (0.040, 1.0, 2),      # a long task hides the round trip
    (0.050, 0.0, prefetch.MAX_RECOMMENDED),  # zero-length tasks far away: the cap
    (0.0, 0.0, 1),
    (10.0, 0.001, prefetch.MAX_RECOMMENDED),
])
def test_recommend_prefetch(round_trip_s, task_s, expected):
    assert recommend_prefetch(round_trip_s, task_s) == expected


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf, "20", None, True])
def test_recommend_prefetch_refuses_what_is_not_seconds(bad):
    with pytest.raises(BadInputError, match="must be a number of seconds"):
        recommend_prefetch(bad, 0.005)
    with pytest.raises(BadInputError, match="task_s must be"):
        recommend_prefetch(0.02, bad)


def test_the_bound_is_min_of_one_and_p_t_over_r_plus_t():
    assert busy_bound(1, 0.020, 0.005) == pytest.approx(0.2)
    assert busy_bound(3, 0.020, 0.005) == pytest.approx(0.6)
    assert busy_bound(5, 0.020, 0.005) == 1.0
    assert busy_bound(0, 0.050, 0.005) == 1.0  # prefetch 0: no limit
    assert busy_bound(1, 0.0, 0.005) == 1.0
    assert throughput_bound(2, 1, 0.020, 0.005) == pytest.approx(80)  # 2 workers, 25 ms
    assert throughput_bound(2, 1, 0.020, 0.0) == pytest.approx(100)  # round trip only
    # the recommendation is the smallest prefetch at the bound's top
    for r, t in [(0.02, 0.005), (0.05, 0.005), (0.007, 0.003), (0.1, 0.04)]:
        p = recommend_prefetch(r, t)
        assert busy_bound(p, r, t) == 1.0 and (p == 1 or busy_bound(p - 1, r, t) < 1.0)


# -- run --latency (the contract) --------------------------------------------------------

def _run_json(cli, tmp_path, *args) -> dict:
    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}.json"
    proc = cli("run", "--workers", "2", "--tasks", "100", "--heavy", "0.005", "--light",
               "0.005", "--json", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()) | {"stdout": proc.stdout}


@pytest.mark.broker
def test_run_latency_puts_the_workers_a_round_trip_away(broker, cli, tmp_path):
    far1 = _run_json(cli, tmp_path, "--prefetch", "1", "--latency", "40")
    far10 = _run_json(cli, tmp_path, "--prefetch", "10", "--latency", "40")
    for s in (far1, far10):
        assert s["tasks_completed"] == 100 and s["tasks_lost"] == 0
        assert s["throughput_tps"] == pytest.approx(100 / s["makespan_s"], rel=0.01)
        assert f"throughput {s['throughput_tps']:.1f} tasks/s" in s["stdout"]
    assert far1["latency_ms"] == far10["latency_ms"] == 40
    # Prefetch 1, 40 ms away: each of a worker's 50 tasks waits a whole round trip first.
    assert far1["makespan_s"] >= 50 * 0.040
    assert far1["throughput_tps"] <= throughput_bound(2, 1, 0.040, 0.005)
    # Ten in flight hide that wait (the bound says 9 times as many tasks/s; ask for twice,
    # which a pause of a second or so on this shared machine cannot take away).
    assert far10["throughput_tps"] > 2 * far1["throughput_tps"], (far1, far10)


@pytest.mark.parametrize("value", ["nan", "20000"])
def test_run_refuses_a_bad_latency_in_one_sentence(cli, one_sentence, value):
    proc = cli("run", "--workers", "1", "--prefetch", "1", "--tasks", "2", "--latency", value)
    one_sentence(proc, "round trip must be 0 to 10000 ms")


@pytest.mark.broker
def test_the_pool_owns_its_proxy(broker, queue):
    with WorkerPool(broker.url, queue, WorkerConfig(prefetch=1), latency_ms=10) as pool:
        pool.start(1)
        proxy = pool.proxy
        assert proxy is not None and pid_alive(proxy.pid) and proxy.pid != pool.workers["w1"].pid
    assert proxy.process.returncode is not None and not pid_alive(proxy.pid)
    assert WorkerPool(broker.url, queue, latency_ms=0).proxy is None  # 0: connect directly


# -- the lessons on the real broker ------------------------------------------------------

@pytest.mark.broker
def test_far_workers_need_the_recommended_prefetch(broker):
    from helpers.lessons import distance

    grid = distance.prefetch_grid(round_trips_ms=(0, 30), prefetches=(1, 10), seconds=0.3,
                                  broker=broker)
    own = distance.own_round_trip_ms(grid)
    assert own > 0 and grid["own_round_trip_ms"].nunique() == 1  # one run of its own
    rec = {r: prefetch.recommend_prefetch((r + own) / 1000, 0.005) for r in (0, 30)}
    # the grid ran each distance's recommendation too, in prefetch order
    assert list(zip(grid["round_trip_ms"], grid["prefetch"])) == \
        [(r, p) for r in (0, 30) for p in sorted({1, 10, rec[r]})]
    assert (grid["lost"] == 0).all()
    cell = grid.set_index(["round_trip_ms", "prefetch"])["busy"]
    # 30 ms away at prefetch 1 a 5 ms task cycle is at least 35 ms: busy at most 1/7.
    assert cell[(30, 1)] <= 0.2
    checked = distance.best_prefetch(grid)
    assert checked.at[30, "recommended"] == rec[30] >= 7  # (30 + own + 5) / 5
    assert checked.at[30, "grid_prefetch"] == rec[30]  # measured, not the next value up
    assert cell[(30, rec[30])] > 2 * cell[(30, 1)], grid


@pytest.mark.broker
def test_workers_added_mid_run_join_and_drain_the_backlog(broker):
    from helpers.lessons import scaling

    result = scaling.drain(scaling.DRAIN.replace(workers=1, add=3, tasks=60, after_s=0.5),
                           broker=broker)
    s = result.summary
    assert s["tasks_completed"] == 60 and s["tasks_lost"] == 0
    assert s["latency_ms"] == 0  # no proxy unless asked for
    assert s["throughput_tps"] == pytest.approx(60 / s["makespan_s"], rel=0.01)
    assert s["workers_added"] == 3 and s["joined_s"] >= s["started_s"] >= 0.5
    done = result.deliveries.dropna(subset=["finished_t"]).groupby("worker").size()
    assert len(done) == 4, done  # the added workers took tasks too
    rates = scaling.drain_rates(result)
    assert rates["tasks_per_s_before"] <= 1 / 0.040  # one sleeping worker: 25 tasks/s at most
    assert rates["tasks_per_s_after"] > rates["tasks_per_s_before"], rates


def test_run_keeps_the_bad_latency_from_the_broker():
    with pytest.raises(BadInputError, match="round trip"):
        runner.run(Experiment(1, tasks.equal(1, 0.0), WorkerConfig(prefetch=1), latency_ms=-1,
                              save=False))


def test_saturation_keeps_the_better_of_two_runs_of_the_fewest(monkeypatch):
    """One worker runs first and last; a pause only lowers a rate, so the better one stays,
    and both are shown (no broker: the runs are made up)."""
    from types import SimpleNamespace

    from helpers.lessons import scaling

    rates = iter([700.0, 4000.0, 3500.0, 2800.0])  # 1 worker paused, 2, 4, 1 worker again

    def fake_run(exp, **_):
        rate = next(rates)
        return SimpleNamespace(summary={"tasks_completed": 2000, "makespan_s": 2000 / rate,
                                        "throughput_tps": rate, "tasks_lost": 0})

    monkeypatch.setattr(scaling.runner, "run", fake_run)
    table = scaling.saturation((1, 2, 4)).set_index("workers")
    assert list(table.index) == [1, 2, 4]
    assert table.at[1, "tasks_per_s"] == 2800.0 and table.at[1, "runs_tasks_per_s"] == [700.0,
                                                                                        2800.0]
    assert table.at[4, "tasks_per_s"] == 3500.0 and table.at[4, "runs_tasks_per_s"] == [3500.0]
