"""A private three-node cluster on real RabbitMQ nodes: formation, a quorum queue's leader,
the leader's SIGKILL, connecting to several URLs.

The cluster is the session's (``three_nodes`` in conftest), in a temporary folder, shared
with tests/test_cluster_lesson.py, whose last test stops it and checks that the stop leaves
no node, epmd or child process behind (one boot per session, not one per module).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pika
import pytest

from helpers.procs import free_port, pid_alive
from helpers.core.connection import connect
from helpers.errors import BadInputError, BrokerConnectionError

from support import eventually

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(three_nodes):
    """The session's three private nodes (conftest), every one of them running."""
    three_nodes.start()
    return three_nodes


@pytest.fixture
def quorum_queue(cluster, request):
    """A quorum queue named after the test, declared through the first node."""
    name = f"test-{request.node.name[:40]}"
    with connect(cluster.urls()[0], name=f"declare {name}") as conn:
        conn.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    try:
        with connect(cluster.urls(running_only=True), name=f"cleanup {name}") as conn:
            conn.channel().queue_delete(name)
    except BrokerConnectionError:
        pass


def test_start_lists_every_member_as_running(cluster):
    assert cluster.running_nodes() == ["rabbit1@localhost", "rabbit2@localhost",
                                       "rabbit3@localhost"]
    assert cluster.start() is False  # already running: nothing started twice
    env = dict(os.environ, HELPERS_CLUSTER_DIR=str(cluster.state_dir))
    cli = subprocess.run([sys.executable, "-m", "helpers.broker.cluster", "status"], env=env,
                         capture_output=True, text=True, timeout=60)
    status = json.loads(cli.stdout)
    assert cli.returncode == 0 and status["running"], cli.stderr
    assert len({m["url"] for m in status["members"]}) == 3
    assert all("guest:***@127.0.0.1:" in m["url"] for m in status["members"])


def test_a_node_name_not_in_the_cluster_is_one_sentence(cluster):
    with pytest.raises(BadInputError, match="No node 'rabbit7'.*rabbit1@localhost"):
        cluster.kill("rabbit7")


def test_quorum_queue_has_a_leader_and_three_members(cluster, quorum_queue):
    info = eventually(lambda: cluster.queue_info(quorum_queue))
    assert info["type"] == "quorum"
    assert info["leader"] in cluster.names
    assert sorted(info["members"]) == cluster.names
    assert cluster.leader_of(quorum_queue) == info["leader"]


def _publish(channel, queue: str, body: bytes) -> None:
    channel.basic_publish("", queue, body, mandatory=True,
                          properties=pika.BasicProperties(delivery_mode=2))


def test_killing_the_leader_elects_another_and_confirms_go_on(cluster, quorum_queue,
                                                               record_property):
    leader = eventually(lambda: cluster.leader_of(quorum_queue))
    dead = cluster.member(leader)
    survivors = [url for url in cluster.urls() if url != dead.url]
    before = connect(survivors[0], name="test publisher before the kill")
    early = before.channel()
    early.confirm_delivery()
    _publish(early, quorum_queue, b"before the kill")
    pid = cluster.kill(leader)
    killed_at = time.monotonic()
    assert not pid_alive(pid)
    try:
        # A channel that published before the kill: its publish waits for the new leader.
        _publish(early, quorum_queue, b"right after the kill")
        early_confirm_s = time.monotonic() - killed_at
        # A new connection, the dead node's URL first: connect takes the first that answers.
        # Its first publishes can be nacked (3.10: at once) until a leader is elected, so
        # it publishes again on a nack, as a careful publisher must.
        with connect([dead.url] + survivors, name="test publisher after the kill") as conn:
            assert f":{conn._impl.params.port}/" in survivors[0]
            channel = conn.channel()
            channel.confirm_delivery()
            nacks = 0
            while True:
                try:
                    _publish(channel, quorum_queue, b"new connection after the kill")
                    break
                except pika.exceptions.NackError:
                    nacks += 1
                    assert time.monotonic() - killed_at < 30, "no confirm within 30 s"
                    time.sleep(0.05)
            late_confirm_s = time.monotonic() - killed_at

            def new_leader():
                """a leader other than the killed node (None while the vote runs)"""
                now = cluster.leader_of(quorum_queue)
                return now if now not in (None, leader) else None

            elected = eventually(new_leader)
            leader_seen_s = time.monotonic() - killed_at
            count = channel.queue_declare(quorum_queue, passive=True).method.message_count
        assert elected in cluster.names and elected != leader
        # Three confirmed; a nacked publish was not accepted, but a nack does not promise the
        # message is absent, hence the upper bound.
        assert 3 <= count <= 3 + nacks
        assert leader not in cluster.running_nodes()
    finally:
        if before.is_open:
            before.close()
        restart_s = cluster.start_node(leader)
    assert leader in cluster.running_nodes()
    record_property("figures", {"killed": leader, "new_leader": elected,
                                "confirm_after_kill_s": round(early_confirm_s, 2),
                                "new_connection_nacks": nacks,
                                "new_connection_confirm_s": round(late_confirm_s, 2),
                                "leader_seen_after_s": round(leader_seen_s, 2),
                                "node_restart_s": restart_s})


def test_connect_to_several_urls_names_them_all_when_none_answers():
    dead = [f"amqp://guest:secret@127.0.0.1:{free_port()}/%2F" for _ in range(2)]
    with pytest.raises(BrokerConnectionError) as caught:
        connect(dead, name="test nobody")
    text = str(caught.value)
    assert text.startswith("Could not connect to any of the brokers at ")
    assert all(url.replace("secret", "***") in text for url in dead)
    assert "secret" not in text
