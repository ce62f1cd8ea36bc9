"""Celery and Dramatiq workers on the project's broker (notebook 09, ``run --framework``).

The unit tests need no broker; the ``broker`` tests start real Celery and Dramatiq workers.
Without the ``frameworks`` extra (``pip install -e ".[frameworks]"``) the tests that need a
framework skip locally and fail under CI, which installs it (``make test``).
"""
import csv
import json
from pathlib import Path

import pytest

from support import IN_CI
from helpers import frameworks
from helpers.errors import BadInputError
from helpers.frameworks.config import FrameworkConfig
from helpers.measure import timing

ROOT = Path(__file__).resolve().parent.parent
#: The ``run --json`` keys of DESIGN.md section 6, for every kind of worker.
CONTRACT = {"workers", "prefetch", "tasks_published", "tasks_completed", "tasks_lost",
            "duplicates", "redeliveries", "makespan_s", "ideal_makespan_s", "spawn_s",
            "per_worker"}


def needs(*names: str) -> None:
    absent = [n for n in names if not frameworks.available(n)]
    if absent:
        message = f"{', '.join(absent)} not installed ({frameworks.INSTALL_HINT})"
        pytest.fail(message) if IN_CI else pytest.skip(message)


# -- no broker ----------------------------------------------------------------------------

def test_settings_are_only_what_a_run_chooses():
    assert FrameworkConfig("celery").settings() == {}
    assert FrameworkConfig("celery").label == "Celery defaults"
    fair = FrameworkConfig("celery", prefetch=1, acks_late=True, reject_on_worker_lost=True)
    assert fair.settings() == {"worker_prefetch_multiplier": 1, "task_acks_late": True,
                               "task_reject_on_worker_lost": True}
    assert FrameworkConfig("dramatiq", prefetch=1).settings() == {"dramatiq_queue_prefetch": 1}


@pytest.mark.parametrize("config, prefetch_count", [
    (FrameworkConfig("celery"), 4), (FrameworkConfig("celery", prefetch=1), 1),
    (FrameworkConfig("celery", prefetch=0), 0), (FrameworkConfig("dramatiq"), 2),
    (FrameworkConfig("dramatiq", prefetch=3), 3), (FrameworkConfig("dramatiq", prefetch=0), 65535),
])
def test_prefetch_maps_to_each_framework(config, prefetch_count):
    assert config.effective_prefetch == prefetch_count


def test_bad_framework_settings_are_one_sentence():
    with pytest.raises(BadInputError, match="framework must be one of"):
        FrameworkConfig("rq")
    with pytest.raises(BadInputError, match="Dramatiq always acks after the task"):
        FrameworkConfig("dramatiq", acks_late=True)
    with pytest.raises(BadInputError, match="prefetch must be"):
        FrameworkConfig("celery", prefetch=-1)


def test_defaults_are_the_installed_ones():
    """What config.py assumes of each framework is what the installed versions do."""
    needs("celery", "dramatiq")
    from celery.app.defaults import DEFAULTS
    from helpers.frameworks import config, defaults

    assert DEFAULTS["worker_prefetch_multiplier"] == config.CELERY_MULTIPLIER
    assert DEFAULTS["task_acks_late"] is False and not DEFAULTS["task_reject_on_worker_lost"]
    assert defaults.dramatiq()["prefetch"][1].startswith(f"0 = {config.DRAMATIQ_PER_THREAD} x")
    assert set(defaults.celery()) == set(defaults.dramatiq()) == {k for k, *_ in defaults.CONCEPTS}


def test_the_pinned_versions_are_installed():
    needs("celery", "dramatiq")
    from helpers.frameworks import defaults
    import tomllib

    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["frameworks"]
    installed = defaults.versions()
    assert sorted(pins) == sorted(f"{n}=={installed[n]}" for n in ("celery", "dramatiq"))


def test_the_mapping_table_has_every_concept():
    needs("celery", "dramatiq")
    from helpers.frameworks import defaults
    from helpers.lessons import frameworks as lesson

    table = lesson.mapping_table()
    assert len(table) == len(defaults.CONCEPTS) and (table["measured here"] == "-").all()


def test_the_skewed_workload_file_is_the_lessons():
    from helpers.lessons import frameworks as lesson

    with (ROOT / "data" / "workloads" / "skewed.csv").open() as fh:
        rows = [(r["id"], float(r["duration"])) for r in csv.DictReader(fh)]
    assert rows == [(t.id, t.duration) for t in lesson.workload("skewed")]
    assert [i for i, (_, d) in enumerate(rows, 1) if d > 0.1] == [4, 8, 9, 12, 14, 40]


def test_a_missing_framework_is_one_sentence(monkeypatch, capsys):
    from helpers import __main__ as cli

    monkeypatch.setattr(frameworks, "available", lambda name: False)
    assert cli.main(["run", "--framework", "celery", "--workers", "1", "--prefetch", "1",
                     "--tasks", "2"]) == 2
    assert 'pip install -e ".[frameworks]"' in capsys.readouterr().err


# -- real workers -------------------------------------------------------------------------

@pytest.mark.broker
@pytest.mark.parametrize("name", ["celery", "dramatiq"])
def test_every_task_completes_with_the_projects_events(broker, name):
    needs(name)
    from helpers.core import tasks
    from helpers.experiment import skeleton
    from helpers.experiment.value import Experiment

    work = tuple(tasks.odd_heavy(8, 0.1, 0.01))
    result = skeleton.run(Experiment(2, work, framework=FrameworkConfig(name, prefetch=1),
                                     save=False, label=f"test-{name}"), broker=broker)
    s = result.summary
    assert (s["tasks_completed"], s["tasks_lost"], s["duplicates"]) == (8, 0, 0)
    assert s["framework"] == name and s["prefetch"] == 1
    assert set(result.deliveries["outcome"]) == {"acked"}
    again = timing.summarize(result.events, [t.id for t in work], [t.id for t in work],
                             {t.id: t.duration for t in work}, ["w1", "w2"],
                             result.publish.t_first)
    assert again["tasks_completed"] == 8 and again["makespan_s"] == s["makespan_s"]
    assert {w["worker"] for w in s["per_worker"]} == {"w1", "w2"}


@pytest.mark.broker
def test_a_killed_task_is_lost_or_redelivered_as_the_notebook_says(broker):
    """Notebook 09's kill table: which settings lose the task whose process is SIGKILLed."""
    needs("celery", "dramatiq")
    from helpers.lessons import acks
    from helpers.lessons import frameworks as lesson

    expected = {"Celery defaults": "lost", "Celery acks_late": "lost",
                "Celery acks_late + reject_on_worker_lost": "redelivered",
                "Dramatiq defaults": "redelivered"}
    for label, fate in expected.items():
        result = acks.kill_run(lesson.KILL.replace(tasks=6, framework=lesson.KILLS[label]),
                               broker=broker)
        assert lesson.fate(result) == fate, f"{label}: {acks.fate_table(result)}"
        assert result.summary["tasks_completed"] == 6 - (fate == "lost")
        assert result.summary["duplicates"] == 0


@pytest.mark.broker
@pytest.mark.parametrize("name", ["pika", "celery", "dramatiq"])
def test_run_framework_json_contract(broker, tmp_path, cli, name):
    if name != "pika":
        needs(name)
    out = tmp_path / "run.json"
    proc = cli("run", "--framework", name, "--workers", "2", "--prefetch", "1",
               "--workload", str(ROOT / "data" / "workloads" / "skewed.csv"), "--json", str(out),
               env={"AMQP_URL": broker.url})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert CONTRACT <= set(summary) and summary["framework"] == name
    assert summary["tasks_completed"] == summary["tasks_published"] == 48
    assert summary["prefetch"] == 1 and summary["tasks_lost"] == 0
    assert all(set(row) >= {"worker", "tasks", "busy_s"} for row in summary["per_worker"])


@pytest.mark.parametrize("argv, fragment", [
    (["--framework", "dramatiq", "--ack", "auto"], "Dramatiq always acks after the task"),
    (["--framework", "celery", "--prefetch", "2", "--reserve"], "the pika workers' settings"),
])
def test_run_framework_refuses_what_does_not_apply(argv, fragment, monkeypatch, capsys):
    from helpers import __main__ as cli

    monkeypatch.setattr(frameworks, "available", lambda name: True)
    base = ["run", "--workers", "1", "--tasks", "2"] + (["--prefetch", "1"]
                                                         if "--prefetch" not in argv else [])
    assert cli.main(base + argv) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.broker
def test_transient_non_exclusive_queues_as_pinned(broker):
    """What Celery up to 5.6 declares for its pidbox and celeryev queues (durable=False,
    exclusive=False): RabbitMQ 4.3.0 denies it by default (541, kombu#2237), but Debian's
    4.3.6, measured, still allows it; the broker does what data/version_facts.json pins."""
    from helpers.broker import version_facts

    row = version_facts.pinned(broker.version())
    assert row is not None, f"RabbitMQ {broker.version()}: no row in data/version_facts.json"
    measured = version_facts.non_durable_queue(broker.url)
    assert measured.split(":")[0] == row["non_durable_queue"].split(":")[0], measured


@pytest.mark.broker
def test_celery_runs_with_its_remote_control_on(broker):
    """Celery as shipped (remote control, mingle, gossip: its pidbox queue declared) starts
    and works on this broker; on RabbitMQ 4.3 only because Celery 5.7 declares that queue
    exclusive (control_queue_exclusive, default True)."""
    needs("celery")
    from helpers.core import tasks
    from helpers.experiment import skeleton
    from helpers.experiment.value import Experiment

    shipped = FrameworkConfig("celery", remote_control=True)
    result = skeleton.run(Experiment(1, tuple(tasks.equal(2, 0.01)), framework=shipped,
                                     save=False, label="test-celery-shipped"), broker=broker)
    assert result.summary["tasks_completed"] == 2
    assert result.summary["framework_settings"] == {"worker_enable_remote_control": True}
