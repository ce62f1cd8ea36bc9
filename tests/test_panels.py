"""Control panels: values, the Run button's thread, errors, the Kill button (no broker)."""
import inspect
import threading

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402

from helpers.errors import BadInputError  # noqa: E402
from helpers.lessons import acks, backlog, backpressure, cluster, common, distance, durability, durability_confirms, fair_dispatch, forgotten_ack, frameworks, panels, pitfalls, priorities, retries, round_robin


def far_panel():
    """Notebook 05's panel draws on a measured grid; two made-up rows stand in for it."""
    import pandas as pd
    grid = pd.DataFrame({"round_trip_ms": [0, 0], "prefetch": [1, 5], "workers": [1, 1],
                         "task_ms": [5.0, 5.0], "tasks_per_s_per_worker": [150.0, 190.0],
                         "busy": [0.8, 0.97], "task_took_ms": [5.3, 5.2],
                         "own_round_trip_ms": [1.2, 1.2]})
    return distance.far_panel(grid)


def node_loss_panel():
    """Notebook 07's panel names the cluster's nodes; a lab of three names stands in for it."""
    from types import SimpleNamespace
    names = [f"rabbit-{i}@localhost" for i in (1, 2, 3)]
    return cluster.node_loss_panel(SimpleNamespace(cluster=SimpleNamespace(names=names)))


FACTORIES = [round_robin.round_robin_panel, acks.kill_panel, forgotten_ack.forgotten_ack_panel,
             durability.survival_panel, durability_confirms.confirms_panel,
             fair_dispatch.fair_dispatch_panel, fair_dispatch.sweep_panel,
             fair_dispatch.speeds_panel, backlog.backlog_panel, far_panel,
             pitfalls.pitfall_panel, node_loss_panel, retries.panel, priorities.panel,
             backpressure.panel, frameworks.kill_panel, frameworks.dispatch_panel]


def _panel(experiment, report=lambda result: [result]):
    return panels.Panel("test", experiment, report, {
        "workers": panels.int_slider("workers", 3, 1, 8),
        "duration": panels.float_slider("seconds", 0.3, 0.05, 2.0, 0.05)})


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_every_control_is_a_parameter_of_its_experiment(factory):
    panel = factory()
    params = inspect.signature(panel.experiment).parameters
    assert set(panel.values()) <= set(params), f"{factory.__name__}: a control has no parameter"
    assert "progress" in params
    for name, value in panel.values().items():
        default = params[name].default
        if name != "victim" and default is not inspect.Parameter.empty:
            assert value == default, f"{factory.__name__}: {name} {value!r} != {default!r}"


def test_run_passes_the_values_and_reports_progress():
    seen = {}

    def experiment(workers, duration, progress):
        seen.update(workers=workers, duration=duration)
        progress(3, 4)
        return "done"

    panel = _panel(experiment)
    assert panel.run() == "done"
    assert seen == {"workers": 3, "duration": 0.3}
    assert (panel.progress.value, panel.progress.max, panel.count.value) == (3, 4,
                                                                          "3/4 tasks")
    panel.run(workers=5)
    assert seen["workers"] == 5
    assert not panel.button.disabled and panel.status.value.startswith("done")


def test_a_new_run_starts_from_an_empty_bar_and_counter():
    seen = []

    def experiment(workers, duration, progress):
        seen.append((panel.progress.value, panel.count.value, panel.progress.bar_style))
        progress(12, 12)
        return "done"

    panel = _panel(experiment)
    panel.run()
    panel.run()
    assert seen == [(0, "", ""), (0, "", "")], "the last run's count beside a new run"


def test_a_failed_run_shows_where_it_stopped():
    def experiment(workers, duration, progress):
        progress(5, 40)
        raise BadInputError("the broker went away; start it and run again.")

    panel = _panel(experiment)
    panel._progress(40, 40)  # what a finished earlier run leaves
    with pytest.raises(BadInputError):
        panel.run()
    assert (panel.progress.value, panel.count.value) == (5, "5/40 tasks")
    assert panel.progress.bar_style == "danger" and "went away" in panel.status.value


def test_a_phase_shows_in_the_status_while_running():
    def experiment(workers, duration, progress):
        progress(4, 4, "restarting the broker")
        seen.append(panel.status.value)

    seen = []
    panel = _panel(experiment)
    panel.run()
    assert seen == ["running: restarting the broker ..."]
    assert panel.status.value.startswith("done in")


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_labels_fit_their_width(factory):
    labels = [c.description for c in factory().controls.values()]
    assert max(map(len, labels)) <= panels.LABEL_CHARS


def test_a_label_too_long_to_show_is_refused():
    with pytest.raises(ValueError, match="cut off"):
        panels.Panel("t", lambda progress: None, list,
                     {"x": panels.int_slider("x" * (panels.LABEL_CHARS + 1), 1, 0, 2)})


def test_button_runs_in_a_thread_and_fills_the_output():
    release = threading.Event()

    def experiment(workers, duration, progress):
        release.wait(5)
        return workers

    panel = _panel(experiment, report=lambda n: [common.Text(f"{n} workers")])
    panel.button.click()
    assert panel.running, "the run must not block the caller (the kernel)"
    panel.button.click()  # a second press while running is ignored
    release.set()
    panel.wait(10)
    assert not panel.running and panel.error is None
    texts = [o["data"]["text/plain"] for o in panel.output.outputs]
    assert texts == ["3 workers"]


def test_a_bad_value_ends_in_one_sentence_in_the_status():
    def experiment(workers, duration, progress):
        raise BadInputError("workers must be at least 1 (got 0).")

    panel = _panel(experiment)
    panel.button.click()
    panel.wait(10)
    assert panel.error == "workers must be at least 1 (got 0)."
    assert "workers must be at least 1" in panel.status.value
    assert "Traceback" not in panel.status.value
    assert not panel.button.disabled


def test_kill_button_kills_the_chosen_worker_during_a_run():
    class FakePool:
        def __init__(self):
            self.killed = []

        def kill(self, name):
            self.killed.append(name)
            return type("Handle", (), {"pid": 4242})()

    pool, attached, release = FakePool(), threading.Event(), threading.Event()

    def experiment(workers, victim, progress, on_pool):
        on_pool(pool)
        attached.set()
        release.wait(5)
        return victim

    panel = panels.KillPanel("kill", experiment, lambda r: [r], {
        "workers": panels.int_slider("workers", 3, 2, 6),
        "victim": panels.dropdown("victim", ["w1"], "w1")})
    assert panel.controls["victim"].options == ("w1", "w2", "w3")
    panel.controls["workers"].value = 5
    assert panel.controls["victim"].options[-1] == "w5"
    panel.controls["victim"].value = "w4"
    assert panel.kill_button.disabled
    panel.button.click()
    assert attached.wait(5)
    assert not panel.kill_button.disabled
    panel.kill_button.click()
    release.set()
    panel.wait(10)
    assert pool.killed == ["w4"] and "killed w4" in panel.status.value
    assert panel.kill_button.disabled and panel.pool is None


def test_fewer_workers_keep_a_valid_victim():
    panel = acks.kill_panel()
    panel.controls["workers"].value = 5
    panel.controls["victim"].value = "w5"
    panel.controls["workers"].value = 2
    assert panel.controls["victim"].value == "w1"


@pytest.mark.parametrize("text, expected", [("1, 3", [1.0, 3.0]), ("2;0.5", [2.0, 0.5]),
                                            (" 1 ,1, 4 ", [1.0, 1.0, 4.0])])
def test_speeds_text(text, expected):
    assert fair_dispatch.parse_speeds(text) == expected


@pytest.mark.parametrize("text", ["", "fast, slow", "1, 0", "-1"])
def test_bad_speeds_are_one_sentence(text):
    with pytest.raises(BadInputError, match="like '1, 3'"):
        fair_dispatch.parse_speeds(text)
