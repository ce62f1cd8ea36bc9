"""Probes of what a quorum queue does when nodes of a private three-node cluster are lost.

The cluster counterpart of ``helpers.broker.version_facts``: each probe runs on a
``PrivateCluster`` (``helpers.broker.cluster``), SIGKILLs nodes as notebook 07's leader
kill does (``PrivateCluster.kill``), starts them again, deletes what it made and returns a
plain value, pinned per series in ``data/version_facts.json`` beside the single-node facts
and measured again by ``tests/test_cluster_facts.py``. The seconds behind each value go
to ``figures`` (a dict the caller passes), not into the pinned value.

* **A lost consumer's unacked messages.** A consumer connected to one node holds ``HELD``
  unacked messages of a quorum queue; that node is killed (a follower of the queue, or its
  leader); a consumer on another node waits for them. 4.3 keeps them for the queue's
  ``consumer_disconnected_timeout`` (60 s unless set: a network partition may heal) before
  it returns them; the probe sets ``DISCONNECTED_MS`` on every node for its queues
  (``application:set_env``, put back after) and reads what a queue declared with the
  setting unset gets (its state machine's configuration).
* **Declarations with the majority down.** Two of three nodes killed; through the one left,
  a new quorum queue, a new classic queue, and again an existing one of each, declared at
  the same time (each on its own connection), waited for up to ``WAIT_S``.
"""
from __future__ import annotations

import contextlib
import threading
import time

from helpers.broker import node_control
from helpers.broker.version_facts import unique
from helpers.broker.version_facts_timeout import every_node_settings, node_settings
from helpers.core.connection import connect

#: The consumer_disconnected_timeout the lost-consumer probe sets (milliseconds).
DISCONNECTED_MS = 6000
#: Unacked messages the lost consumer holds.
HELD = 3
#: How long a lost consumer's messages are waited for, beyond DISCONNECTED_MS (seconds).
RETURN_WAIT_S = 30
#: How long a declaration with the majority down is waited for (seconds).
WAIT_S = 45
#: The declarations tried with the majority down: (fact suffix, queue type, existing).
DECLARATIONS = (("new_quorum", "quorum", False), ("new_classic", "classic", False),
                ("existing_quorum", "quorum", True), ("existing_classic", "classic", True))
#: Every fact ``measure`` returns, as keys of ``data/version_facts.json``'s rows.
FACTS = ("consumer_disconnected_timeout_default", "consumer_disconnected_timeout_cluster",
         "lost_consumer_follower_node", "lost_consumer_leader_node",
         *(f"declare_without_majority_{what}" for what, _, _ in DECLARATIONS))
_SETTING = "consumer_disconnected_timeout"


def ctl(member):
    """``ctl(*args)``: ``rabbitmqctl ARGS`` on ``member``, its output (one sentence on failure)."""
    return lambda *args: node_control.ctl(member, *args)


def _erlang(value: str):
    """``60000`` -> 60000, ``undefined`` -> None, anything else as it was printed."""
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else None if value == "undefined" else value


def queue_setting(member, queue: str):
    """The ``consumer_disconnected_timeout`` in quorum queue ``queue``'s state machine
    configuration, read on ``member`` (None: the machine has no such setting)."""
    return _erlang(ctl(member)(
        "eval", f"{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, "
                f"<<\"{queue}\">>)), {{Ra, _}} = amqqueue:get_pid(Q), {{ok, {{_, O}}, _}} = "
                "ra:local_query({Ra, node()}, fun rabbit_fifo:overview/1), "
                f"maps:get({_SETTING}, maps:get(config, O, #{{}}), undefined)."))


def declare(url: str, name: str, kind: str) -> None:
    with connect(url, name=name) as conn:
        conn.channel().queue_declare(name, durable=True, arguments={"x-queue-type": kind})


def delete(urls, *queues: str) -> None:
    with contextlib.suppress(Exception), connect(urls, name="cf-cleanup") as conn:
        channel = conn.channel()
        for name in queues:
            channel.queue_delete(name)


def leader(cluster, queue: str, timeout: float = 30.0) -> str:
    """The node leading ``queue`` once the management API names a running one."""
    deadline = time.monotonic() + timeout
    while True:
        found = cluster.leader_of(queue)
        if found and cluster.member(found).node_pid():
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no leader for {queue} within {timeout:g} s")
        time.sleep(0.1)


# -- the setting -------------------------------------------------------------------------------
def disconnected_timeout(cluster) -> dict:
    """``default``: what a queue declared with the node's setting unset gets (60000 on 4.3;
    None where the state machine has no such setting); ``cluster``: the setting of the
    cluster's first node as it runs (its ``rabbitmq.conf``, else the application's default;
    None where RabbitMQ has no such setting)."""
    first = cluster.members()[0]
    name = unique("cdt-default")
    try:
        with node_settings(ctl(first), **{_SETTING: None}) as before:
            declare(first.url, name, "quorum")
            default = queue_setting(first, name)
    finally:
        delete(first.url, name)
    return {"default": default, "cluster": before.get(_SETTING)}


# -- a lost consumer -----------------------------------------------------------------------------
def lost_consumer(cluster, node: str, figures: dict | None = None) -> str:
    """Kill the node a consumer holding ``HELD`` unacked messages is connected to (``node``:
    ``follower`` or ``leader`` of the queue); how they reach a consumer on another node:
    ``returned at the node's loss`` (within half ``DISCONNECTED_MS``), ``returned after
    consumer_disconnected_timeout`` or ``not returned within N s``. ``figures`` gets the
    seconds from the kill to the first and the last (``returned_s``, ``all_returned_s``)."""
    members = cluster.members()
    name = unique(f"lost-{node}")
    setting = {_SETTING: DISCONNECTED_MS}
    victim = None
    try:
        with every_node_settings([ctl(member) for member in members], **setting):
            declare(members[0].url, name, "quorum")
        first_leader = leader(cluster, name)
        victim = first_leader if node == "leader" else \
            next(m.nodename for m in members[::-1] if m.nodename != first_leader)
        survivor = next(m.url for m in members if m.nodename != victim)
        return _time_the_return(cluster, victim, cluster.member(victim).url, survivor, name,
                                {} if figures is None else figures)
    finally:
        if victim and not cluster.member(victim).node_pid():
            cluster.start_node(victim)
        delete(cluster.urls(running_only=True), name)


def _time_the_return(cluster, victim, lost_url, survivor, name, figures) -> str:
    got: list[float] = []
    with connect(survivor, name=f"{name}-survivor") as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        for i in range(HELD):
            channel.basic_publish("", name, f"held {i}".encode())
        lost = connect(lost_url, name=f"{name}-lost")
        try:
            held = []
            lost_channel = lost.channel()
            lost_channel.basic_qos(prefetch_count=HELD)
            lost_channel.basic_consume(name, lambda *a: held.append(a[1].delivery_tag))
            deadline = time.monotonic() + 10
            while len(held) < HELD and time.monotonic() < deadline:
                lost.process_data_events(0.05)
            assert len(held) == HELD, f"the lost consumer got {len(held)} of {HELD}"

            def on_message(ch, method, _props, _body):
                got.append(time.monotonic())
                ch.basic_ack(method.delivery_tag)

            channel.basic_consume(name, on_message)
            conn.process_data_events(0.2)  # nothing yet: the lost consumer holds them all
            assert not got, "the survivor got a message before the kill"
            killed = time.monotonic()  # kill() returns once the VM is gone, a little later
            cluster.kill(victim)
        finally:
            with contextlib.suppress(Exception):
                lost.close()
        deadline = killed + DISCONNECTED_MS / 1000 + RETURN_WAIT_S
        while len(got) < HELD and time.monotonic() < deadline:
            conn.process_data_events(0.05)
    if len(got) < HELD:
        return f"not returned within {DISCONNECTED_MS / 1000 + RETURN_WAIT_S:g} s"
    figures.update(returned_s=round(got[0] - killed, 2), all_returned_s=round(got[-1] - killed, 2))
    if got[-1] - killed < DISCONNECTED_MS / 2000:  # half the timeout: an election is quick
        return "returned at the node's loss"
    return "returned after consumer_disconnected_timeout"


# -- declarations with the majority down ---------------------------------------------------------
def _outcome(url: str, name: str, kind: str, done: dict) -> None:
    import pika.exceptions as pe

    started = time.monotonic()
    try:
        with connect(url, name=f"{name}-declare") as conn:
            conn.channel().queue_declare(name, durable=True, arguments={"x-queue-type": kind})
        said = "declared"
    except (pe.ChannelClosedByBroker, pe.ConnectionClosedByBroker) as exc:
        what = "refused" if isinstance(exc, pe.ChannelClosedByBroker) else "connection closed"
        said = f"{what}: {exc.reply_code} {exc.reply_text.split(' - ')[0]}"
        done["text"] = " ".join(exc.reply_text.split())[:300]
    except Exception as exc:  # noqa: BLE001 - said, and measured, like the others
        said = f"failed: {type(exc).__name__}"
    seconds = time.monotonic() - started
    done.update(seconds=round(seconds, 2), outcome=f"{said} {_when(seconds)}")


def _when(seconds: float) -> str:
    """``at once`` (under 2 s), else ``after ~N s`` to the nearest 5 s (the broker's own
    timeouts are whole multiples of 5 s; what the machine's load adds stays under 2.5 s)."""
    return "at once" if seconds < 2 else f"after ~{5 * round(seconds / 5)} s"


def without_majority(cluster, figures: dict | None = None) -> dict:
    """Kill two of three nodes; declare through the one left (``DECLARATIONS``, at the same
    time, each waited for up to ``WAIT_S``): ``{what: outcome}``, the outcome being
    ``declared``, ``refused: CODE TEXT`` or ``connection closed: CODE TEXT``, then ``at
    once`` or ``after ~N s`` (``_when``); or ``no answer within N s``. ``figures`` gets the
    seconds each took (``<what>_s``) and the broker's words (``<what>_said``). The two nodes
    are started again before it returns."""
    figures = {} if figures is None else figures
    first, *others = cluster.members()
    names = {what: unique(f"nomaj-{what.replace('_', '-')}") for what, _, _ in DECLARATIONS}
    for what, kind, existing in DECLARATIONS:
        if existing:
            declare(first.url, names[what], kind)
    leader(cluster, names["existing_quorum"])
    results = {what: {} for what in names}
    threads = []
    try:
        for member in others:
            cluster.kill(member.nodename)
        _wait_alone(first)
        for what, kind, _ in DECLARATIONS:
            threads.append(threading.Thread(target=_outcome, daemon=True, name=f"cf-{what}",
                                            args=(first.url, names[what], kind, results[what])))
            threads[-1].start()
        deadline = time.monotonic() + WAIT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        answers = {what: dict(results[what]) for what in names}  # as they were at WAIT_S
    finally:
        cluster.start()
        for thread in threads:
            thread.join(30)
        delete(cluster.urls(), *names.values())
    for what, done in answers.items():
        figures[f"{what}_s"] = done.get("seconds", f">{WAIT_S}")
        if "text" in done:
            figures[f"{what}_said"] = done["text"]
    return {what: done.get("outcome", f"no answer within {WAIT_S} s")
            for what, done in answers.items()}


def _wait_alone(member, timeout: float = 30.0) -> None:
    """Until ``member`` is connected to no other node (it has noticed the kills)."""
    deadline = time.monotonic() + timeout
    while ctl(member)("eval", "nodes().").strip() != "[]":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{member.nodename} still sees other nodes after {timeout:g} s")
        time.sleep(0.2)


def measure(cluster, figures: dict | None = None) -> dict:
    """Every cluster fact (``FACTS``), on a running three-node ``cluster``; every node runs
    again when it returns. ``figures`` gets the seconds behind them."""
    figures = {} if figures is None else figures
    setting = disconnected_timeout(cluster)
    facts = {"consumer_disconnected_timeout_default": setting["default"],
             "consumer_disconnected_timeout_cluster": setting["cluster"]}
    for node in ("follower", "leader"):
        seconds: dict = {}
        facts[f"lost_consumer_{node}_node"] = lost_consumer(cluster, node, seconds)
        figures.update({f"lost_{node}_{k}": v for k, v in seconds.items()})
    for what, outcome in without_majority(cluster, figures).items():
        facts[f"declare_without_majority_{what}"] = outcome
    return facts
