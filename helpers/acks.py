"""Experiments of notebook 02: kill a worker mid-task, with and without acks; forget an ack.

``kill_run`` starts real workers, publishes equal tasks and SIGKILLs one worker at a chosen
moment (or when the Kill button of ``helpers.widgets`` says so), then waits until every
task is done or provably gone. ``forgotten_ack`` runs a worker that never acks and samples
the queue through the management API, as ``rabbitmqctl list_queues`` would show it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from . import broker as broker_mod
from . import monitor, plots, producer, runner, tasks as task_lists, timing, topology
from .errors import BadInputError, HelpersError
from .experiments import Text, finish, scratch_queue
from .pool import WorkerPool

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
    with scratch_queue(found, f"kill-{ack}") as spec, \
            broker_mod.connect(found.url, name=f"watch {spec.name}") as conn:
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


# -- the forgotten ack -------------------------------------------------------------------

@dataclass
class ForgottenAckResult:
    """Queue figures over time while a worker never acks, then after it is stopped."""

    samples: pd.DataFrame
    started_s: float
    stopped_s: float
    listing: pd.DataFrame
    rabbitmqctl: str | None
    summary: dict


def _wait_sample(sampler: monitor.QueueMonitor, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sampler.samples and predicate(sampler.samples[-1]):
            return
        time.sleep(0.1)


def list_queues_ctl(found: broker_mod.Broker, queue: str) -> str | None:
    """``rabbitmqctl list_queues name messages_ready messages_unacknowledged``, our queue's
    line only; None when rabbitmqctl cannot reach this broker (it is not our node)."""
    if not hasattr(found, "rabbitmqctl"):
        return None
    try:
        proc = found.rabbitmqctl("-q", "list_queues", "name", "messages_ready",
                                 "messages_unacknowledged", timeout=30)
    except (OSError, ValueError):
        return None
    if proc.returncode != 0:
        return None
    lines = proc.stdout.splitlines()
    keep = [line for line in lines[:1] if line.startswith("name")]
    keep += [line for line in lines if line.split("\t")[0] == queue]
    return "\n".join(keep)


def forgotten_ack(backlog: int = 20, more: int = 15, rate: float = 5.0,
                  duration: float = 0.05, prefetch: int = 0, *, broker=None,
                  progress=None) -> ForgottenAckResult:
    """A backlog waits; a worker that never acks starts; more tasks arrive; it is stopped.

    Parameters
    ----------
    backlog: tasks in the queue before the worker starts.
    more: tasks published afterwards, ``rate`` per second.
    prefetch: 0 (no limit, as in the tutorial) lets the worker take everything; with a
        limit it stops receiving once that many unacked messages sit with it.
    """
    if backlog < 0 or more < 0 or backlog + more == 0 or rate <= 0:
        raise BadInputError("Give at least one task (backlog + more) and a rate above 0.")
    found = broker or broker_mod.get()
    work = task_lists.equal(backlog + more, duration)
    steps = 6

    def step(n):
        if progress is not None:
            progress(n, steps)

    with scratch_queue(found, "forgotten-ack", dead_letter=False) as spec:
        sampler = monitor.QueueMonitor(found, spec.name, interval=0.25).start()
        pool = WorkerPool(found.url, spec, prefetch=prefetch, ack="never")
        try:
            first = producer.publish(found.url, spec, work[:backlog],
                                     declare_queue=False) if backlog else None
            t0 = first.t_first if first else time.time()
            _wait_sample(sampler, lambda s: s["messages_ready"] >= backlog, 5)
            time.sleep(0.5)
            step(1)
            pool.start(1)
            started = time.time() - t0
            step(2)
            for task in work[backlog:]:
                time.sleep(1 / rate)
                producer.publish(found.url, spec, [task], declare_queue=False)
            held = len(work) if not prefetch else min(prefetch, len(work))
            _wait_sample(sampler, lambda s: s["messages_unacknowledged"] >= held, 5)
            time.sleep(0.5)
            step(3)
            listing = monitor.list_queues(found, prefix=spec.name)
            ctl = list_queues_ctl(found, spec.name)
            done = len(pool.finished)
            step(4)
        finally:
            pool.stop()
        stopped = time.time() - t0
        _wait_sample(sampler, lambda s: s["messages_unacknowledged"] == 0
                     and s["messages_ready"] == len(work), 6)
        time.sleep(0.5)
        sampler.stop()
        step(steps)
    samples = sampler.frame(t0=t0)
    peak = samples["messages_unacknowledged"].max() if len(samples) else 0
    return ForgottenAckResult(samples, started, stopped, listing, ctl, {
        "published": len(work), "prefetch": prefetch or "unlimited",
        "finished_by_the_worker": done, "acked_by_the_worker": 0,
        "peak_unacknowledged": int(peak),
        "ready_after_stop": int(samples["messages_ready"].iloc[-1]) if len(samples) else None})


def plot_forgotten_ack(result: ForgottenAckResult):
    """Ready and unacknowledged over time; when the worker started and when it was stopped."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    plots.queue_depth(result.samples, ax=ax,
                      title="A worker that never acks: its messages stay unacknowledged")
    for t, text in ((result.started_s, " worker starts"), (result.stopped_s, " worker stopped")):
        ax.axvline(t, color="black", linestyle="--", linewidth=0.8)
        ax.annotate(text, (t, ax.get_ylim()[1]), va="top", fontsize=8)
    ax.set_xlabel("seconds since the first publish (management API figures, about 1 s late)")
    ax.set_xlim(left=0)
    return finish(fig)


def forgotten_ack_report(result: ForgottenAckResult) -> list:
    """What the Run button of the forgotten-ack panel shows."""
    items = [plot_forgotten_ack(result), result.listing]
    if result.rabbitmqctl:
        items.append(Text("$ rabbitmqctl list_queues name messages_ready "
                          "messages_unacknowledged\n" + result.rabbitmqctl))
    items.append(pd.DataFrame({"value": pd.Series(result.summary, dtype=object)}))
    return items
