"""Metrics from synthetic events (no broker): the definitions of DESIGN section 5."""
import math

import pytest

from helpers.measure import timing


def _events(worker, seq, task, start, end, redelivered=False, ack=True):
    key = f"{worker}:{seq}"
    out = [{"event": "delivered", "worker": worker, "delivery": key, "task": task,
            "redelivered": redelivered, "t": start},
           {"event": "started", "worker": worker, "delivery": key, "task": task, "t": start}]
    if end is not None:
        out.append({"event": "finished", "worker": worker, "delivery": key, "task": task,
                    "t": end})
        if ack:
            out.append({"event": "acked", "worker": worker, "delivery": key, "task": task,
                        "t": end})
    return out


def test_ideal_makespan_is_a_lower_bound():
    assert timing.ideal_makespan([1, 1, 1, 1], 2) == 2
    assert timing.ideal_makespan([5, 1], 4) == 5  # the longest task bounds it
    assert timing.ideal_makespan([2, 2], 2, speeds=[1, 3]) == pytest.approx(1.0)


def test_jain_index():
    assert timing.jain([2, 2, 2]) == pytest.approx(1.0)
    assert timing.jain([3, 0, 0]) == pytest.approx(1 / 3)
    assert math.isnan(timing.jain([0, 0]))


def test_summary_counts_loss_duplicates_and_redeliveries():
    events = (_events("w1", 1, "a", 100.0, 101.0)
              + _events("w1", 2, "b", 101.0, None)            # cut: worker died
              + _events("w2", 1, "b", 101.5, 102.5, redelivered=True)
              + _events("w2", 2, "a", 102.5, 103.0, redelivered=True))  # a done twice
    summary = timing.summarize(events, ["a", "b", "c"], ["a", "b", "c"],
                               {"a": 1.0, "b": 1.0, "c": 1.0}, ["w1", "w2"], 100.0)
    assert summary["tasks_completed"] == 2
    assert summary["tasks_lost"] == 1          # c was confirmed, never completed
    assert summary["duplicates"] == 1
    assert summary["redeliveries"] == 2
    assert summary["makespan_s"] == pytest.approx(3.0)
    assert summary["ideal_makespan_s"] == pytest.approx(1.5)
    per = {r["worker"]: r for r in summary["per_worker"]}
    assert per["w1"]["tasks"] == 1 and per["w2"]["tasks"] == 2
    assert per["w2"]["busy_s"] == pytest.approx(1.5)


def test_deliveries_outcomes():
    events = _events("w1", 1, "a", 1.0, 2.0) + _events("w1", 2, "b", 2.0, None) \
        + _events("w2", 1, "c", 1.0, 1.5, ack=False)
    df = timing.deliveries(events, t0=1.0).set_index("task")
    assert df.loc["a", "outcome"] == "acked"
    assert df.loc["b", "outcome"] == "cut"
    assert df.loc["c", "outcome"] == "finished"
    assert df.loc["a", "end_s"] == pytest.approx(1.0)


def test_idle_worker_appears_with_zero_tasks():
    events = _events("w1", 1, "a", 0.0, 1.0)
    summary = timing.summarize(events, ["a"], ["a"], {"a": 1.0}, ["w1", "w2"], 0.0)
    assert [r["worker"] for r in summary["per_worker"]] == ["w1", "w2"]
    assert summary["imbalance"] == pytest.approx(2.0)


def test_save_run_writes_csv_and_json(tmp_path):
    events = _events("w1", 1, "a", 0.0, 1.0)
    summary = timing.summarize(events, ["a"], ["a"], {"a": 1.0}, ["w1"], 0.0)
    folder = timing.save_run(summary, timing.deliveries(events), "t", runs_dir=tmp_path)
    assert (folder / "deliveries.csv").exists() and (folder / "summary.json").exists()


def test_deliveries_carry_nominal_durations():
    events = _events("w1", 1, "a", 1.0, 2.0) + _events("w1", 2, "b", 2.0, 2.5)
    by_task = timing.deliveries(events, durations={"a": 1.0, "b": 0.5}).set_index("task")
    assert by_task.loc["a", "duration"] == 1.0 and by_task.loc["b", "duration"] == 0.5
    assert set(timing.deliveries(events, durations=0.3)["duration"]) == {0.3}
    assert "duration" not in timing.deliveries(events)


# -- figures that cannot be computed: None in the summary, a clause in the table, null in JSON

def _no_nan(summary) -> None:
    import json

    from helpers.measure import figures

    text = timing.table(summary)
    assert "nan" not in text.lower() and "inf" not in text.lower(), text
    dumped = figures.dumps(summary)
    assert "NaN" not in dumped and "Infinity" not in dumped
    json.loads(dumped)  # strict JSON


def test_tasks_of_no_length_have_no_ideal_ratio():
    events = _events("w1", 1, "a", 10.0, 10.001) + _events("w2", 1, "b", 10.0, 10.002)
    summary = timing.summarize(events, ["a", "b"], ["a", "b"], {"a": 0.0, "b": 0.0},
                               ["w1", "w2"], 9.9)
    assert summary["ideal_makespan_s"] == 0
    assert summary["makespan_over_ideal"] is None and summary["efficiency"] is None
    assert summary["throughput_tps"] == pytest.approx(2 / 0.102, rel=0.01)
    assert "no makespan/ideal (the tasks take no time, so the ideal makespan is 0 s)" \
        in timing.table(summary)
    _no_nan(summary)


def test_nobody_busy_has_no_jain_index_and_no_imbalance():
    events = _events("w1", 1, "a", 10.0, 10.0) + _events("w2", 1, "b", 10.0, 10.0)
    summary = timing.summarize(events, ["a", "b"], ["a", "b"], {"a": 0.0, "b": 0.0},
                               ["w1", "w2"], 10.0)
    assert summary["jain"] is None and summary["imbalance"] is None
    assert summary["makespan_s"] == 0 and summary["throughput_tps"] is None
    table = timing.table(summary)
    assert "no imbalance (no worker was busy), no Jain's index (no worker was busy)" in table
    _no_nan(summary)


def test_nothing_completed_has_no_makespan():
    events = _events("w1", 1, "a", 10.0, None)
    summary = timing.summarize(events, ["a"], ["a"], {"a": 1.0}, ["w1"], 10.0)
    assert summary["makespan_s"] is None and summary["throughput_tps"] is None
    assert "no makespan (no task was completed)" in timing.table(summary)
    _no_nan(summary)


def test_json_has_null_where_a_figure_is_nan_at_any_depth():
    from helpers.measure import figures

    value = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": "x"}
    assert figures.dumps(value) == '{"a": null, "b": [1.0, null, {"c": null}], "d": "x"}'
    assert figures.text({"spawn_s": float("nan")}, "spawn_s") == \
        "no spawn time (it was not recorded)"


def test_a_table_says_why_a_cell_is_empty():
    import pandas as pd
    from helpers.measure import figures

    table = pd.DataFrame({"ideal_s": [0.0, 0.5], "makespan_over_ideal": [None, 1.2],
                          "on_cores": [float("nan"), 0.4], "note": [None, "x"]})
    shown = figures.explained(table, {"ideal_s": "ideal_makespan_s"},
                              {"on_cores": "as ideal_s: sleeping takes no core"})
    assert shown.loc[0, "makespan_over_ideal"] == f"none: {figures.NO_LENGTH}"
    assert shown.loc[1, "makespan_over_ideal"] == 1.2
    assert shown.loc[0, "on_cores"] == "as ideal_s: sleeping takes no core"
    assert pd.isna(shown.loc[0, "note"])  # a column nobody explained is left as it was
    assert pd.isna(table.loc[0, "makespan_over_ideal"])  # the figures themselves are untouched
