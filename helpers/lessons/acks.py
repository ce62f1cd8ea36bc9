"""Notebook 02, part one: kill a worker mid-task, with and without acks.

``kill_run`` starts real workers, publishes equal tasks and SIGKILLs one worker at a chosen
moment (or when the Kill button of its panel says so), then waits until every task is done
or provably gone; ``fate_table`` follows each task the victim held (``acks_fate``, with
``answer``, the prediction's answer). The forgotten ack, the
notebook's second part, is in ``helpers.lessons.forgotten_ack``.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.measure import plots, timing
from helpers.checks import validate
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.experiment.steps import Run, Step
from helpers.core import topology
from helpers.core import tasks as task_lists
from helpers.core.connection import connect
from helpers.errors import BadInputError, HelpersError
from helpers.frameworks.config import FrameworkConfig
from helpers.pool.events import unacked
from helpers.pool.pool import WorkerPool
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.lessons.common import Declared, finish
from helpers.lessons.acks_fate import answer, fate_table  # noqa: F401 - notebook 02 calls them here
from helpers.lessons.panels import KillPanel, declared_run, dropdown, float_slider, int_slider, queue_type


#: With auto acks, how long after a kill to wait before calling a run with nothing left in
#: the queue or in hand finished (what the killed worker received but never reported).
SETTLE_S = 0.5


@dataclass
class KillResult:
    """One run in which a worker was (or was not) killed mid-task."""

    ack: str
    prefetch: int
    victim: str
    killed_at_s: float | None
    summary: dict
    deliveries: pd.DataFrame
    lost: list
    #: Celery's or Dramatiq's workers (notebook 09); None: the project's pika workers
    framework: FrameworkConfig | None = None

    @property
    def label(self) -> str:
        if self.framework is not None:
            return self.framework.label
        if self.ack == "auto":
            return "auto_ack (prefetch does not apply)"
        return f"{self.ack} acks, prefetch {self.prefetch or 'unlimited'}"


def _busy_workers(pool: WorkerPool) -> set:
    """Live workers holding a delivery they have not finished. A task a kill cut off is
    over once its worker has said what became of it (acked or requeued): Celery's main
    process outlives its pool child, and decides a few seconds after the child died."""
    events = pool.snapshot()
    df = timing.deliveries(events)
    live = {h.name for h in pool.alive()}
    open_rows = df[df["finished_t"].isna() & df["worker"].isin(live)]
    answered = {e.get("delivery") for e in events if e.get("event") in ("acked", "requeued")}
    for k in pool.kills:
        open_rows = open_rows[~((open_rows["worker"] == k["worker"])
                                & (open_rows["started_t"] <= k["t"])
                                & open_rows["delivery"].isin(answered))]
    return set(open_rows["worker"])


def _settled(pool: WorkerPool, confirmed, channel, queue: str) -> bool:
    """All tasks done, or a worker was killed and nothing is left anywhere to finish.

    With manual acks nothing is ever gone: what a killed worker held goes back to the queue,
    so only every task done (or no worker left alive) ends the run. The queue's count and
    the workers' events are two views taken at different moments: a task the broker has
    just handed to a live worker is in neither (it left the queue, its ``delivered`` line is
    still on its way), and a run ended on them cut that worker off mid-task and called the
    task lost. With auto acks a killed worker's tasks are gone: the run may end once each
    task is done or was delivered to a dead worker, or (for what it received but never
    reported) ``SETTLE_S`` after the kill with the queue empty and no live worker busy.
    """
    done = pool.finished
    if all(done[i] for i in confirmed):
        return True
    if not pool.kills:
        return False
    if not pool.alive():
        return True
    if getattr(pool, "framework", None) is not None:
        return _framework_settled(pool, channel, queue)
    if pool.config.ack != "auto":
        return False
    df = timing.deliveries(pool.snapshot())
    dead = ~df["worker"].isin({h.name for h in pool.alive()}) & df["finished_t"].isna()
    gone = set(df.loc[dead, "task"])
    if all(done[i] or i in gone for i in confirmed):
        return True
    if time.time() - pool.kills[-1]["t"] < SETTLE_S:
        return False
    return topology.message_count(channel, queue) == 0 and not _busy_workers(pool)


def _framework_settled(pool: WorkerPool, channel, queue: str) -> bool:
    """A framework decides a killed task's fate itself: Celery acks it (lost) or requeues it
    some seconds after its pool child died, Dramatiq's worker dies with its connection, and
    the broker requeues what it held. The run ends once the workers have been quiet for
    ``SETTLE_S`` (a requeued task is on its way to a worker within that), the queue is empty
    and no live worker holds a task it has not finished or answered for."""
    last = pool.events[-1].get("t", 0) if pool.events else 0
    if time.time() - max(last, pool.kills[-1]["t"]) < SETTLE_S:
        return False
    return topology.message_count(channel, queue) == 0 and not _busy_workers(pool)


def _all_acked(pool: WorkerPool) -> bool:
    """No live worker holds a delivery it has not acked. The run ends on the last
    ``finished`` line, which a worker writes before its ack; the pool's stop ends a worker at
    once, and a stop that beat the ack made the broker requeue a task that was done and
    hand it to a worker not yet stopped: a redelivery and a cut bar that no kill caused."""
    return unacked(pool.events, {h.name for h in pool.alive()}) == 0


class _KillOnce(Step):
    """Kill ``victim`` ``after_s`` after the first publish (unless a button did first); end
    the run once it has settled (see ``_settled``)."""

    def __init__(self, victim: str, after_s: float, on_pool):
        self.victim, self.after_s, self.on_pool = victim, after_s, on_pool
        self.settled = False
        self._conn = self._channel = self._timer = None

    def started(self, run: Run) -> None:
        if self.victim not in run.names:
            raise BadInputError(f"victim must be one of {', '.join(run.names)} "
                                f"(got {self.victim!r}).")
        if self.on_pool is not None:
            self.on_pool(run.pool)
        self._conn = connect(run.broker.url, name=f"watch {run.spec.name}")
        self._channel = self._conn.channel()
        if self.after_s:
            delay = max(0.0, run.published.t_first + self.after_s - time.time())
            # A framework's pool kills the process running the task (Celery: the pool child).
            kill = getattr(run.pool, "kill_task", run.pool.kill)
            self._timer = threading.Timer(delay, lambda: run.pool.kills or kill(self.victim))
            self._timer.start()

    def ends(self, run: Run) -> bool:
        self.settled = _settled(run.pool, run.published.confirmed, self._channel,
                                run.spec.name)
        return self.settled

    def finished(self, run: Run, done: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if done:  # the last acks, and a task done before a kill and redone (a duplicate)
            run.pool.wait_for(_all_acked, 1.0 + max(t.duration for t in run.tasks))
        if self._conn is not None and self._conn.is_open:
            self._conn.close()


@dataclass(frozen=True)
class KillPlan(Declared):
    """One kill run: K workers, N equal tasks, ``victim`` SIGKILLed ``kill_after_s`` after the
    first publish (0: nobody, unless the panel's Kill button says so)."""

    workers: int = 3
    tasks: int = 12
    duration: float = 0.5
    #: ``manual`` (ack after the work) or ``auto`` (the broker forgets a message as soon as
    #: it sends it; prefetch is then ignored)
    ack: str = "manual"
    prefetch: int = 1
    victim: str = "w1"
    kill_after_s: float = 0.75
    queue_type: str = DEFAULT_QUEUE_KIND
    #: Celery's or Dramatiq's workers with these settings (``ack`` and ``prefetch`` then
    #: unused); the kill SIGKILLs the process running the victim's task
    framework: FrameworkConfig | None = None


#: Notebook 02's kill run, and its panel's defaults.
KILL = KillPlan()


def kill_run(plan: KillPlan = KILL, *, broker=None, progress=None,
             on_pool=None) -> KillResult:
    """Run ``plan``: SIGKILL its victim mid-task, wait until every task is done or provably
    gone. ``on_pool`` is called with the running ``WorkerPool`` (the Kill button keeps it)."""
    work = task_lists.equal(plan.tasks, plan.duration)
    validate(plan.workers, plan.prefetch, work)
    ack, framework = plan.ack, plan.framework
    if ack not in ("manual", "auto"):
        raise BadInputError(f"ack must be 'manual' or 'auto' (got {ack!r}).")
    kill = _KillOnce(plan.victim, plan.kill_after_s, on_pool)
    exp = Experiment(plan.workers, work, WorkerConfig(prefetch=plan.prefetch, ack=ack),
                     queue=topology.unique_spec(f"kill-{ack}", kind=plan.queue_type),
                     label=f"kill-{ack}", save=False, framework=framework)
    result = runner.run(exp, steps=[kill], broker=broker, progress=progress)
    if not kill.settled and not result.summary["completed_in_time"]:
        raise HelpersError("The run did not settle in time: is a worker stuck? Run it again "
                           "with fewer tasks or workers.")
    t0, df = result.publish.t_first, result.deliveries
    killed_at = None
    for k in result.kills:  # a cut bar ends when its worker died
        cut = (df["worker"] == k["worker"]) & df["finished_t"].isna() & df["started_t"].notna()
        df.loc[cut, "end_s"] = k["t"] - t0
        killed_at = killed_at if killed_at is not None else k["t"] - t0
    lost = sorted(set(result.publish.confirmed) - set(df.loc[df["finished_t"].notna(), "task"]))
    victim_name = result.kills[0]["worker"] if result.kills else plan.victim
    return KillResult(ack, result.summary["prefetch"], victim_name, killed_at, result.summary,
                      df, lost, framework)


def kill_plan(values: dict) -> str:
    """When the kill panel's values kill the worker, counted in its tasks, in one line."""
    after, duration, victim = values["kill_after_s"], values["duration"], values["victim"]
    if not after:
        return f"{victim} is killed when you press Kill."
    ordinal = {1: "first", 2: "second", 3: "third"}.get(int(after // duration) + 1,
                                                       f"task {int(after // duration) + 1}")
    return (f"{victim} is killed {after:g} s after the first publish; with tasks of "
            f"{duration:g} s that is {after / duration:.2f} tasks in, during its {ordinal} "
            "task (its first one starts a moment after the publish).")


def kill_table(results: dict) -> pd.DataFrame:
    """One row per run: tasks published, completed, lost, redelivered."""
    rows = []
    for label, r in results.items():
        s = r.summary
        rows.append({"run": label, "killed": r.victim if r.killed_at_s is not None else "-",
                     "published": s["tasks_published"], "completed": s["tasks_completed"],
                     "lost": s["tasks_lost"], "redeliveries": s["redeliveries"],
                     "duplicates": s["duplicates"], "makespan_s": None if s["makespan_s"] is None
                     else round(s["makespan_s"], 2)})
    return pd.DataFrame(rows).set_index("run")


def plot_kills(results: dict):
    """One timeline per run, on one time axis; a dashed line where the worker died."""
    n = len(results)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.3 * n), squeeze=False, sharex=True)
    for ax, (label, r) in zip(axes[:, 0], results.items()):
        s = r.summary
        killed = (f"{r.victim} killed at {r.killed_at_s:.2f} s; "
                  if r.killed_at_s is not None else "nobody killed; ")
        plots.timeline(r.deliveries, ax=ax,
                       title=f"{label}: {killed}{s['tasks_lost']} lost, "
                             f"{s['redeliveries']} redelivered")
        if r.killed_at_s is not None:
            ax.axvline(r.killed_at_s, color="black", linestyle="--", linewidth=0.8)
        ax.set_xlabel("")
        ax.set_xlim(left=0)
    # Bars are patches, which a shared axis does not always autoscale to: fit every run.
    xmax = pd.concat([r.deliveries["end_s"] for r in results.values()]).max()
    axes[-1, 0].set_xlim(0, (1.0 if pd.isna(xmax) else float(xmax)) * 1.02)
    axes[-1, 0].set_xlabel("seconds since the first publish "
                           "(pink: cut off; hatched: redelivered)")
    return finish(fig)


def kill_report(result: KillResult) -> list:
    """What the Run button of the kill panel shows."""
    return [plot_kills({result.label: result}), kill_table({result.label: result}),
            fate_table(result)]


def kill_panel(broker=None) -> KillPanel:
    """Notebook 02: kill a worker mid-task, by timer or with the Kill button."""
    return KillPanel("Kill a worker mid-task", declared_run(kill_run, KILL), kill_report,
                     kill_controls(KILL, {
        "ack": dropdown("acknowledgements", [("manual ack", "manual"), ("auto_ack", "auto")],
                        KILL.ack),
        "prefetch": int_slider("prefetch (0 = no limit)", KILL.prefetch, 0, 10)}),
        fixed={"broker": broker})


def kill_controls(plan: KillPlan, middle: dict) -> dict:
    """A kill panel's controls (notebooks 02 and 09), ``middle`` after the task length, their
    defaults from ``plan``."""
    return {"workers": int_slider("workers", plan.workers, 2, 6),
            "tasks": int_slider("tasks", plan.tasks, 1, 40),
            "duration": float_slider("seconds per task", plan.duration, 0.1, 3.0, 0.1),
            **middle,
            "kill_after_s": float_slider("kill after s (0 = by hand)", plan.kill_after_s,
                                         0.0, 5.0, 0.05),
            "victim": dropdown("worker to kill", ["w1", "w2", "w3"], plan.victim),
            "queue_type": queue_type(plan.queue_type)}
