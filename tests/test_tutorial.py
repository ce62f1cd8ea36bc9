"""The official tutorial two and this project's CLI share one work queue, in either order.

The producer and consumer here are written as tutorial two writes ``new_task.py`` and
``worker.py``: ``queue_declare(durable=True, arguments={"x-queue-type": "quorum"})``,
persistent messages, ``basic_qos(prefetch_count=1)`` and manual acks after the work. Only
the queue name (one per test) and the sleep per dot (0.1 s instead of 1 s) differ. Each
case lets one side declare the queue first and the other second: before this project
declared its queue exactly so, either order ended in ``406 PRECONDITION_FAILED``.
"""
import os
import signal
import subprocess
import sys
import time
import uuid

import pika
import pytest

from helpers.broker import management
from helpers.core import topology
from helpers.procs import wait_until
from helpers.settings import DEAD_LETTER_POLICY
from helpers.tutorial import new_task

pytestmark = pytest.mark.broker

#: The tutorial sleeps one second per dot; the test one tenth of that.
DOT_S = 0.1


def tutorial_declare(channel, queue: str) -> None:
    """The tutorial's one declaration, as ``helpers/tutorial/new_task.py`` writes it."""
    new_task.declare(channel, queue)


def tutorial_new_task(url: str, queue: str, message: str) -> None:
    """new_task.py (``helpers/tutorial/new_task.py``): declare, publish one persistent
    message, close."""
    new_task.main(message, url=url, queue=queue)


class TutorialWorker:
    """worker.py: declare, prefetch 1, manual ack after sleeping one unit per dot."""

    def __init__(self, url: str, queue: str):
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        tutorial_declare(self.channel, queue)
        self.channel.basic_qos(prefetch_count=1)
        self.done: list[bytes] = []
        self.channel.basic_consume(queue=queue, on_message_callback=self._callback)

    def _callback(self, ch, method, _properties, body: bytes) -> None:
        time.sleep(body.count(b".") * DOT_S)
        ch.basic_ack(delivery_tag=method.delivery_tag)
        self.done.append(body)

    def work(self, until: int, timeout: float = 30) -> list[bytes]:
        """Consume until ``until`` messages are done (or ``timeout``); close."""
        deadline = time.monotonic() + timeout
        while len(self.done) < until and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.2)
        self.connection.close()
        return self.done


def start_project_worker(queue: str) -> subprocess.Popen:
    """``python -m helpers worker --queue QUEUE``, as a person starts it in a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "helpers", "worker", "--queue", queue, "--unit", str(DOT_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def read_until(proc: subprocess.Popen, text: str, timeout: float = 60) -> list[str]:
    """The worker's stdout lines up to the first one containing ``text``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines
    stop(proc)
    pytest.fail(f"the worker never said {text!r}: {lines} / {proc.stderr.read()}")


def stop(proc: subprocess.Popen) -> None:
    """Ctrl+C, as the person would; then make sure it is gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def work_queue(broker):
    """A queue name of this test (the tutorial's ``task_queue`` may be a user's own)."""
    name = f"test-tutorial-{uuid.uuid4().hex[:8]}"
    yield name
    topology.discard(broker.url, topology.QueueSpec(name))


def declared_as_the_tutorial(broker, queue: str) -> None:
    """Where the management API answers: the queue has the tutorial's arguments only, and
    the dead-letter policy applies to it."""
    if not management.answers(broker):
        return
    path = "queues/" + management.vhost_path(broker, queue)
    info = management.get(broker, path)
    assert info["durable"] is True and info["arguments"] == {"x-queue-type": "quorum"}
    # The management figures trail the broker by a moment.
    assert wait_until(lambda: management.get(broker, path).get("policy") == DEAD_LETTER_POLICY,
                      10, 0.2), management.get(broker, path).get("policy")


@pytest.mark.parametrize("first", ["project", "tutorial"])
def test_project_new_task_to_tutorial_worker(broker, cli, work_queue, first):
    worker = TutorialWorker(broker.url, work_queue) if first == "tutorial" else None
    sent = cli("new-task", "Hello...", "--queue", work_queue)
    assert sent.returncode == 0, sent.stderr
    assert "Sent 'Hello...'" in sent.stdout and "quorum queue" in sent.stdout
    worker = worker or TutorialWorker(broker.url, work_queue)
    assert worker.work(until=1) == [b"Hello..."]
    declared_as_the_tutorial(broker, work_queue)


@pytest.mark.parametrize("first", ["project", "tutorial"])
def test_tutorial_new_task_to_project_worker(broker, work_queue, first):
    if first == "tutorial":
        tutorial_new_task(broker.url, work_queue, "Hello...")
    proc = start_project_worker(work_queue)
    try:
        said = read_until(proc, "Waiting for messages")
        if first == "project":
            tutorial_new_task(broker.url, work_queue, "Hello...")
        said += read_until(proc, "[x] Done")
    finally:
        stop(proc)
    print("\n".join(said))
    assert said[-2:] == [" [x] Received 'Hello...'", " [x] Done"]
    assert f"Waiting for messages in {work_queue} (quorum queue, prefetch 1, manual acks)" \
        in said[-3]
    assert not any(line.lstrip().startswith("{") for line in said), "JSON events shown"
    assert "406" not in proc.stderr.read()
    declared_as_the_tutorial(broker, work_queue)


def test_the_worker_prints_json_events_with_a_flag(broker, work_queue):
    tutorial_new_task(broker.url, work_queue, "Hello.")
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers", "worker", "--queue", work_queue, "--events",
         "--unit", str(DOT_S)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = read_until(proc, '"event":"acked"')
    finally:
        stop(proc)
    import json
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert events[:1] == ["ready"] and events[-4:] == ["delivered", "started", "finished",
                                                       "acked"]


def test_the_tutorials_declaration_is_the_projects(work_queue):
    """helpers/tutorial declares the queue word for word as helpers.core.topology does."""
    import inspect
    assert 'arguments={"x-queue-type": "quorum"}' in inspect.getsource(new_task.declare)
    calls = []

    class Recorder:
        def queue_declare(self, **kwargs):
            calls.append(("queue_declare", kwargs))

    new_task.declare(Recorder(), work_queue)
    # The project's work queue (declared last, after its dead-letter queue, whose policy
    # takes no argument of the work queue's)
    assert calls == topology.QueueSpec(work_queue).declarations()[-1:]


def test_the_tutorial_scripts_from_a_terminal(broker, work_queue):
    """``python -m helpers.tutorial.worker`` and ``... new_task "Hello."``, as the tutorial runs
    worker.py and new_task.py in two terminals: the task is received, done (1 s) and acked.

    The worker prints "Done" before it acks, as the tutorial's does, so the ack is proven by
    the next delivery (prefetch 1: the broker sends a second task only once the first is
    acked), not by the line; Ctrl+C during that second, long task puts it back."""
    env = dict(os.environ, HELPERS_TUTORIAL_QUEUE=work_queue)
    proc = subprocess.Popen([sys.executable, "-m", "helpers.tutorial.worker"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def new_task(message: str) -> str:
        sent = subprocess.run([sys.executable, "-m", "helpers.tutorial.new_task", message],
                              capture_output=True, text=True, env=env, timeout=60)
        assert sent.returncode == 0, sent.stderr
        return sent.stdout.strip()

    try:
        said = read_until(proc, "Waiting for messages")
        assert new_task("Hello.") == "[x] Sent Hello."
        said += read_until(proc, "[x] Done")
        new_task("Long" + "." * 30)  # 30 s of work: still running when Ctrl+C comes
        said += read_until(proc, "Received Long")
    finally:
        stop(proc)
    assert said[-3:] == [" [x] Received Hello.", " [x] Done", " [x] Received Long" + "." * 30]
    # Hello was acked (it is gone); Long, cut off by Ctrl+C, is ready again.
    assert wait_until(lambda: topology.count(broker.url, work_queue) == 1, 10, 0.2), \
        topology.count(broker.url, work_queue)
    declared_as_the_tutorial(broker, work_queue)
