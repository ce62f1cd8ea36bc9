"""Notebook 02, part one: kill a worker mid-task, with and without acks.

``kill_run`` starts real workers, publishes equal tasks and SIGKILLs one worker at a chosen
moment (or when the Kill button of its panel says so), then waits until every task is done
or provably gone; ``fate_table`` follows each task the victim held. The forgotten ack, the
notebook's second part, is in ``helpers.lessons.forgotten_ack``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from .. import broker as broker_mod
from .. import plots, producer, runner, timing, topology
from .. import tasks as task_lists
from ..connection import connect
from ..errors import BadInputError, HelpersError
from ..pool import WorkerPool
from .common import finish
from .panels import KillPanel, dropdown, float_slider, int_slider


#: After a kill, how long to wait before calling a quiet run finished (the broker notices a
#: killed consumer's closed socket within milliseconds and requeues at once).
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

    @property
    def label(self) -> str:
        if self.ack == "auto":
            return "auto_ack (prefetch does not apply)"
        return f"{self.ack} acks, prefetch {self.prefetch or 'unlimited'}"


def _busy_workers(pool: WorkerPool) -> set:
    """Live workers holding a delivery they have not finished."""
    df = timing.deliveries(pool.snapshot())
    live = {h.name for h in pool.alive()}
    open_rows = df[df["finished_t"].isna() & df["worker"].isin(live)]
    return set(open_rows["worker"])


def _settled(pool: WorkerPool, total: int, channel, queue: str) -> bool:
    """All tasks done, or a worker was killed and nothing is left anywhere to finish."""
    if len(pool.finished) >= total:
        return True
    if not pool.kills or time.time() - pool.kills[-1]["t"] < SETTLE_S:
        return False
    if not pool.alive():
        return True
    return topology.message_count(channel, queue) == 0 and not _busy_workers(pool)


def kill_run(workers: int = 3, tasks: int = 12, duration: float = 0.5, ack: str = "manual",
             prefetch: int = 1, victim: str = "w1", kill_after_s: float = 0.75, *,
             broker=None, progress=None, on_pool=None) -> KillResult:
    """K workers, N equal tasks; SIGKILL ``victim`` ``kill_after_s`` after the first publish.

    Parameters
    ----------
    ack: ``manual`` (ack after the work) or ``auto`` (the broker forgets a message as soon
        as it sends it; prefetch is then ignored).
    kill_after_s: 0 kills nobody by itself (the Kill button of the panel can).
    on_pool: called with the running ``WorkerPool`` (the Kill button keeps it).
    """
    work = task_lists.equal(tasks, duration)
    runner.validate(workers, prefetch, work)
    if ack not in ("manual", "auto"):
        raise BadInputError(f"ack must be 'manual' or 'auto' (got {ack!r}).")
    found = broker or broker_mod.get()
    durations = {t.id: t.duration for t in work}
    with topology.scratch_queue(found.url, f"kill-{ack}") as spec, \
            connect(found.url, name=f"watch {spec.name}") as conn:
        channel = conn.channel()
        pool = WorkerPool(found.url, spec, prefetch=prefetch, ack=ack)
        try:
            names = [h.name for h in pool.start(workers)]
            if victim not in names:
                raise BadInputError(f"victim must be one of {', '.join(names)} (got {victim!r}).")
            if on_pool is not None:
                on_pool(pool)
            published = producer.publish(found.url, spec, work, declare_queue=False,
                                         name=f"producer {spec.name}")
            t0 = published.t_first
            deadline = time.monotonic() + 3 * timing.ideal_makespan(
                durations.values(), workers) + 30
            while not _settled(pool, len(work), channel, spec.name):
                if kill_after_s and not pool.kills and time.time() >= t0 + kill_after_s:
                    pool.kill(victim)
                if progress is not None:
                    progress(len(pool.finished), len(work))
                if time.monotonic() > deadline:
                    raise HelpersError("The run did not settle in time: is a worker stuck?")
                time.sleep(0.05)
        finally:
            pool.stop()
    events = pool.snapshot()
    summary = timing.summarize(events, published.published, published.confirmed, durations,
                               names, t0, ack=ack, prefetch=prefetch, kills=len(pool.kills))
    df = timing.deliveries(events, t0=t0, durations=durations)
    killed_at = None
    for kill in pool.kills:  # a cut bar ends when its worker died
        cut = (df["worker"] == kill["worker"]) & df["finished_t"].isna() & df["started_t"].notna()
        df.loc[cut, "end_s"] = kill["t"] - t0
        killed_at = killed_at if killed_at is not None else kill["t"] - t0
    lost = sorted(set(published.confirmed) - set(df.loc[df["finished_t"].notna(), "task"]))
    victim_name = pool.kills[0]["worker"] if pool.kills else victim
    if progress is not None:
        progress(len(pool.finished), len(work))
    return KillResult(ack, prefetch, victim_name, killed_at, summary, df, lost)


def fate_table(result: KillResult) -> pd.DataFrame:
    """Every task the killed worker had received, and what became of it."""
    df = result.deliveries
    held = df[df["worker"] == result.victim]
    rows = []
    for r in held.itertuples():
        at_victim = {"acked": "done", "finished": "done", "cut": "cut off mid-task",
                     "queued": "waiting in its buffer"}.get(r.outcome, r.outcome)
        later = df[(df["task"] == r.task) & (df["delivered_t"] > r.delivered_t)]
        if at_victim == "done":
            then = "-"
        elif len(later):
            again = later.iloc[0]
            then = f"redelivered to {again['worker']} (redelivered={bool(again['redelivered'])})"
        else:
            then = "LOST"
        rows.append({"task": str(r.task).lstrip("t0"), f"at {result.victim}": at_victim,
                     "then": then})
    return pd.DataFrame(rows)


def kill_table(results: dict) -> pd.DataFrame:
    """One row per run: tasks published, completed, lost, redelivered."""
    rows = []
    for label, r in results.items():
        s = r.summary
        rows.append({"run": label, "killed": r.victim if r.killed_at_s is not None else "-",
                     "published": s["tasks_published"], "completed": s["tasks_completed"],
                     "lost": s["tasks_lost"], "redeliveries": s["redeliveries"],
                     "duplicates": s["duplicates"], "makespan_s": round(s["makespan_s"], 2)})
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
    return KillPanel("Kill a worker mid-task", kill_run, kill_report, {
        "workers": int_slider("workers", 3, 2, 6),
        "tasks": int_slider("tasks", 12, 1, 40),
        "duration": float_slider("seconds per task", 0.5, 0.1, 3.0, 0.1),
        "ack": dropdown("acknowledgements", [("manual ack", "manual"), ("auto_ack", "auto")],
                        "manual"),
        "prefetch": int_slider("prefetch (0 = no limit)", 1, 0, 10),
        "kill_after_s": float_slider("kill after s (0 = by hand)", 0.75, 0.0, 5.0, 0.05),
        "victim": dropdown("worker to kill", ["w1", "w2", "w3"], "w1")},
        fixed={"broker": broker})
