"""Notebook 07: a RabbitMQ cluster that loses a node while workers are busy.

Experiments on the checkout's private cluster (``helpers.broker.cluster``), each ending in the
same accounting (confirmed, completed, lost, duplicated, recovered):

* ``park`` (``cluster_classic``): confirmed messages wait in a classic and a quorum queue
  on the node the leader kill will take down; probed while it is down and once it is back;
* ``leader_kill``: the node leading the run's quorum queue is SIGKILLed mid-run
  (``helpers.faults.leader_kill``); a new leader is elected, clients move to another node;
* ``majority_loss``: nodes die until a minority is left, so no leader can be elected; the
  node down longest comes back a few seconds later.

``Lab`` starts the cluster (its nodes in parallel) and puts it back as it found it. It
also deletes the experiments' queues, at the end and all at once: RabbitMQ takes 5 s to
delete a quorum queue while one of its members is down (it waits for the missing member),
and after the first kill a node stays down until the end of the notebook.
"""
from __future__ import annotations

import atexit
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from helpers import faults
from helpers.experiment import skeleton as runner
from helpers.core import topology
from helpers.core import tasks as task_lists
from helpers.measure.figures import explained
from helpers.broker.cluster import PrivateCluster
from helpers.broker.cluster_info import cluster_broker
from helpers.lessons.cluster_classic import Parked, park  # noqa: F401  (the notebook calls cluster.park)
# the answers to the notebook's questions, which it asks as ``cluster.leader_story(result)``
from helpers.lessons.cluster_answers import leader_story, majority_story  # noqa: F401
from helpers.lessons.cluster_plots import short_name
from helpers.lessons.common import Declared, Text
from helpers.lessons.panels import Panel, declared_run, dropdown, float_slider, int_slider


class Lab:
    """The private cluster for one notebook: started in parallel, left as it was found.

    A cluster this lab started (or started again, all nodes down, for a panel run after
    ``finish``) is its to stop: ``finish`` does, and so does the kernel's exit, so a
    notebook closed without running its last cell leaves no node behind. (At the exit, in a
    process of its own: Jupyter kills a kernel that takes over 5 s to exit, and a clean stop
    of the nodes takes longer.)
    """

    def __init__(self, nodes: int = 3, progress=None, cluster: PrivateCluster | None = None):
        self.cluster = cluster or PrivateCluster(nodes)
        t0 = time.monotonic()
        self.started = self.cluster.start(progress=progress)
        self.boot_s = round(time.monotonic() - t0, 1)
        self.version = cluster_broker(self.cluster).version()
        self.pending: list = []  # queues (specs or names) to delete at the end
        atexit.register(self._at_exit)

    def describe(self) -> Text:
        """One line: nodes, version, how long they took to be a cluster."""
        how = f"booted in parallel in {self.boot_s} s" if self.started else "already running"
        held = self.cluster.disconnected_timeout_ms
        held = "" if held is None else (
            f"; a dead node's consumers' unacked messages are held {held / 1000:g} s "
            "(consumer_disconnected_timeout, 60 s by default) before another gets them")
        return Text(f"{self.cluster.size} nodes ({', '.join(self.cluster.names)}), RabbitMQ "
                    f"{self.version}, {how}{held}")

    def _running(self) -> list[str]:
        return [m.nodename for m in self.cluster.members() if m.node_pid()]

    def heal(self) -> list[str]:
        """Start every node that is down (in parallel); return their names."""
        down = [name for name in self.cluster.names if name not in self._running()]
        if down:
            if len(down) == self.cluster.size:
                self.started = True  # booted again from nothing: ours to stop
            self.cluster.start()
        return down

    def discard_later(self, urls, *queues) -> None:
        """Note ``queues`` to delete at ``finish`` (a ``discard`` for ``helpers.experiment.skeleton.run``; they
        are deleted through the nodes running then, whatever ``urls`` says now)."""
        self.pending.extend(queues)

    def discard_pending(self) -> int:
        """Delete the queues noted so far, all at once (in threads); return how many."""
        pending, self.pending = self.pending, []
        return _discard_all(self.cluster, pending)

    def finish(self) -> Text:
        """Delete the experiments' queues; stop the cluster if this lab started it, otherwise
        start the nodes it killed."""
        healed = [] if self.started else self.heal()  # (then the deletes are quick)
        deleted = self.discard_pending()
        if self.started:
            self.cluster.stop()
            return Text(f"{deleted} queues deleted, cluster stopped")
        return Text(f"{deleted} queues deleted; "
                    + (f"started again: {', '.join(healed)}" if healed else "cluster left running"))

    def _at_exit(self) -> None:
        names = [getattr(q, "name", q) for q in self.pending]
        if self._running() and (names or self.started):
            code = "import sys; from helpers.lessons.cluster import tidy; tidy(*sys.argv[1:])"
            subprocess.Popen([sys.executable, "-c", code, str(self.cluster.state_dir),
                              "stop" if self.started else "keep", *names],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)


def _discard_all(cluster: PrivateCluster, queues: list) -> int:
    """Delete ``queues`` through the running nodes, each in a thread; return how many."""
    urls = cluster.urls(running_only=True)
    if not urls:
        return 0
    threads = [threading.Thread(target=topology.discard, args=(urls, q), daemon=True)
               for q in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(queues)


def tidy(state_dir: str, stop: str, *queues: str) -> None:
    """What a ``Lab`` leaves to do at the kernel's exit: delete ``queues``, then stop the
    cluster in ``state_dir`` if ``stop`` is ``"stop"``."""
    cluster = PrivateCluster(state_dir=Path(state_dir))
    _discard_all(cluster, list(queues))
    if stop == "stop":
        cluster.stop()


# -- the experiments -------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaderKill(Declared):
    """``tasks`` tasks of ``duration`` s on ``workers`` workers (two per node, prefetch 1),
    ``kill`` (the queue's leader, a follower or a node's name) SIGKILLed ``after_s`` s in;
    ``restore``: start it again at the end."""

    tasks: int = 200
    duration: float = 0.05
    workers: int = 6
    kill: str = "leader"
    after_s: float = 0.6
    restore: bool = False


@dataclass(frozen=True)
class MajorityLoss(Declared):
    """The same run, nodes killed ``after_s`` s in until a minority is left; ``down_s``
    later the node down longest is started again."""

    tasks: int = 150
    duration: float = 0.05
    workers: int = 6
    after_s: float = 0.6
    down_s: float = 3.0


#: Notebook 07's node-loss runs (the first is its panel's defaults)
LEADER_KILL, MAJORITY_LOSS = LeaderKill(), MajorityLoss()


def leader_kill(lab: Lab, plan: LeaderKill = LEADER_KILL, *,
                progress=None) -> runner.RunResult:
    """Run ``plan`` on ``lab``'s quorum queue (``helpers.faults.leader_kill``)."""
    return faults.run_fault("leader-kill", plan.workers, 1,
                            task_lists.equal(plan.tasks, plan.duration), cluster=lab.cluster,
                            kill=plan.kill, fault_after_s=plan.after_s, restore=plan.restore,
                            progress=progress, save=False, discard=lab.discard_later)


def majority_loss(lab: Lab, plan: MajorityLoss = MAJORITY_LOSS, *,
                  progress=None) -> runner.RunResult:
    """Run ``plan`` on ``lab``: kill nodes until a minority runs, then start one again."""
    return faults.run_fault("majority-loss", plan.workers, 1,
                            task_lists.equal(plan.tasks, plan.duration), cluster=lab.cluster,
                            fault_after_s=plan.after_s, down_s=plan.down_s, restore=False,
                            progress=progress, save=False, discard=lab.discard_later)


# -- the accounting ---------------------------------------------------------------------------
def accounting(results: dict) -> pd.DataFrame:
    """Jepsen-style: per case, confirmed, completed, lost, duplicated, recovered.

    ``results`` maps a label to a node-loss ``RunResult`` or to a ``Parked`` pair of queues.
    """
    rows = {}
    for label, result in results.items():
        if isinstance(result, Parked):
            rows.update({f"{label}: {row}": v for row, v in result.accounting().items()})
            continue
        s = result.summary
        rows[label] = {"confirmed": s["tasks_confirmed"], "completed": s["tasks_completed"],
                       "lost": s["tasks_lost"], "duplicated": s["duplicates"],
                       "recovered": s["recovered"]}
    return pd.DataFrame(rows).T


def figures(result: runner.RunResult) -> pd.Series:
    """The timings and counts of one node-loss run, for its table."""
    keys = ("killed_nodes", "leader_before", "new_leader", "fault_at_s", "leaderless_s",
            "recovery_s", "down_s", "confirmed_while_down", "first_confirm_after_kill_s",
            "held_at_fault", "recovered", "nacks", "publisher_retries", "republished",
            "duplicates_redelivered", "duplicates_republished", "redeliveries",
            "worker_disconnects", "worker_reconnects", "broker_version")
    s = result.summary
    table = pd.DataFrame({k: [s[k]] for k in keys if k in s}, index=[s["fault"]], dtype=object)
    return explained(table, reasons=NO_FIGURE).iloc[0]


#: why a node-loss figure can be empty: what the run did not do
NO_FIGURE = {"down_s": "none: no node was started again in this run",
             "confirmed_while_down": "none: no node was started again in this run",
             "first_confirm_after_kill_s": "none: nothing was confirmed after the kill"}


# -- the panel --------------------------------------------------------------------------------
def _panel_run(plan: LeaderKill, *, lab: Lab, progress=None) -> runner.RunResult:
    healed = lab.heal()  # each run starts from a whole cluster
    result = leader_kill(lab, plan, progress=progress)
    result.summary["healed_before"] = healed
    return result


def _panel_report(result: runner.RunResult) -> list:
    from helpers.lessons.cluster_plots import node_loss_figure

    label = f"{short_name(result.summary['killed_node'])} killed"
    return [node_loss_figure(result), accounting({label: result}), figures(result)]


def node_loss_panel(lab: Lab) -> Panel:
    """Notebook 07: which node to kill, when; Run (nodes down before a run are started first)."""
    nodes = [(f"{name.split('@')[0]}", name) for name in lab.cluster.names]
    lk = LEADER_KILL
    return Panel("Kill a node of the cluster mid-run", declared_run(_panel_run, lk),
                 _panel_report, {
                     "kill": dropdown("node to kill", [("the queue's leader", "leader"),
                                                       ("a follower", "follower"), *nodes],
                                      lk.kill),
                     "after_s": float_slider("kill after s", lk.after_s, 0.1, 3.0, 0.1),
                     "workers": int_slider("workers", lk.workers, 3, 9),
                     "tasks": int_slider(f"tasks ({lk.duration:g} s each)", lk.tasks, 50, 600,
                                         50)},
                 fixed={"lab": lab})
