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
