"""Notebook 07's measurements on a real three-node cluster, and the several-URL clients.

The unit tests need no broker. The others use the session's private cluster
(``three_nodes`` in conftest, shared with tests/test_cluster.py), in a temporary folder
(never the checkout's own ``.broker/cluster``), and assert what the broker does per version
where versions differ (3.10 refuses publishes to a quorum queue without a majority with
nacks; 4.0 holds them unconfirmed). The last test stops the cluster.
"""
from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from pathlib import Path

import pytest

from helpers import faults
from helpers.publish import producer
from helpers.core import tasks
from helpers.core.connection import connect, first_to, mask_url, rotated, url_list
from helpers.errors import BadInputError, BrokerConnectionError
from helpers.lessons import cluster as lesson
from helpers.lessons import cluster_plots
from helpers.pool.pool import WorkerPool
from helpers.procs import free_port, pid_alive


#: A URL nobody listens on (a port just freed), first in lists to show the fallback.
DEAD = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"


# -- several URLs, no broker needed ----------------------------------------------------------
def test_url_lists_split_rotate_and_reorder():
    urls = ["amqp://u:p@127.0.0.1:1/%2F", "amqp://u:p@127.0.0.1:2/%2F", "amqp://u:p@h/%2F"]
    assert url_list(",".join(urls)) == urls == url_list(urls)
    assert rotated(urls, 1) == urls[1:] + urls[:1] and rotated(urls, 4) == rotated(urls, 1)
    assert first_to(urls, "127.0.0.1:2")[0] == urls[1]
    assert first_to(urls, "h:5672")[0] == urls[2]  # the default port counts
    masked = mask_url(",".join(urls))
    assert "p@" not in masked and masked.count("u:***@") == 3
    with pytest.raises(BadInputError, match="No broker URL"):
        url_list(" , ")


def test_no_node_answering_is_one_sentence_naming_them_all():
    other = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    with pytest.raises(BrokerConnectionError) as caught:
        connect([DEAD, other])
    text = str(caught.value)
    assert text.startswith("Could not connect to any of") and mask_url(other) in text
    assert "guest:guest" not in text


# -- several URLs against the session's broker -----------------------------------------------
@pytest.mark.broker
def test_clients_skip_a_dead_url_and_use_the_next(broker, queue):
    with connect([DEAD, broker.url], name="two urls") as conn:
        assert conn.is_open
    parts = urllib.parse.urlsplit(broker.url)
    live = f"{parts.hostname}:{parts.port}"
    sent = producer.publish([DEAD, broker.url], queue, tasks.equal(20, 0.0))
    assert len(sent.confirmed) == 20 and [c[1] for c in sent.connections] == [live]
    with WorkerPool([DEAD, broker.url], queue) as pool:
        pool.start(2)  # worker 2 is given the live URL first, worker 1 the dead one
        assert pool.wait_for(lambda p: len(p.finished) == 20, 30)
        ready = [e for e in pool.snapshot() if e["event"] == "ready"]
    assert sorted(e["broker"] for e in ready) == [live, live]
    assert "guest:guest" not in repr(pool) and mask_url(DEAD) in repr(pool)


# -- the cluster ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(three_nodes):
    """The lesson's lab on the session's three private nodes (started if they are not)."""
    return lesson.Lab(cluster=three_nodes)


def _on_3(lab) -> bool:
    return lab.version.startswith("3.")


@pytest.mark.broker
@pytest.mark.slow
def test_a_leader_kill_with_300_confirmed_tasks_loses_none(lab):
    lab.heal()
    result = faults.run_fault("leader-kill", 6, 1, tasks.equal(300, 0.05), cluster=lab.cluster,
                              fault_after_s=0.8, save=False)
    s = result.summary
    assert (s["tasks_confirmed"], s["tasks_completed"], s["tasks_lost"]) == (300, 300, 0), \
        s["publish_error"]
    assert s["killed_node"] == s["leader_before"] and s["new_leader"] not in (None,
                                                                            s["killed_node"])
    assert 0 < s["leaderless_s"] <= s["recovery_s"] < 30
    assert s["worker_disconnects"] == 2 and s["worker_reconnects"] == 2  # 2 of 6 were there
    # Duplicates are bounded: one task per cut worker (prefetch 1), plus republished copies.
    assert s["duplicates_redelivered"] <= s["worker_disconnects"]
    assert s["duplicates_republished"] <= s["republished"]
    assert s["duplicates"] == s["duplicates_redelivered"] + s["duplicates_republished"]
    assert s["held_at_fault"] == s["recovered"] > 0
    if _on_3(lab):  # 3.10's log dates the election, before the polls can see it
        assert s["t_kill"] < s["t_elected"] <= s["t_leader"]
    # restore (the default) started the killed node again: the cluster is whole
    assert lab.heal() == []
    # The figure marks the kill and draws each cut worker's loss and reconnection.
    top = cluster_plots.node_loss_figure(result).axes[0]
    assert any(t.get_text().strip() == f"SIGKILL {s['killed_node'].split('@')[0]}"
               for t in top.texts)
    # One line is when the polls saw the new leader; where the log dates the election,
    # another is the election; each says which it is.
    texts = [t.get_text().strip() for t in top.texts]
    new = s["new_leader"].split("@")[0]
    assert f"{new} seen leading (polled)" in texts
    if s["t_elected"]:
        elected = s["elected_node"].split("@")[0]
        assert f"{elected} elected (its log, term {s['elected_term']})" in texts
    assert sum(line.get_marker() == "x" for line in top.lines) == s["worker_disconnects"]
    assert sum(line.get_marker() == ">" for line in top.lines) == s["worker_reconnects"]


@pytest.mark.broker
@pytest.mark.slow
def test_a_majority_loss_confirms_nothing_and_the_restart_recovers_everything(lab):
    lab.heal()
    result = lesson.majority_loss(lab, lesson.MAJORITY_LOSS)
    s = result.summary
    assert s["confirmed_while_down"] == 0  # no confirm arrives without a majority
    assert len(s["killed_nodes"]) == 2 and s["down_before"] == []
    assert s["revived_node"] == s["killed_nodes"][0] and s["down_s"] >= 3.0
    assert s["first_confirm_after_kill_s"] >= s["down_s"] - 0.5  # batch-level timestamps
    assert (s["tasks_confirmed"], s["tasks_completed"], s["tasks_lost"]) == (150, 150, 0), \
        s["publish_error"]
    assert s["held_at_fault"] == s["recovered"]
    # Between the node's return and the leader: the polls saw the queue's members online as
    # a majority again (the revived one among them); a node's log dates the election (3.10's
    # format; 4.x: where it logs so), which needs that majority, so comes after the restart
    # (the polls can name a stale leader before it); the story tells it with these numbers.
    assert s["leader_seen"][-1][1] == s["new_leader"]
    t, online = cluster_plots.majority_online(s)
    assert s["revived_node"] in online and t > s["fault_at_s"]
    if _on_3(lab):
        assert s["t_elected"] is not None and s["elected_term"] >= 2
        assert s["revived_said"] is not None and s["revived_said"][0] >= s["t_restart"]
    if s["t_elected"] is not None:
        assert s["t_restart"] < s["t_elected"] and s["elected_node"] != s["killed_nodes"][-1]
        assert f"the election {s['t_elected'] - s['t_kill']:.2f} s after the kill" in \
            lesson.majority_story(result)
    if _on_3(lab):
        assert s["nacks"] > 0  # 3.10 refuses publishes it cannot replicate
    else:
        assert s["nacks"] == 0  # 4.0 holds them unconfirmed (a batch cut with the producer's
        # connection is still published again: republished may be above 0)
    lab.heal()


@pytest.mark.broker
@pytest.mark.slow
def test_a_classic_queue_is_out_of_reach_while_its_node_is_down(lab):
    lab.heal()
    parked = lesson.park(lab, messages=20)
    try:
        lab.cluster.kill(parked.home)
        down = parked.probe(lab, "down", timeout=3.0)
        assert down.loc["quorum", "down: consumed"] == 20
        assert down.loc["classic", "down: consumed"] == 0
        answer = down.loc["classic", "down: the broker said"]
        assert answer.startswith("refused: 404" if _on_3(lab) else "no answer within 3 s")
        lab.cluster.start_node(parked.home)
        back = parked.probe(lab, "back", timeout=10.0)
        assert back.loc["classic", "back: consumed"] == 20
        rows = parked.accounting()
        assert all(r["lost"] == 0 and r["recovered"] == 20 for r in rows.values())
    finally:
        lab.heal()
        parked.discard(lab)


@pytest.mark.broker
@pytest.mark.slow
def test_cli_fault_leader_kill_writes_the_contract_keys(lab, cli, tmp_path):
    lab.heal()
    out = tmp_path / "leader.json"
    proc = cli("fault", "leader-kill", "--tasks", "100", "--after", "0.5", "--json", str(out),
               env={"HELPERS_CLUSTER_DIR": str(lab.cluster.state_dir)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    for key in ("fault", "nodes", "killed_node", "tasks_confirmed", "tasks_completed",
                "tasks_lost", "duplicates", "redeliveries", "leaderless_s", "recovery_s"):
        assert key in summary, key
    assert summary["fault"] == "leader-kill" and summary["nodes"] == 3
    assert summary["tasks_lost"] == 0 and "leader-kill: killed" in proc.stdout
    assert lab.heal() == []  # the CLI puts the killed node back


@pytest.mark.broker
@pytest.mark.slow
def test_cli_cluster_stop_leaves_no_node_and_no_epmd(lab, cli):
    """Last in the module (and the session's cluster tests): it stops the shared cluster."""
    env = {"HELPERS_CLUSTER_DIR": str(lab.cluster.state_dir)}
    lab.heal()
    status = json.loads(cli("cluster", "status", env=env, timeout=60).stdout)
    beams = [m["pid"] for m in status["members"]]
    assert status["running"] and all(beams) and status["epmd_pid"]
    children = []
    for pid in beams:  # erl_child_setup and friends, started by each VM
        for task in Path(f"/proc/{pid}/task").glob("*"):
            children += [int(c) for c in (task / "children").read_text().split()]
    ours = beams + children + [status["epmd_pid"]]
    stopped = cli("cluster", "stop", env=env, timeout=180)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert [pid for pid in ours if pid_alive(pid)] == [], "still running after stop"
    folder = str(lab.cluster.state_dir)
    strays = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if folder in cmdline.read_bytes().decode(errors="replace"):
                strays.append(cmdline.parent.name)
    assert strays == [], f"processes still naming {folder}: {strays}"
    after = cli("cluster", "status", env=env, timeout=60)
    assert after.returncode == 1 and not json.loads(after.stdout)["running"]
    assert lab.cluster.stop() is False  # a second stop finds nothing to stop


def test_the_election_is_read_from_the_new_leaders_log(tmp_path):
    """3.10's lines: the leader's form (queue 'q' in vhost) and a member's ({'%2F_q',node})."""
    from helpers.broker import raft_log

    log = tmp_path / "node.log"
    log.write_text(
        "2026-12-06 05:58:35.000000+00:00 [info] <0.9.0> queue 'q' in vhost '/': leader call"
        " - leader not known.\n"
        "2026-12-06 05:58:51.522912+00:00 [info] <0.6.0> {'%2F_q',rabbit1@localhost}: granting"
        " vote for {'%2F_q',rabbit3@localhost} for term 2\n"
        "2026-12-06 05:58:51.524109+00:00 [notice] <0.8.0> queue 'q' in vhost '/': candidate ->"
        " leader in term: 2 machine version: 2\n"
        "2026-12-06 05:58:52.000000+00:00 [notice] <0.8.0> queue 'other' in vhost '/': "
        "candidate -> leader in term: 5 machine version: 2\n")
    t0 = 1796536731.0  # 05:58:51 UTC
    assert raft_log.became_leader(log, "q", t0) == (t0 + 0.524109, 2)
    assert raft_log.became_leader(log, "q", t0 + 1) is None  # none after that
    lines = raft_log.queue_lines(log, "q", t0)
    assert [m.split(" ")[0] for _t, m in lines] == ["granting", "candidate"]
    assert raft_log.queue_lines(tmp_path / "missing.log", "q") == []


def test_the_notebook_asserts_what_its_prose_says():
    path = os.path.join(os.path.dirname(__file__), "..", "notebooks", "07_cluster.ipynb")
    source = "".join("".join(c["source"]) for c in json.load(open(path))["cells"]
                     if c["cell_type"] == "code")
    for fact in ('["tasks_lost"] == 0', '["confirmed_while_down"] == 0', "common.source(",
                 '["classic"]["consumed"] == 0', 'startswith("3.")'):
        assert fact in source, fact


def test_compose_cluster_profile_is_optional_loopback_bound_and_joined():
    import yaml

    root = os.path.join(os.path.dirname(__file__), "..")
    compose = yaml.safe_load(open(os.path.join(root, "docker-compose.yml")))
    services = compose["services"]
    members = {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}
    assert sorted(members) == ["rabbit1", "rabbit2", "rabbit3"]
    assert "profiles" not in services["rabbitmq"]  # `docker compose up -d` stays one node
    ports = [p for s in members.values() for p in s["ports"]]
    assert all(p.startswith("127.0.0.1:") for p in ports) and len(set(ports)) == 6
    assert len({s["hostname"] for s in members.values()}) == 3
    assert len({s["environment"]["RABBITMQ_ERLANG_COOKIE"] for s in members.values()}) == 1
    assert len({s["volumes"][0] for s in members.values()}) == 3  # a data folder each
    conf = compose["configs"]["cluster-conf"]["content"]
    assert all(f"rabbit@{h}" in conf for h in ("rabbit1", "rabbit2", "rabbit3"))
    assert all(s["configs"][0]["source"] == "cluster-conf" for s in members.values())
