"""The command line: contract output and one-sentence errors (no tracebacks)."""
import json
import os
import subprocess
import sys

import pytest

from helpers.broker import _free_port


def cli(*args, env=None, timeout=120):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


def assert_one_sentence(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0]), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--workers", "0", "--prefetch", "1", "--tasks", "4"], "workers"),
    (["--workers", "-1", "--prefetch", "1", "--tasks", "4"], "workers"),
    (["--workers", "2", "--prefetch", "-1", "--tasks", "4"], "prefetch"),
    (["--workers", "2", "--prefetch", "1", "--tasks", "0"], "--tasks"),
    (["--workers", "2", "--prefetch", "1"], "--tasks"),
    (["--workers", "2", "--prefetch", "1", "--tasks", "4", "--heavy", "-1"], "--heavy"),
])
def test_bad_run_values_exit_with_one_sentence(args, fragment):
    assert_one_sentence(cli("run", *args), fragment)


def test_workload_without_duration_column(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("id,seconds\na,1\n")
    assert_one_sentence(cli("run", "--workers", "1", "--prefetch", "1", "--workload", str(path)),
                        "no 'duration' column")


def test_broker_down_is_one_sentence():
    url = f"amqp://guest:guest@127.0.0.1:{_free_port()}/%2F"
    proc = cli("run", "--workers", "1", "--prefetch", "1", "--tasks", "2",
               env={"AMQP_URL": url})
    assert_one_sentence(proc, "Could not connect", "127.0.0.1")


@pytest.mark.broker
def test_wrong_password_is_one_sentence_and_masked(broker):
    url = broker.url.replace("guest:guest", "guest:hunter2")
    proc = cli("run", "--workers", "1", "--prefetch", "1", "--tasks", "2", env={"AMQP_URL": url})
    assert_one_sentence(proc, "user name or password")
    assert "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.broker
def test_run_json_contract(broker, tmp_path):
    out = tmp_path / "run.json"
    proc = cli("run", "--workers", "2", "--prefetch", "1", "--tasks", "6", "--heavy", "0.05",
               "--light", "0.01", "--json", str(out), env={"AMQP_URL": broker.url})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["workers"] == 2 and summary["prefetch"] == 1
    assert summary["tasks_completed"] == 6 and summary["tasks_lost"] == 0
    assert "makespan" in proc.stdout


@pytest.mark.broker
def test_broker_url_and_status(broker):
    env = {"AMQP_URL": broker.url} if broker.kind == "external" else {}
    proc = cli("broker", "url", env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == broker.url
    status = cli("broker", "status", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
    assert "guest:guest" not in status.stdout


@pytest.mark.broker
def test_new_task_tutorial_parity(broker, channel):
    from helpers import topology
    spec = topology.QueueSpec("test-new-task")
    proc = cli("new-task", "Hello...", "--queue", spec.name, env={"AMQP_URL": broker.url})
    try:
        assert proc.returncode == 0, proc.stderr
        assert "Sent 'Hello...'" in proc.stdout
        assert topology.message_count(channel, spec.name) == 1
    finally:
        topology.delete(channel, spec)
