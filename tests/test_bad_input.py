"""Bad input: each answered by one clear sentence, nothing lost, no traceback from the CLI.

Covered elsewhere and not repeated here: bad ``run`` numbers, a workload without a
``duration`` column, ``run`` with the broker down or a wrong password (test_cli.py); wrong
password and unknown vhost when connecting (test_broker.py); malformed bodies and bad
workload lines at the parser level (test_tasks.py); how many messages an unroutable
``mandatory`` publish gets back (test_producer.py).
"""
import importlib
import math
import uuid

import pytest

from helpers.broker.model import Broker
from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers import settings
from helpers.core import tasks, topology
from helpers.core.connection import connect
from helpers.errors import BadInputError, TopologyError
from helpers.procs import free_port

#: A broker nobody listens for: anything that touches it before validating fails loudly.
NOWHERE = Broker(url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")


# -- broker down, wrong credentials, unknown vhost (the commands `run` does not cover) -----

def test_new_task_with_the_broker_down(cli, one_sentence):
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    one_sentence(cli("new-task", "Hello.", env={"AMQP_URL": url}),
                        "Could not connect to the broker at amqp://guest:***@127.0.0.1:")


@pytest.mark.broker
def test_new_task_with_a_wrong_password(broker, cli, one_sentence):
    url = broker.url.replace("guest:guest", "guest:not-the-password")
    proc = cli("new-task", "Hello.", env={"AMQP_URL": url})
    one_sentence(proc, "refused the user name or password")
    assert "not-the-password" not in proc.stderr + proc.stdout


@pytest.mark.broker
@pytest.mark.parametrize("command", [
    ["run", "--workers", "1", "--prefetch", "1", "--tasks", "2"],
    ["new-task", "Hello."],
    ["worker", "--queue", "never-used"],
])
def test_an_unknown_vhost_is_one_sentence(broker, command, cli, one_sentence):
    url = broker.url.rsplit("/", 1)[0] + "/no-such-vhost"
    one_sentence(cli(*command, env={"AMQP_URL": url}),
                        "denied access to the virtual host 'no-such-vhost'")


# -- a queue redeclared with other arguments ---------------------------------------------

@pytest.mark.broker
def test_a_queue_redeclared_with_other_arguments_is_explained_and_keeps_its_messages(
        broker, channel, cli, one_sentence):
    """The queue exists as a classic queue; helpers declares a quorum queue: 406."""
    plain = topology.QueueSpec(f"test-redeclare-{uuid.uuid4().hex[:8]}", dead_letter=False,
                               kind="classic")
    topology.declare(channel, plain)
    for body in (b"one.", b"two."):
        channel.basic_publish("", plain.name, body)
    try:
        for command in (["new-task", "Hello.", "--queue", plain.name],
                        ["worker", "--queue", plain.name]):
            proc = cli(*command, env={"AMQP_URL": broker.url})
            one_sentence(proc, "406 PRECONDITION_FAILED",
                                "already exists with other arguments")
        with pytest.raises(TopologyError, match="x-queue-type"):
            producer.publish(broker.url, topology.QueueSpec(plain.name), ["three."])
        # Nothing lost, nothing added: the queue is as it was, with its two messages.
        with connect(broker.url) as conn:
            assert topology.message_count(conn.channel(), plain.name) == 2
    finally:
        topology.discard(broker.url, plain)


# -- unroutable and oversized messages ------------------------------------------------------

@pytest.mark.broker
def test_an_unroutable_mandatory_publish_is_explained_and_can_be_sent_again(broker, queue,
                                                                           channel):
    work = tasks.equal(3, 0)
    result = producer.publish(broker.url, queue, work,
                              PublishOptions(mandatory=True, declare_queue=False))
    assert result.returned == {t.id for t in work}
    sentence = result.explain()
    assert f"no queue named '{queue.name}'" in sentence and "returned" in sentence
    # Nothing was lost: the producer holds every returned task and can send it again.
    again = producer.publish(broker.url, queue, [t for t in work if t.id in result.returned],
                             PublishOptions(mandatory=True))
    assert not again.returned and again.explain() is None
    assert topology.message_count(channel, queue.name) == 3


@pytest.mark.broker
def test_a_message_above_the_size_limit_is_refused_and_the_others_go_through(
        broker, queue, channel):
    if broker.kind != "private":
        pytest.skip("the size limit is known only for the private node")
    big = b"x" * (settings.MAX_MESSAGE_BYTES + 1024)
    small = [f"s{i}" for i in range(6)]
    pairs = [(small[0], b"one."), ("big", big)] + [(i, b"two..") for i in small[1:]]
    result = producer.publish(broker.url, queue, pairs)
    assert result.refused == {"big"}
    assert set(small) <= result.confirmed and not result.unconfirmed
    sentence = result.explain()
    assert "max_message_size of 4.0 MiB" in sentence and "(big;" in sentence
    # Every small message is in the queue (one may be there twice: at least once), the big
    # one is not.
    ids = []
    while True:
        method, props, _body = channel.basic_get(queue.name, auto_ack=True)
        if method is None:
            break
        ids.append(props.message_id)
    assert set(ids) == set(small) and len(ids) <= len(small) + 1


# -- values a widget or a flag can get wrong ------------------------------------------------

@pytest.mark.parametrize("kwargs, fragment", [
    (dict(workers=0), "workers"), (dict(workers=2.5), "workers"),
    (dict(workers=True), "workers"), (dict(workers="3"), "workers"),
    (dict(prefetch=-1), "prefetch"), (dict(prefetch=1.5), "prefetch"),
    (dict(prefetch=70000), "prefetch.*65535"), (dict(prefetch=None), "prefetch"),
    (dict(tasks=[]), "no tasks"),
    (dict(kill_every=0), "kill_every"), (dict(kill_every=-0.5), "kill_every"),
    (dict(kill_every=math.nan), "kill_every"), (dict(kill_every=math.inf), "kill_every"),
    (dict(kill_every=True), "kill_every"),
])
def test_an_experiment_names_the_bad_value(kwargs, fragment):
    values = {"workers": 2, "prefetch": 1, "tasks": tasks.equal(2, 0), **kwargs}
    with pytest.raises(BadInputError, match=fragment):
        Experiment(values["workers"], values["tasks"], WorkerConfig(prefetch=values["prefetch"]),
                   kill_every=values.get("kill_every"))


@pytest.mark.parametrize("call, fragment", [
    (lambda: tasks.odd_heavy(2.5, 0.1, 0.1), "--tasks"),
    (lambda: tasks.odd_heavy(True, 0.1, 0.1), "--tasks"),
    (lambda: tasks.odd_heavy(4, math.nan, 0.1), "--heavy"),
    (lambda: tasks.odd_heavy(4, 0.1, "fast"), "--light.*not a number"),
    (lambda: tasks.equal(4, -1), ">= 0"),
    (lambda: runner.run(Experiment(2, tasks.equal(2, 0), WorkerConfig(prefetch=1),
                                   speeds=[1.0, 0.0]), broker=NOWHERE),
     "speeds.*above 0"),
    (lambda: runner.run(Experiment(2, tasks.equal(2, 0), WorkerConfig(prefetch=1), speeds=[1.0]), broker=NOWHERE), "speeds"),
    (lambda: runner.run(Experiment(2, [tasks.Task("a", 0), tasks.Task("a", 0)],
                                   WorkerConfig(prefetch=1)), broker=NOWHERE),
     "unique"),
])
def test_building_blocks_refuse_bad_values_before_touching_the_broker(call, fragment):
    with pytest.raises(BadInputError, match=fragment):
        call()


#: What the notebook panels call with their widgets' values (helpers/lessons/): each lesson
#: declares its run once, and its panel replaces the declared value's fields with the values
#: (``panels.declared_run``).
DECLARED_CALLS = [
    ("durability", "survival", "SURVIVAL", dict(messages=0), "messages"),
    ("durability_confirms", "publish_through_restart", "OUTAGE", dict(chunk=0), "chunk"),
    ("forgotten_ack", "forgotten_ack", "FORGOTTEN", dict(rate=0), "rate"),
    ("round_robin", "round_robin", "ROUND_ROBIN", dict(workers=0), "workers"),
    ("round_robin", "round_robin", "ROUND_ROBIN", dict(tasks=0), "at least 1"),
    ("round_robin", "round_robin", "ROUND_ROBIN", dict(duration=-0.1), ">= 0"),
    ("fair_dispatch", "compare_prefetch", "FAIR", dict(prefetch=-1), "prefetch"),
    ("fair_dispatch", "compare_prefetch", "FAIR", dict(heavy=math.nan), "heavy"),
    ("fair_dispatch", "prefetch_sweep", "FAIR", dict(workers=-1), "workers"),
    ("fair_dispatch", "unequal_speeds", "SPEEDS", dict(speeds="1, fast"), "speeds"),
    ("fair_dispatch", "unequal_speeds", "SPEEDS", dict(speeds="0"), "speeds"),
    ("backlog", "backlog", "BACKLOG", dict(rate=0), "rate"),
    ("acks", "kill_run", "KILL", dict(workers=0), "workers"),
    ("acks", "kill_run", "KILL", dict(ack="never"), "ack"),
    ("skew", "skew_sweep", "SKEW", dict(workers=0), "workers"),
    ("distance", "measure", "FAR", dict(prefetch=-1), "prefetch"),
    ("frameworks", "_kill_one", "KILL", dict(workers=0, setup="Celery defaults"), "workers"),
    ("pitfalls", "try_pitfall", "POISON", dict(duration=-1), ">= 0"),
    ("pitfalls", "try_pitfall", "POISON", dict(name="nope"), "scenario must be one of"),
]


@pytest.mark.parametrize("module, function, declared, kwargs, fragment", DECLARED_CALLS,
                         ids=[f"{m}.{f}-{next(iter(k))}" for m, f, _, k, _ in DECLARED_CALLS])
def test_declared_panel_runs_refuse_out_of_range_values(module, function, declared, kwargs,
                                                         fragment):
    from helpers.lessons.panels import declared_run
    mod = importlib.import_module(f"helpers.lessons.{module}")
    experiment = declared_run(getattr(mod, function), getattr(mod, declared))
    with pytest.raises(BadInputError, match=fragment):
        experiment(broker=NOWHERE, **kwargs)


@pytest.mark.parametrize("args, fragment", [
    (["--kill-every", "0"], "kill_every"),
    (["--kill-every", "nan"], "kill_every"),
    (["--prefetch", "70000"], "65535"),
])
def test_bad_run_flags_exit_with_one_sentence(args, fragment, cli, one_sentence):
    base = {"--workers": "2", "--prefetch": "1", "--tasks": "4"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    one_sentence(cli("run", *[x for kv in base.items() for x in kv]), fragment)


@pytest.mark.broker
def test_a_negative_heartbeat_is_one_sentence(broker, cli, one_sentence):
    proc = cli("run", "--workers", "1", "--prefetch", "1", "--tasks", "2", "--heartbeat", "-1",
               env={"AMQP_URL": broker.url})
    one_sentence(proc, "heartbeat (--heartbeat) must be 0 (off) or more")


# -- workload files -------------------------------------------------------------------------

@pytest.mark.parametrize("content, fragments", [
    (b"id,duration\na,0.1\nb,-2\n", ["w.csv line 3", "-2", ">= 0"]),
    (b"id,duration\na,soon\n", ["w.csv line 2", "'soon' is not a number"]),
    (b"id,duration\na,0.1\nb,\n", ["w.csv line 3", "is not a number"]),
    (b"id,duration\na,0.1\nb,inf\n", ["w.csv line 3", ">= 0"]),
    (b"duration\n\xff\xfe0.1\n", ["not UTF-8 text"]),
    (b"", ["no 'duration' column", "columns: none"]),
])
def test_bad_workload_files_name_the_line(tmp_path, content, fragments, cli, one_sentence):
    path = tmp_path / "w.csv"
    path.write_bytes(content)
    one_sentence(cli("run", "--workers", "1", "--prefetch", "1", "--workload",
                            str(path)), *fragments)


def test_a_missing_workload_file_is_one_sentence(tmp_path, cli, one_sentence):
    one_sentence(cli("run", "--workers", "1", "--prefetch", "1", "--workload",
                            str(tmp_path / "nope.csv")), "does not exist")
    one_sentence(cli("run", "--workers", "1", "--prefetch", "1", "--workload",
                            str(tmp_path)), "is not a file")


def test_a_workload_saved_by_a_spreadsheet_is_read(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark, which must not hide the header."""
    path = tmp_path / "w.csv"
    path.write_bytes("\ufeffid,duration\r\na,0.5\r\n".encode("utf-8"))
    assert [(t.id, t.duration) for t in tasks.from_csv(path)] == [("a", 0.5)]
