"""Kill nodes of a private cluster while workers are busy on a quorum queue, and count.

``run(name, workers, prefetch, tasks, NodeLossOptions(...), cluster=...)`` plugs a
``NodeLoss`` step into the run skeleton on a ``PrivateCluster``: a quorum queue on every
node, workers given every node's URL, tasks published in batches while the nodes die.

* ``leader-kill``: SIGKILL the queue's leader; the two others elect a new one, clients of
  the dead node reconnect to another; nothing confirmed is lost.
* ``majority-loss``: SIGKILL nodes until a minority runs: the queue confirms and delivers
  nothing. ``down_s`` later the node down longest starts again; with a majority back, a
  leader is elected and every confirmed task is delivered.

Own keys: ``nodes``, ``killed_node(s)``, ``leaderless_s`` (kill until a running node was
seen leading; the poll before: ``t_leader_unseen``; what the polls saw change: ``leader_seen``),
``t_elected``, ``elected_term``, ``elected_node`` (the nodes' logs), ``revived_said`` (the
restarted node's first log line on the queue), ``recovery_s`` (until every worker consumes
again), ``held_at_fault``, ``recovered``, ``nacks``, ``republished``, ``confirmed_while_down``,
``first_confirm_after_kill_s``, ``duplicates_redelivered`` (an ack died with the node),
``duplicates_republished`` (published again without its confirm). Used by the CLI and 07.
"""
from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable

from helpers.broker import cluster_info, raft_log
from helpers.broker.cluster_info import cluster_broker
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.experiment.steps import Run, Step
from helpers import settings
from helpers.core import topology
from helpers.errors import BadInputError, BrokerControlError, HelpersError
from helpers.measure.monitor import wait_settled
from helpers.core.tasks import Task
from helpers.faults.options import PacedFaultOptions

#: Scenario name -> what the step kills: the leader, or enough nodes to lose the majority.
KILLS = {"leader-kill": "leader", "majority-loss": "majority"}
#: How often the step asks a surviving node which node leads the queue (seconds).
POLL_S = 0.05
#: Confirms count as "after the kill" from this long after it: a batch confirmed just before
#: it is recorded when its publish call returns, milliseconds later (seconds).
GRACE_S = 0.25
NAN = float("nan")


class NodeLoss(Step):
    """SIGKILL ``kill`` (``leader``, ``follower``, ``majority`` or a node) ``after_s`` s in.

    With ``down_s``, the node down longest (one already down, else the first killed) is
    started again that many seconds after the kill; with ``restore``, every node this step
    killed is started again once the run is over.
    """

    extra_s = 2 * settings.BOOT_TIMEOUT_S

    def __init__(self, cluster, kill: str = "leader", after_s: float = 1.0,
                 down_s: float | None = None, restore: bool = False, name: str | None = None):
        self.cluster, self.kill, self.after_s = cluster, kill, after_s
        self.name = name or next((k for k, v in KILLS.items() if v == kill), f"kill-{kill}")
        self.down_s, self.restore = down_s, restore
        self.fault: dict = {"killed": []}
        self.settled = False
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # -- choosing and killing ------------------------------------------------------------
    def _victims(self, queue: str) -> list[str]:
        running = [m.nodename for m in self.cluster.members() if m.node_pid()]
        leader = self.cluster.leader_of(queue)
        self.fault["leader_before"] = leader
        if self.kill == "leader":
            return [leader] if leader in running else []
        if self.kill == "follower":
            return [n for n in running if n != leader][-1:]
        if self.kill == "majority":
            order = [leader] + [n for n in reversed(running) if n != leader]
            keep = self.cluster.size // 2  # a minority: no leader can be elected
            return [n for n in order if n in running][:max(0, len(running) - keep)]
        return [self.cluster.member(self.kill).nodename]

    def started(self, run: Run) -> None:
        for target in (self._inject, self._watch_leader):
            thread = threading.Thread(target=target, args=(run,), daemon=True,
                                      name=f"node-loss-{target.__name__}")
            thread.start()
            self._threads.append(thread)

    def _inject(self, run: Run) -> None:
        run.publisher.started.wait()
        if self._stop.wait(self.after_s):
            return
        try:
            victims = self._victims(run.spec.name)
            if not victims:
                raise BrokerControlError(f"no running node matches {self.kill!r}")
            self.fault["down_before"] = [m.nodename for m in self.cluster.members()
                                         if not m.node_pid()]
            self.fault["finished_before"] = set(run.pool.log.finished)
            self.fault["confirmed_before"] = set(run.publisher.confirmed_t)
            self.fault["t_kill"] = time.time()
            for node in victims:
                self.cluster.kill(node)
                self.fault["killed"].append(node)
            self.fault["t_killed"] = time.time()
            if self.down_s is not None:
                self._stop.wait(max(0.0, self.fault["t_kill"] + self.down_s - time.time()))
                self.fault["t_restart"] = time.time()
                self.fault["revived"] = (self.fault["down_before"] or victims)[0]
                self.cluster.start_node(self.fault["revived"])
                self.fault["t_restarted"] = time.time()
        except HelpersError as exc:
            self.fault["error"] = str(exc)
        finally:
            self.fault.setdefault("t_kill", None)

    def _watch_leader(self, run: Run) -> None:
        """Note when a running node is *seen* leading the queue, and what the polls saw:
        until they have also listed a majority of the queue's members online (the management
        API can list them a poll or more after it names the leader)."""
        while "t_kill" not in self.fault and not self._stop.wait(POLL_S):
            pass
        if self.fault.get("t_kill") is None:
            return
        seen = self.fault["seen"] = []
        while not self._stop.is_set():
            asked = time.time()
            info = self.cluster.queue_info(run.spec.name)
            leader, online = cluster_info.leader(info), sorted((info or {}).get("online") or [])
            if not seen or seen[-1][1:] != (leader, online):
                seen.append((time.time(), leader, online))
            # A dead node named is a stale record, unless it was started again (and booted:
            # its VM alone is not enough, see start_node).
            dead = (set(self.fault["killed"]) | set(self.fault.get("down_before", []))) - (
                {self.fault.get("revived")} if "t_restarted" in self.fault else set())
            if "new_leader" not in self.fault:
                if leader and leader not in dead and self.cluster.member(leader).node_pid():
                    self.fault.update(t_leader=time.time(), new_leader=leader)
                else:
                    self.fault["t_leader_unseen"] = asked  # this poll saw no new leader yet
            if "new_leader" in self.fault and len(set(online) - dead) > self.cluster.size // 2:
                return
            self._stop.wait(POLL_S)

    # -- after the run ---------------------------------------------------------------------
    def finished(self, run: Run, done: bool) -> None:
        if done and "t_kill" in self.fault:  # let a restart under way end, and the watcher
            self._threads[0].join(timeout=self.extra_s)
            self._threads[1].join(timeout=10)
        self._stop.set()  # a run over before the kill kills nothing
        for thread in self._threads:
            thread.join(timeout=self.extra_s)
        if "error" in self.fault:
            raise BrokerControlError(f"The node kill failed ({self.fault['error']}): see "
                                     "`python -m helpers cluster status`.")
        if done:
            self.settled = wait_settled(cluster_broker(self.cluster), run.spec.name)
        if self.restore:
            for node in self.fault["killed"]:
                if not self.cluster.member(node).node_pid():
                    self.cluster.start_node(node)

    def summary(self, run: Run) -> dict:
        fault, events, published = self.fault, run.pool.snapshot(), run.published
        t_kill = fault.get("t_kill") or NAN
        held = fault.get("confirmed_before", set()) - fault.get("finished_before", set())
        completed = {e["task"] for e in events if e["event"] == "finished"}
        leaderless = fault.get("t_leader", NAN) - t_kill
        # A worker cut off by the kill consumes again at its first "ready" after it.
        cut = {e["worker"] for e in events if e["event"] == "disconnected" and e["t"] > t_kill}
        back = {e["worker"]: e["t"] - t_kill for e in reversed(events)
                if e["event"] == "ready" and e["worker"] in cut and e["t"] > t_kill}
        recovery = max([leaderless, *back.values()]) if len(back) == len(cut) else NAN
        after = sorted(t for t in run.publisher.confirmed_t.values() if t > t_kill + GRACE_S)
        dup_redelivered, dup_republished = _duplicate_sources(events)
        elected, said = raft_log.after_node_loss(self.cluster, run.spec.name, fault.get(
            "revived"), t_kill, fault.get("t_restart"))
        return dict(
            fault=self.name,
            nodes=self.cluster.size, killed_node=(fault["killed"] or [None])[0],
            killed_nodes=list(fault["killed"]), leader_before=fault.get("leader_before"),
            down_before=fault.get("down_before", []), revived_node=fault.get("revived"),
            new_leader=fault.get("new_leader"), fault_at_s=round(t_kill - published.t_first, 3),
            leaderless_s=round(leaderless, 3), recovery_s=round(recovery, 3),
            down_s=round(fault.get("t_restarted", NAN) - t_kill, 3),
            first_confirm_after_kill_s=round(after[0] - t_kill, 3) if after else NAN,
            confirmed_while_down=(sum(t_kill + GRACE_S < t < fault["t_restart"]
                                      for t in run.publisher.confirmed_t.values())
                                  if "t_restart" in fault else None),
            held_at_fault=len(held), recovered=len(held & completed),
            nacks=run.publisher.nacks, publisher_retries=published.reconnects,
            republished=len(published.published) - len(set(published.published)),
            duplicates_redelivered=dup_redelivered, duplicates_republished=dup_republished,
            worker_disconnects=len([e for e in events if e["event"] == "disconnected"]),
            worker_reconnects=sum(e["event"] == "ready" and e.get("generation", 0) > 0
                                  for e in events),
            settled=self.settled, publish_error=run.publisher.error, t_kill=t_kill,
            node_of={_host_port(m.url): m.nodename for m in self.cluster.members()},
            confirmed_at_s=sorted(round(t - published.t_first, 3)
                                  for t in run.publisher.confirmed_t.values()),
            t_leader=fault.get("t_leader"), t_leader_unseen=fault.get("t_leader_unseen"),
            t_restart=fault.get("t_restart"), t_restarted=fault.get("t_restarted"),
            leader_seen=[(round(t - published.t_first, 3), *r) for t, *r in fault.get("seen", [])],
            t_elected=elected and elected[0], elected_term=elected and elected[1],
            elected_node=elected and elected[2], revived_said=said)


def _host_port(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def _duplicate_sources(events: list[dict]) -> tuple[int, int]:
    """Completions beyond the first: of redelivered messages, and of republished copies."""
    redelivered = {e["delivery"] for e in events
                   if e["event"] == "delivered" and e.get("redelivered")}
    seen: set = set()
    by_redelivery = by_copy = 0
    for e in sorted((e for e in events if e["event"] == "finished"), key=lambda e: e["t"]):
        if e["task"] in seen:
            if e["delivery"] in redelivered:
                by_redelivery += 1
            else:
                by_copy += 1
        seen.add(e["task"])
    return by_redelivery, by_copy

#: the options of ``python -m helpers fault`` this scenario takes
COMMAND_LINE = ("fault_after_s", "queue_type")


@dataclass(frozen=True)
class NodeLossOptions(PacedFaultOptions):
    """How a node-loss run goes (``leader-kill``, ``majority-loss``), checked once."""

    #: overrides what the scenario kills: ``leader``, ``follower``, ``majority`` or a node
    kill: str | None = None
    #: majority loss: seconds from the kill to starting the node down longest (None: 4)
    down_s: float | None = None
    #: start every killed node again once the run is over (the cluster is whole again)
    restore: bool = True
    #: ``quorum`` or None (the only queue these scenarios are about)
    queue_type: str | None = None
    #: deletes the run's queue (``helpers.experiment.skeleton.run``): with a node down, a
    #: quorum queue takes 5 s to delete (it waits for the missing member): a notebook defers it
    discard: Callable | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.queue_type not in (None, "quorum"):
            raise BadInputError(f"leader-kill and majority-loss run on a quorum queue, the "
                                f"kind replicated on every node (got --queue-type "
                                f"{self.queue_type}): leave the queue type out.")
        super().__post_init__()


def run(name: str, workers: int, prefetch: int, tasks: list[Task],
        options: NodeLossOptions = NodeLossOptions(), *, cluster=None,
        progress=None) -> runner.RunResult:
    """Run ``tasks`` on a quorum queue of the private cluster and kill nodes mid-run.

    ``name`` is ``leader-kill`` or ``majority-loss`` (see the module docstring); ``cluster``
    a running ``PrivateCluster`` (default: the checkout's, started if needed).
    """
    if name not in KILLS:
        raise BadInputError(f"the fault must be one of {', '.join(KILLS)} (got {name!r}).")
    if cluster is None:
        from helpers.broker.cluster import PrivateCluster

        cluster = PrivateCluster()
        cluster.start()
    o = options
    down_s = 4.0 if name == "majority-loss" and o.down_s is None else o.down_s
    step = NodeLoss(cluster, o.kill or KILLS[name], o.fault_after_s, down_s, o.restore, name)
    spec = topology.unique_spec(o.label or name, kind="quorum", dead_letter=False)
    exp = Experiment(workers, tasks, WorkerConfig(prefetch=prefetch), publish=o.publish(),
                     queue=spec, label=o.label or name, timeout=o.timeout, save=o.save)
    return runner.run(exp, steps=[step], broker=cluster_broker(cluster), progress=progress,
                      discard=o.discard)


OPTIONS = NodeLossOptions  # what ``run`` takes (``faults.run_fault`` builds it from keywords)


def line(summary: dict) -> str:
    """The figures of a node-loss run in one line, as the CLI prints them."""
    s = summary
    killed = ", ".join(s["killed_nodes"]) or "no node"
    return (f"{s['fault']}: killed {killed} {s['fault_at_s']:.1f} s into the run; a running "
            f"node led the queue again after {s['leaderless_s']:.2f} s, every worker consumed "
            f"again after {s['recovery_s']:.2f} s: confirmed {s['tasks_confirmed']}, completed "
            f"{s['tasks_completed']}, lost {s['tasks_lost']}; held at the kill "
            f"{s['held_at_fault']}, recovered {s['recovered']}; duplicates {s['duplicates']} "
            f"({s['duplicates_redelivered']} redelivered, {s['duplicates_republished']} "
            f"republished), redeliveries {s['redeliveries']}, nacks {s['nacks']}, worker "
            f"reconnects {s['worker_reconnects']}")
