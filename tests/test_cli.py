"""The command line: contract output and one-sentence errors (no tracebacks)."""
import json

import pytest

from helpers.procs import free_port


@pytest.mark.parametrize("args, fragment", [
    (["--workers", "0", "--prefetch", "1", "--tasks", "4"], "workers"),
    (["--workers", "-1", "--prefetch", "1", "--tasks", "4"], "workers"),
    (["--workers", "2", "--prefetch", "-1", "--tasks", "4"], "prefetch"),
    (["--workers", "2", "--prefetch", "1", "--tasks", "0"], "--tasks"),
    (["--workers", "2", "--prefetch", "1"], "--tasks"),
    (["--workers", "2", "--prefetch", "1", "--tasks", "4", "--heavy", "-1"], "--heavy"),
])
def test_bad_run_values_exit_with_one_sentence(args, fragment, cli, one_sentence):
    one_sentence(cli("run", *args), fragment)


def test_workload_without_duration_column(tmp_path, cli, one_sentence):
    path = tmp_path / "w.csv"
    path.write_text("id,seconds\na,1\n")
    one_sentence(cli("run", "--workers", "1", "--prefetch", "1", "--workload", str(path)),
                        "no 'duration' column")


def test_broker_down_is_one_sentence(cli, one_sentence):
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    proc = cli("run", "--workers", "1", "--prefetch", "1", "--tasks", "2",
               env={"AMQP_URL": url})
    one_sentence(proc, "Could not connect", "127.0.0.1")


@pytest.mark.broker
def test_wrong_password_is_one_sentence_and_masked(broker, cli, one_sentence):
    url = broker.url.replace("guest:guest", "guest:hunter2")
    proc = cli("run", "--workers", "1", "--prefetch", "1", "--tasks", "2", env={"AMQP_URL": url})
    one_sentence(proc, "user name or password")
    assert "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.broker
def test_run_json_contract(broker, tmp_path, cli):
    out = tmp_path / "run.json"
    proc = cli("run", "--workers", "2", "--prefetch", "1", "--tasks", "6", "--heavy", "0.05",
               "--light", "0.01", "--json", str(out), env={"AMQP_URL": broker.url})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["workers"] == 2 and summary["prefetch"] == 1
    assert summary["tasks_completed"] == 6 and summary["tasks_lost"] == 0
    assert "makespan" in proc.stdout


@pytest.mark.broker
def test_broker_url_and_status(broker, cli):
    env = {"AMQP_URL": broker.url} if broker.kind == "external" else {}
    proc = cli("broker", "url", env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == broker.url
    status = cli("broker", "status", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
    assert "guest:guest" not in status.stdout


@pytest.mark.broker
def test_new_task_tutorial_parity(broker, channel, cli):
    from helpers.core import topology
    spec = topology.QueueSpec("test-new-task")
    proc = cli("new-task", "Hello...", "--queue", spec.name, env={"AMQP_URL": broker.url})
    try:
        assert proc.returncode == 0, proc.stderr
        assert "Sent 'Hello...'" in proc.stdout
        assert topology.message_count(channel, spec.name) == 1
    finally:
        topology.delete(channel, spec)


# -- help, --version, the bare command ----------------------------------------------------

def _parsers():
    """(name, parser) for every command of ``python -m helpers``, and the cluster's own."""
    import argparse

    from helpers.__main__ import build_parser
    from helpers.broker import cluster_cli

    main = build_parser("python -m helpers")
    sub = next(a for a in main._actions if isinstance(a, argparse._SubParsersAction))
    return [("python -m helpers", main), *sub.choices.items(),
            ("python -m helpers.broker.cluster_cli", cluster_cli.build_parser())]


def _options(parser):
    import argparse
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@pytest.mark.parametrize("name, parser", [pytest.param(*p, id=p[0]) for p in _parsers()])
def test_every_option_is_described_with_its_default(name, parser):
    """Each option and argument has words in --help; each option says its default (or that
    it is required), the unit of a number in seconds or ms among them."""
    for action in _options(parser):
        label = "/".join(action.option_strings) or action.dest
        assert action.help and len(action.help) > 15, f"{name} {label}: no description"
        if action.option_strings and action.dest != "version":
            assert "default" in action.help or "required" in action.help, \
                f"{name} {label}: its default is not said ({action.help!r})"
        if action.metavar in ("S", "MS"):
            assert any(unit in action.help for unit in ("second", " s", "ms")), \
                f"{name} {label}: no unit ({action.help!r})"


def test_help_of_run_describes_every_option(cli):
    """The options the issue found bare, as a person reads ``run --help``."""
    proc = cli("run", "--help")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    for option in ("--workers", "--kind", "--ack", "--mode", "--heartbeat", "--seed"):
        at = next(i for i, x in enumerate(lines) if x.strip().startswith(option + " "))
        # option, metavar, words; or the words on the next line, indented under the others
        assert len(lines[at].split()) > 2 or lines[at + 1].startswith(" " * 20), option
    assert "(default: 0.2 s" in proc.stdout and "example: python -m helpers run" in proc.stdout


def test_bare_command_lists_every_command_with_an_example(cli):
    from helpers.cli.parser import COMMANDS

    proc = cli()
    assert proc.returncode == 2, "no command ran: a script must not take it for success"
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr
    for name, (_, example) in COMMANDS.items():
        assert f"\n  {name} " in proc.stdout
        assert f"e.g. python -m helpers {example}" in proc.stdout


def test_version_without_a_broker_answering(cli):
    from helpers.cli.about import package_version

    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    proc = cli("--version", env={"AMQP_URL": url}, timeout=20)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith(f"rabbitmq-work-queues {package_version()} ")
    assert second.startswith("broker: external broker at amqp://guest:***@127.0.0.1:")
    assert second.endswith("not answering")


@pytest.mark.broker
def test_version_names_the_running_broker(broker, cli):
    env = {"AMQP_URL": broker.url} if broker.kind == "external" else {}
    proc = cli("--version", env=env, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert f"RabbitMQ {broker.version()}" in proc.stdout.splitlines()[1]


# -- figures that cannot be computed ------------------------------------------------------

@pytest.mark.broker
def test_tasks_of_no_length_print_no_nan(broker, tmp_path, cli):
    out = tmp_path / "run.json"
    proc = cli("run", "--workers", "2", "--prefetch", "10", "--tasks", "50", "--heavy", "0",
               "--light", "0", "--json", str(out), env={"AMQP_URL": broker.url})
    assert proc.returncode == 0, proc.stderr
    assert "nan" not in proc.stdout.lower() and "inf" not in proc.stdout.lower()
    assert "no makespan/ideal (the tasks take no time" in proc.stdout
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    assert summary["makespan_over_ideal"] is None and summary["efficiency"] is None
    assert summary["ideal_makespan_s"] == 0 and summary["tasks_completed"] == 50


def test_the_installed_workqueues_command():
    """``make install`` puts ``workqueues`` beside the interpreter: the same command line."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("workqueues")
    if not script.exists():
        pytest.skip(f"no {script}: the package is not installed in this environment")
    proc = subprocess.run([str(script), "run", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: workqueues run ")
