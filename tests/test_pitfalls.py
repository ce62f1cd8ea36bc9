"""Notebook 06's scenarios, each against the real broker, asserted per RabbitMQ version.

Each scenario runs through its command-line twin, ``python -m helpers fault NAME --json``,
so the JSON contract (the common keys and each scenario's own) is checked on the way; the
figures are printed at the end of the run (``record_property("figures", ...)``). Where the
broker's behaviour changed between versions, the test says which version does what.
"""
import json
import re
import time

import pytest

from helpers.broker import dead_letter, management, node_control
from helpers.worker import dedup, hooks as task_hooks
from helpers import faults
from helpers.publish import outcome, producer
from helpers.publish.options import PublishOptions
from helpers.core import tasks, topology
from helpers.broker.model import Broker
from helpers.broker import version_facts
from helpers.errors import BrokerControlError
from helpers.faults import consumer_timeout
from helpers.pool.pool import WorkerPool
from helpers.settings import DEAD_LETTER_EXCHANGE, DEAD_LETTER_POLICY

pytestmark = pytest.mark.broker

COMMON = ("fault", "tasks_confirmed", "tasks_completed", "tasks_lost", "duplicates",
          "redeliveries")


def fault_json(cli, broker, tmp_path, name: str, *args: str) -> dict:
    """Run ``fault NAME --json`` against the session's broker; its summary."""
    out = tmp_path / f"{name}.json"  # the CLI resolves the session's broker, as tests do
    proc = cli("fault", name, "--json", str(out), *args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert set(COMMON) <= set(summary) and summary["fault"] == name
    assert faults.line(summary) in proc.stdout
    return summary


def record(record_property, summary: dict, *keys: str) -> None:
    record_property("figures", {k: summary[k] for k in ("broker_version", *keys)})


def pinned_facts(broker_version: str) -> dict:
    """The facts pinned for this version's series (``tests/test_version_facts.py`` checks
    them on the broker); an unpinned series fails the test."""
    row = version_facts.pinned(broker_version)
    if row is None:
        pytest.fail(f"RabbitMQ {broker_version}: no row in data/version_facts.json")
    return row


def version(summary: dict) -> tuple:
    return tuple(int(p) for p in summary["broker_version"].split(".")[:2])


# -- 1. a long task and heartbeats --------------------------------------------------------

def test_a_long_task_cuts_the_blocking_worker_off_again_and_again(cli, broker, tmp_path,
                                                                   record_property):
    s = fault_json(cli, broker, tmp_path, "heartbeat")
    record(record_property, s, "heartbeat_s", "task_s", "broker_cut_s", "disconnects_blocking",
           "deliveries_blocking", "disconnects_thread", "tasks_lost")
    # The broker gives up on a client it has not heard from for three intervals.
    assert 2.5 <= s["broker_cut_s"] <= 3 * s["heartbeat_s"] + 0.6, s["broker_cut_s"]
    # A connection that asks for nothing gets the broker's default, which notebook 06 scales.
    assert s["default_heartbeat_s"] == 60
    assert s["task_s"] > s["broker_cut_s"]
    # Blocking: each attempt is cut off, the ack is lost, the task comes back, again.
    assert s["disconnects_blocking"] >= 2
    assert s["deliveries_blocking"] == s["disconnects_blocking"] + 1
    assert s["redeliveries"] == s["disconnects_blocking"]
    assert s["times_done_blocking"] >= s["disconnects_blocking"] and s["acked_blocking"] == 0
    assert s["still_queued_blocking"] == 1  # never acked: still in its queue at the end
    # Thread mode: one delivery, done and acked once, connection kept.
    assert s["disconnects_thread"] == 0 and s["deliveries_thread"] == 1
    assert s["times_done_thread"] == s["acked_thread"] == 1
    assert s["still_queued_thread"] == 0
    assert s["tasks_lost"] == 0


# -- 2. the consumer timeout ----------------------------------------------------------------

def test_a_task_longer_than_the_ack_timeout_comes_back_until_split_or_given_more_time(
        cli, private_broker, tmp_path, record_property):
    before = node_control.get_env(private_broker, "consumer_timeout", "channel_tick_interval")
    s = fault_json(cli, private_broker, tmp_path, "consumer-timeout")
    record(record_property, s, "timeout_s", "task_s", "per_queue_timeout",
           "channel_closed_or_cancelled", "acked_too_long", "acked_split", "acked_longer")
    if version(s) >= (3, 12):  # per-queue consumer timeouts came in 3.12
        assert s["per_queue_timeout"] is True and s["per_queue_refusal"] is None
    else:  # 3.10 knows only the node-wide setting, and says so when given the policy
        assert s["per_queue_timeout"] is False
        assert "not recognised" in s["per_queue_refusal"]
    if version(s) < (4, 3):  # 3.x and 4.0 close the channel (4.3 cancels the consumer)
        assert s["closed_because"].startswith("406 PRECONDITION_FAILED - delivery "
                                              "acknowledgement on channel 1 timed out")
        assert f"Timeout value used: {int(s['timeout_s'] * 1000)} ms" in s["closed_because"]
    assert s["channel_closed_or_cancelled"] >= 2 and s["redeliveries"] >= 2
    assert s["acked_too_long"] == 0
    assert s["acked_split"] == s["pieces"] >= 2 and s["acked_longer"] == 1
    assert s["tasks_lost"] == 0
    # The node is given back as it was.
    after = node_control.get_env(private_broker, "consumer_timeout", "channel_tick_interval")
    assert after == before


def _timeout_events(end: list[dict]) -> list[dict]:
    """A too-long run as the worker reports it (times from a 3.10.8 run): delivered at 0,
    its work runs on past the end of the consumer (``end``, at 1.25 s), its ack is refused;
    the redelivery waits behind it and starts at 2.52 s; a third delivery is dropped."""
    w = "too-long/w1"
    ev = lambda t, event, **kw: {"t": t, "worker": w, "event": event, **kw}  # noqa: E731
    return [ev(0.0, "ready"), ev(0.02, "delivered", delivery="d1", redelivered=False),
            ev(0.02, "started", delivery="d1"), *end,
            ev(1.37, "ready"), ev(1.37, "delivered", delivery="d2", redelivered=True),
            ev(2.52, "finished", delivery="d1"),
            ev(2.52, "failed", delivery="d1", reason="ack lost: ChannelWrongStateError"),
            ev(2.52, "started", delivery="d2"),
            ev(2.62, "disconnected", reason="ChannelClosedByBroker: (406) 'PRECONDITION"),
            ev(2.73, "delivered", delivery="d3", redelivered=True),
            ev(5.02, "finished", delivery="d2"), ev(5.02, "abandoned", delivery="d3")]


@pytest.mark.parametrize("end, kind", [
    ([{"t": 1.25, "worker": "too-long/w1", "event": "disconnected",
       "reason": "ChannelClosedByBroker: (406) 'PRECONDITION_FAILED - delivery ack'"}],
     "channel"),  # 3.x, 4.0
    ([{"t": 1.25, "worker": "too-long/w1", "event": "cancelled"},
      {"t": 1.26, "worker": "too-long/w1", "event": "disconnected",
       "reason": "ConsumerCancelled('the broker cancelled the consumer')"}],
     "cancel")])  # 4.3: the worker's own disconnect after a cancel is the same end
def test_the_timeout_figure_draws_every_delivery_and_names_what_ended_the_consumer(end, kind):
    from types import SimpleNamespace

    import pandas as pd

    from helpers.lessons import pitfalls as lesson, pitfalls_plots as plots

    events = _timeout_events(end)
    assert [k for _t, k in plots.ends(events)] == [kind, "channel"]
    got = plots.deliveries_of(events)
    assert [d["fate"] for d in got] == ["ack lost", "cut off", "dropped"]
    assert got[0]["taken_back"] == 1.25 and got[1]["taken_back"] == 2.62
    deliveries = pd.DataFrame({"run": ["too-long"], "started_t": [0.02], "start_s": [0.0]})
    result = SimpleNamespace(events=events, deliveries=deliveries,
                             summary={"runs": ["too-long"], "fault": "consumer-timeout"})
    fig = plots.timeout_timelines(result)
    ax = fig.axes[0]
    assert sum(line.get_marker() == "v" for line in ax.lines) == len(got) == 3
    assert ax.get_title().endswith("3 deliveries, work done 2, acked 0")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert plots.END_WORDS[kind] in labels and "dropped unstarted" in " ".join(labels)
    row = lesson.runs_table(result).loc["too-long"]
    assert (row["deliveries"], row["acked"], row["ack refused"], row["dropped unstarted"]) == \
        (3, 0, 1, 1)


def test_a_refused_policy_is_said_in_one_sentence():
    from helpers.lessons import pitfalls_answers

    refusal = 'Validation failed [{<<"consumer-timeout">>,1000}] are not recognised policy settings'
    said = pitfalls_answers.refusal_words(refusal)
    assert "<<" not in said and "'consumer-timeout'" in said and "not recognised" in said


def test_the_consumer_timeout_policy_keeps_the_dead_letter_key(private_broker):
    """The policy the consumer-timeout fault sets, read back as the broker holds it: the
    timeout, and the dead-letter exchange of the project's policy it outranks on its queues
    (one policy applies per queue). Before 3.12 the broker refuses it, and the project's
    policy goes on dead-lettering those queues."""
    def held(policy: str) -> dict | None:
        return management.get(private_broker,
                              "policies/" + management.vhost_path(private_broker, policy))

    assert dead_letter.ensure(private_broker)  # as a run's queue setup does
    name = topology.unique_spec("ct-policy").name
    with consumer_timeout.timeout_policy(private_broker, name, f"^{re.escape(name)}$",
                                         1.0) as refused:
        timeout = held(name)
    project = held(DEAD_LETTER_POLICY)
    assert project["definition"] == {"dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    assert re.match(project["pattern"], name)
    if private_broker.version_tuple() >= (3, 12):
        assert refused is None
        assert timeout["definition"] == {"consumer-timeout": 1000,
                                         "dead-letter-exchange": DEAD_LETTER_EXCHANGE}
        assert re.match(timeout["pattern"], name) and timeout["priority"] > project["priority"]
    else:
        assert "not recognised" in refused and timeout is None
    assert held(name) is None  # cleared with the block


@pytest.mark.slow
def test_the_x_consumer_timeout_argument_is_ignored_before_3_12(private_broker, channel):
    """The queue argument (not the policy) on a classic queue, as pinned for the series
    (``consumer_timeout_classic_queue-argument`` in data/version_facts.json): 3.10 takes it
    and does nothing with it; 4.3 refuses it (406: only quorum queues evaluate a consumer
    timeout there)."""
    import pika.exceptions as pe

    expected = pinned_facts(private_broker.version())["consumer_timeout_classic_queue-argument"]
    spec = topology.unique_spec("ct-argument")
    try:
        channel.queue_declare(spec.name, arguments={"x-consumer-timeout": 1000})
    except pe.ChannelClosedByBroker as exc:
        assert expected == f"refused: {exc.reply_code} {exc.reply_text.split(' - ')[0]}"
        return
    try:
        with node_control.node_env(private_broker, channel_tick_interval=250):
            from helpers.core.connection import connect
            with connect(private_broker.url, name="held") as conn:
                held = conn.channel()
                held.basic_publish("", spec.name, b"x")
                held.basic_consume(spec.name, lambda *a: None)  # never acks
                deadline = time.monotonic() + 3.0  # three times the argument's timeout
                while time.monotonic() < deadline and not held.is_closed:
                    conn.process_data_events(0.2)
                closed = held.is_closed
    finally:
        channel.queue_delete(spec.name)
    assert closed is expected.startswith("channel closed"), expected


# -- 3. a poison message ---------------------------------------------------------------------

def test_a_poison_message_loops_on_a_classic_queue_and_is_dead_lettered_by_a_limit(
        cli, broker, tmp_path, record_property):
    s = fault_json(cli, broker, tmp_path, "poison")
    record(record_property, s, "classic_deliveries", "classic_deliveries_per_s",
           "attempts_per_poison", "dead_lettered", "guard_attempts", "default_delivery_limit",
           "limit_counts_reject", "limit_counts_nack")
    # The broker's default limit on quorum queues, and which requeueing settlements count
    # toward a limit, as pinned for this series (data/version_facts.json): 4.3's nack no
    # longer counts.
    row = pinned_facts(s["broker_version"])
    assert s["default_delivery_limit"] == row["default_delivery_limit"]
    assert s["limit_counts_reject"] is row["past_limit_reject_with_dlx"].startswith(
        "dead-lettered after 3")
    assert s["limit_counts_nack"] is row["past_limit_nack_with_dlx"].startswith(
        "dead-lettered after 3")
    # Classic queue: it keeps coming back, killing a worker each time, and is still there.
    assert s["classic_deliveries"] >= 3 and s["classic_still_queued"] >= 1
    # Quorum queue with a limit: limit + 1 deliveries, then dead-lettered; the rest done.
    assert s["attempts_per_poison"] == s["delivery_limit"] + 1
    assert s["dead_lettered"] == s["injected"] == 1
    assert s["dead_letter_reasons"] == {"delivery_limit": 1}
    assert s["good_completed"] == 20
    # The worker's guard: max_attempts runs, then rejected to the dead-letter queue.
    assert s["guard_attempts"] == s["max_attempts"] + 1
    assert s["guard_dead_letter_reasons"] == {"rejected": 1}
    assert s["tasks_lost"] == 0


def test_the_poison_table_shows_where_the_poison_ended_in_full():
    """pandas cuts a cell at 50 characters ("..."): the table's last column is a sentence."""
    from types import SimpleNamespace

    import pandas as pd

    from helpers.lessons import pitfalls as lesson

    summary = {"runs": ["classic", "delivery-limit"], "classic_still_queued": 13,
               "injected": 1, "dead_lettered": 1, "dead_letter_reasons": {"delivery_limit": 1},
               "guard_dead_lettered": 0, "guard_dead_letter_reasons": {}}
    events = [{"worker": "classic/w1", "event": "delivered", "task": "poison-1"}]
    table = lesson.poison_table(SimpleNamespace(summary=summary, events=events))
    sentence = "still going round (with 12 good tasks not yet done)"
    assert table.loc["classic", "the poison ended"] == sentence and len(sentence) > 50
    assert sentence in table._repr_html_() and sentence in repr(table)
    assert sentence not in pd.DataFrame(table)._repr_html_()  # what a plain frame shows
    assert pd.get_option("display.max_colwidth") == 50  # no other table changed


# -- 4. duplicates and idempotency -----------------------------------------------------------

def test_workers_dying_before_the_ack_make_duplicates_and_the_store_absorbs_them(
        cli, broker, tmp_path, record_property):
    s = fault_json(cli, broker, tmp_path, "duplicate")
    record(record_property, s, "crashes", "duplicates_delivered", "side_effects_twice",
           "side_effects_twice_dedup", "effects_plain", "effects_dedup")
    assert s["crashes"] == s["workers_replaced"] == 3
    # Each crash came after the work and its effect, before the ack: one duplicate each.
    assert s["duplicates_delivered"] == s["duplicates"] == s["crashes"]
    assert s["side_effects_twice"] == s["crashes"]
    assert s["effects_plain"] == s["tasks_confirmed"] + s["crashes"]
    # Through the store: each effect exactly once, delivery still at-least-once.
    assert s["side_effects_twice_dedup"] == 0 and s["effects_dedup"] == s["tasks_confirmed"]
    assert s["tasks_completed"] == s["tasks_confirmed"] == 30 and s["tasks_lost"] == 0


def test_the_dedup_store_runs_an_effect_once_and_forgets_a_failed_one(tmp_path):
    store = dedup.DedupStore(tmp_path / "store.sqlite")
    with store.once("t1") as db:
        assert db is not None
        db.execute("INSERT INTO effects VALUES ('t1', 'w', 0)")
    with store.once("t1") as db:
        assert db is None  # done before: skip
    with pytest.raises(ZeroDivisionError):
        with store.once("t2") as db:
            db.execute("INSERT INTO effects VALUES ('t2', 'w', 0)")
            1 / 0  # the worker fails between effect and commit: neither stays
    with store.once("t2") as db:
        assert db is not None
    rows = store.db.execute("SELECT task FROM effects ORDER BY task").fetchall()
    assert rows == [("t1",)]


# -- 5. the broker runs out of room ----------------------------------------------------------

def test_a_disk_alarm_blocks_the_producer_which_says_so_and_resumes(cli, private_broker,
                                                                     tmp_path, record_property):
    limit_before = node_control.ctl(private_broker, "eval",
                                    "rabbit_disk_monitor:get_disk_free_limit().")
    s = fault_json(cli, private_broker, tmp_path, "alarm")
    record(record_property, s, "alarm_raised_at_s", "alarm_cleared_at_s", "blocked_s",
           "completed_while_blocked", "confirmed_after_alarm", "tasks_lost")
    # Blocked from its first publish into the alarm until the alarm cleared, then at once
    # unblocked (the node's clock and ours are the same machine's).
    assert s["alarm_raised_at_s"] <= s["blocked_at_s"] < s["alarm_cleared_at_s"]
    assert -0.05 <= s["unblocked_at_s"] - s["alarm_cleared_at_s"] < 1.0
    assert s["blocked_s"] >= 0.9 * s["hold_s"]
    assert s["producer_said"].startswith("The broker is blocking publishers (low on disk")
    assert s["completed_while_blocked"] >= 1  # the consumers kept draining
    assert s["resumed"] and s["confirmed_after_alarm"] >= 1
    assert s["tasks_confirmed"] == s["tasks_completed"] == 60 and s["tasks_lost"] == 0
    # The node is given back as it was: no alarm, the same limit.
    assert node_control.ctl(private_broker, "eval", "rabbit_alarm:get_alarms().") == "[]"
    assert node_control.ctl(private_broker, "eval",
                            "rabbit_disk_monitor:get_disk_free_limit().") == limit_before


# -- what these scenarios need from the worker and the broker --------------------------------

def test_a_worker_whose_consumer_the_broker_cancels_consumes_again(broker, queue, channel):
    """Deleting the queue makes the broker cancel its consumers; the worker starts over."""
    with WorkerPool(broker.url, queue) as pool:
        pool.start(1)
        channel.queue_delete(queue.name)
        assert pool.wait_for(lambda p: any(e["event"] == "ready" and e["generation"] == 1
                                           for e in p.log.events), 15)
        events = [e["event"] for e in pool.snapshot()]
        producer.publish(broker.url, queue, [tasks.Task("after", 0.01)], PublishOptions(declare_queue=False))
        assert pool.wait_for(lambda p: p.finished["after"], 10)
    assert "cancelled" in events and "disconnected" in events


def test_the_hooks_read_the_delivery_count_and_the_crash_points():
    hooks = task_hooks.TaskHooks(crash_after=2, crash_at="before-ack", max_attempts=2)
    assert hooks.reject_reason(None) is None and hooks.reject_reason(1) is None
    assert hooks.reject_reason(2) == "delivered 3 times (--max-attempts 2)"
    assert not hooks.dies_before_ack(1) and hooks.dies_before_ack(2)
    assert not hooks.dies_midway(2, "sleep") and hooks.dies_midway(1, "crash")
    assert tasks.decode(tasks.Task("p", 0.1, "crash").body()) == ("p", 0.1, "crash")


@pytest.mark.parametrize("name", ["consumer-timeout", "alarm"])
def test_a_scenario_that_needs_node_settings_refuses_an_external_broker(name):
    external = Broker(url="amqp://guest:guest@127.0.0.1:1/%2F", kind="external")
    with pytest.raises(BrokerControlError) as caught:
        faults.run_fault(name, 1, 1, tasks.equal(2, 0.1), broker=external)
    said = str(caught.value)
    assert "rabbitmqctl" in said and "unset AMQP_URL" in said and said.count(". ") == 0


def test_the_producer_reports_a_block_in_one_sentence():
    result = outcome.PublishResult()
    said = []

    class Conn:  # the two pika callbacks the producer registers, called as pika would
        def add_on_connection_blocked_callback(self, cb):
            self.blocked = cb

        def add_on_connection_unblocked_callback(self, cb):
            self.unblocked = cb

    conn = Conn()
    outcome.watch_blocked(conn, result, said.append)
    frame = type("F", (), {"method": type("M", (), {"reason": "low on memory"})()})()
    conn.blocked(conn, frame)
    time.sleep(0.05)
    conn.unblocked(conn, frame)
    assert said[0].startswith("The broker is blocking publishers (low on memory") and \
        said[0].endswith(").") and said[1] is None
    assert 0.04 <= result.blocked_s < 1


def test_the_panel_starts_each_scenario_from_its_own_defaults():
    from helpers.lessons import pitfalls as lesson

    panel = lesson.pitfall_panel()
    assert panel.values() == {"name": "poison", "workers": 3, "duration": 0.1}
    panel.controls["name"].value = "heartbeat"
    assert panel.values() == {"name": "heartbeat", "workers": 1, "duration": 4.0}
    panel.controls["name"].value = "alarm"
    assert (panel.values()["workers"], panel.values()["duration"]) == (2, 0.25)
