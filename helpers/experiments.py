"""Dispatch experiments of notebooks 01 (round robin) and 04 (fair dispatch).

Each function runs real workers through ``runner.run`` (or, for the backlog, a pool fed at a
steady rate) and returns results; the ``plot_*`` and ``*_table`` functions turn results
into one figure or one small table, for the notebook cells and for the widget panels of
``helpers.widgets`` alike. Nothing here imports the notebooks.
"""
from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from . import broker as broker_mod
from . import plots, producer, runner, tasks as task_lists, timing, topology
from .errors import BadInputError
from .monitor import QueueMonitor
from .pool import WorkerPool


class Text(str):
    """A string that notebooks and widget outputs show as plain text, without quotes."""

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(str(self))}</pre>"


def finish(fig):
    """Lay out ``fig`` and detach it from pyplot, so it is shown once, where it is displayed."""
    fig.tight_layout()
    plt.close(fig)
    return fig


def prefetch_name(prefetch: int) -> str:
    """``0`` is RabbitMQ's "no limit"; say so."""
    return "unlimited" if prefetch == 0 else str(prefetch)


def chain_progress(progress, offset: int, grand_total: int):
    """A ``progress(done, total)`` for one run out of several, counting towards the total."""
    if progress is None:
        return None
    return lambda done, _total: progress(offset + done, grand_total)


@contextlib.contextmanager
def scratch_queue(found: broker_mod.Broker, label: str, **spec_options):
    """Declare a fresh, uniquely named queue; delete it afterwards (even after an error)."""
    spec = topology.QueueSpec(f"wq-{label}-{uuid.uuid4().hex[:8]}", **spec_options)
    with broker_mod.connect(found.url, name=f"declare {spec.name}") as conn:
        topology.declare(conn.channel(), spec)
    try:
        yield spec
    finally:
        topology.discard(found.url, spec)


# -- 01 round robin ----------------------------------------------------------------------

def round_robin(workers: int = 3, tasks: int = 12, duration: float = 0.3, *,
                broker=None, progress=None) -> runner.RunResult:
    """Notebook 01: ``workers`` consumers with no prefetch limit, ``tasks`` equal tasks."""
    work = task_lists.equal(tasks, duration)
    return runner.run(workers, 0, work, broker=broker, progress=progress, save=False,
                      label="round-robin")


def first_deliveries(result: runner.RunResult) -> pd.DataFrame:
    """One row per task, in publish order: its number ``i`` and the worker it went to first."""
    df = result.deliveries.sort_values("delivered_t").drop_duplicates("task")
    df = df.sort_values("task").reset_index(drop=True)
    df["i"] = range(1, len(df) + 1)
    return df[["i", "task", "worker"]]


def sequence(result: runner.RunResult, limit: int = 24) -> str:
    """``1→w2  2→w3  3→w1 ...``: the worker each task went to, in publish order."""
    rows = first_deliveries(result)
    text = "  ".join(f"{r.i}→{r.worker}" for r in rows.head(limit).itertuples())
    return text + ("  ..." if len(rows) > limit else "")


def deal_table(result: runner.RunResult) -> pd.DataFrame:
    """Tasks as dealt: one row per round of K tasks, one column per worker."""
    rows = first_deliveries(result)
    k = result.summary["workers"]
    rows["round"] = (rows["i"] - 1) // k + 1
    table = rows.pivot_table(index="round", columns="worker", values="i",
                             aggfunc=lambda s: ", ".join(map(str, s)))
    ordered = sorted(table.columns, key=lambda w: (len(w), w))
    return table[ordered].fillna("").rename_axis(columns=None)


def is_round_robin(result: runner.RunResult) -> bool:
    """True when task ``i`` and task ``i + K`` always went to the same worker."""
    workers = list(first_deliveries(result)["worker"])
    k = result.summary["workers"]
    return all(workers[i] == workers[i - k] for i in range(k, len(workers)))


def counts_table(result: runner.RunResult) -> pd.DataFrame:
    """Tasks per worker against the round-robin share ``N/K``."""
    pw = result.per_worker()[["worker", "tasks", "busy_s"]].copy()
    n, k = result.summary["tasks_published"], result.summary["workers"]
    pw["N/K"] = round(n / k, 2)
    pw["busy_s"] = pw["busy_s"].round(2)
    return pw.set_index("worker")


def plot_round_robin(result: runner.RunResult):
    """Timeline of the run beside the number of tasks each worker did."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.2),
                                      gridspec_kw={"width_ratios": [2.4, 1]})
    s = result.summary
    plots.timeline(result.deliveries, ax=left,
                   title=f"{s['workers']} workers, {s['tasks_published']} equal tasks, "
                         "no prefetch limit")
    left.set_xlim(left=0)
    plots.counts(result.per_worker(), ax=right)
    right.axhline(s["tasks_published"] / s["workers"], color="black", linestyle="--",
                  linewidth=0.8, label="N/K")
    right.margins(y=0.15)
    right.legend(fontsize=8, loc="lower right")
    return finish(fig)


def round_robin_report(result: runner.RunResult) -> list:
    """What the Run button of notebook 01 shows."""
    return [plot_round_robin(result), Text(sequence(result)), counts_table(result)]


# -- 04 fair dispatch --------------------------------------------------------------------

def compare_prefetch(workers: int = 2, tasks: int = 20, heavy: float = 0.2,
                     light: float = 0.02, prefetch: int = 1, *, broker=None,
                     progress=None) -> dict:
    """Round robin (prefetch 0) against ``prefetch`` on odd-heavy tasks: two runs."""
    work = task_lists.odd_heavy(tasks, heavy, light)
    runner.validate(workers, prefetch, work)  # before the first run, not after it
    out = {}
    for n, p in enumerate((0, prefetch)):
        out[f"prefetch {prefetch_name(p)}"] = runner.run(
            workers, p, work, broker=broker, save=False, label=f"fair-p{p}",
            progress=chain_progress(progress, n * tasks, 2 * tasks))
    return out


def dispatch_table(results: dict) -> pd.DataFrame:
    """Makespan, ideal, efficiency and busy seconds per worker, one row per run."""
    rows = []
    for label, result in results.items():
        s = result.summary
        row = {"run": label, "makespan_s": s["makespan_s"], "ideal_s": s["ideal_makespan_s"],
               "efficiency": s["efficiency"], "imbalance": s["imbalance"]}
        for w in s["per_worker"]:
            row[f"{w['worker']} busy_s"] = round(w["busy_s"], 2)
            row[f"{w['worker']} tasks"] = w["tasks"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("run").round(3)


def plot_compare(results: dict):
    """Timelines on one time axis, with the busy seconds of each worker beside them."""
    return finish(plots.compare_runs(results))


def fair_dispatch_report(results: dict) -> list:
    """What the Run button of the first panel of notebook 04 shows."""
    return [plot_compare(results), dispatch_table(results)]


def prefetch_sweep(workers: int = 2, tasks: int = 20, heavy: float = 0.2, light: float = 0.02,
                   prefetches=(1, 2, 5, 10, 0), *, broker=None, progress=None) -> pd.DataFrame:
    """One run per prefetch value on the same workload; one row of metrics per run."""
    work = task_lists.odd_heavy(tasks, heavy, light)
    rows = []
    for n, p in enumerate(prefetches):
        result = runner.run(workers, p, work, broker=broker, save=False, label=f"sweep-p{p}",
                            progress=chain_progress(progress, n * tasks,
                                                    len(prefetches) * tasks))
        s = result.summary
        rows.append({"prefetch": prefetch_name(p), "makespan_s": s["makespan_s"],
                     "ideal_s": s["ideal_makespan_s"], "efficiency": s["efficiency"],
                     "imbalance": s["imbalance"], "jain": s["jain"]})
    return pd.DataFrame(rows)


def plot_sweep(sweep: pd.DataFrame):
    """Makespan (against the ideal) and imbalance for each prefetch value."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
    plots.sweep(sweep, "prefetch", ["makespan_s", "ideal_s"], ax=left,
                title="Makespan against prefetch", xlabel="prefetch_count")
    left.set_ylabel("seconds")
    left.set_ylim(bottom=0)
    plots.sweep(sweep, "prefetch", ["imbalance"], ax=right,
                title="Imbalance (max busy / mean busy)", xlabel="prefetch_count")
    right.axhline(1, color="black", linestyle=":", linewidth=0.8)
    right.set_ylim(bottom=0.9)
    return finish(fig)


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The sweep's numbers, one row per prefetch value."""
    return sweep.set_index("prefetch").round(3)


def sweep_report(sweep: pd.DataFrame) -> list:
    """What the sweep panel of notebook 04 shows."""
    return [plot_sweep(sweep), sweep_table(sweep)]


def parse_speeds(text: str) -> list[float]:
    """``"1, 3"`` -> ``[1.0, 3.0]``; one sentence when the text is not a list of speeds."""
    try:
        speeds = [float(piece) for piece in str(text).replace(";", ",").split(",")
                  if piece.strip()]
    except ValueError:
        raise BadInputError(f"speeds must be numbers separated by commas, like '1, 3' "
                            f"(got {text!r}).") from None
    if not speeds or any(s <= 0 for s in speeds):
        raise BadInputError(f"speeds needs at least one number above 0, like '1, 3' "
                            f"(got {text!r}).")
    return speeds


def unequal_speeds(speeds="1, 3", tasks: int = 20, duration: float = 0.2,
                   prefetches=(0, 1), *, broker=None, progress=None) -> dict:
    """Workers of different speeds (2 = twice as fast), equal tasks, per prefetch value."""
    speeds = parse_speeds(speeds) if isinstance(speeds, str) else list(speeds)
    work = task_lists.equal(tasks, duration)
    out = {}
    for n, p in enumerate(prefetches):
        result = runner.run(len(speeds), p, work, speeds=speeds, broker=broker, save=False,
                            label=f"speeds-p{p}",
                            progress=chain_progress(progress, n * tasks,
                                                    len(prefetches) * tasks))
        result.summary.setdefault("speeds", speeds)
        out[f"prefetch {prefetch_name(p)}"] = result
    return out


def speeds_table(results: dict) -> pd.DataFrame:
    """Tasks each worker did (its speed in the column name), makespan and efficiency."""
    rows = []
    for label, result in results.items():
        s = result.summary
        row = {"run": label}
        for w, speed in zip(s["per_worker"], s.get("speeds") or []):
            row[f"{w['worker']} (speed {speed:g}) tasks"] = w["tasks"]
        row.update(makespan_s=s["makespan_s"], ideal_s=s["ideal_makespan_s"],
                   efficiency=s["efficiency"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("run").round(3)


def speeds_report(results: dict) -> list:
    """What the speeds panel of notebook 04 shows."""
    return [plot_compare(results), speeds_table(results)]


class ReadySampler:
    """Samples ``messages_ready`` exactly and often, by passive declares over AMQP.

    The management API (``QueueMonitor``) refreshes once a second at best and trails the
    queue; a passive ``queue.declare`` answers with the count at that instant.
    """

    def __init__(self, found: broker_mod.Broker, queue: str, interval: float = 0.1):
        self.found, self.queue, self.interval = found, queue, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ready-sampler", daemon=True)

    def _loop(self) -> None:
        with broker_mod.connect(self.found.url, name=f"sampler {self.queue}") as conn:
            channel = conn.channel()
            while not self._stop.is_set():
                self.samples.append((time.time(), topology.message_count(channel, self.queue)))
                self._stop.wait(self.interval)

    def start(self) -> "ReadySampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def frame(self, t0: float) -> pd.DataFrame:
        """Samples as ``t_s`` (seconds since ``t0``) and ``ready``."""
        df = pd.DataFrame(self.samples, columns=["t", "ready"])
        df["t_s"] = df["t"] - t0
        return df


@dataclass
class BacklogResult:
    """Queue depth while tasks arrive faster than the workers can take them."""

    samples: pd.DataFrame
    ready: pd.DataFrame
    deliveries: pd.DataFrame
    summary: dict


def _publish_paced(url: str, spec, work, rate: float, t0: float, stop: threading.Event,
                   sent: list) -> None:
    """Publish one task every ``1 / rate`` seconds from ``t0`` (confirmed, one by one)."""
    for i, task in enumerate(work):
        if stop.wait(max(0.0, t0 + i / rate - time.time())):
            return
        result = producer.publish(url, spec, [task], declare_queue=False, timeout=30,
                                  name=f"producer {spec.name}")
        sent.extend(result.confirmed)


def backlog(workers: int = 2, add_workers: int = 4, rate: float = 8.0, seconds: float = 5.0,
            duration: float = 0.5, add_after_s: float = 2.5, *, broker=None,
            progress=None) -> BacklogResult:
    """Tasks arrive at ``rate`` per second for ``seconds``; ``add_workers`` join later.

    Workers take one task at a time (prefetch 1), so waiting tasks stay in the queue where
    ``messages_ready`` counts them. ``add_after_s`` counts from the first publish; 0 or
    ``add_workers=0`` adds nobody.
    """
    runner.validate(workers, 1, [None])
    if rate <= 0 or seconds <= 0:
        raise BadInputError(f"rate and seconds must be above 0 (got {rate}, {seconds}).")
    found = broker or broker_mod.get()
    work = task_lists.equal(max(1, round(rate * seconds)), duration)
    total = len(work)
    stop, sent = threading.Event(), []
    with scratch_queue(found, "backlog") as spec:
        pool = WorkerPool(found.url, spec, prefetch=1)
        sampler = QueueMonitor(found, spec.name, interval=0.2)
        exact = ReadySampler(found, spec.name)
        publisher = None
        try:
            pool.start(workers)
            sampler.start()
            exact.start()
            t0 = time.time() + 0.3  # a few samples of the empty queue first
            publisher = threading.Thread(target=_publish_paced, name="paced-publisher",
                                         args=(found.url, spec, work, rate, t0, stop, sent),
                                         daemon=True)
            publisher.start()
            added_at = None
            if add_workers and add_after_s > 0:
                done_early = pool.wait_for(lambda p: len(p.finished) >= total,
                                           max(0.0, t0 + add_after_s - time.time()))
                if not done_early:
                    joined = pool.add(add_workers)
                    added_at = min(h.ready_t for h in joined) - t0  # consuming from here
            budget = seconds + total * duration / workers + 30
            pool.wait_for(lambda p: len(p.finished) >= total, budget,
                          progress=lambda p: progress and progress(len(p.finished), total))
            deadline = time.monotonic() + 3  # the management figures trail: let them settle
            while time.monotonic() < deadline and not (
                    sampler.samples and sampler.samples[-1]["messages_ready"] == 0
                    and sampler.samples[-1]["messages_unacknowledged"] == 0):
                time.sleep(0.1)
        finally:
            stop.set()
            if publisher is not None:
                publisher.join(timeout=5)
            pool.stop()
            sampler.stop()
            exact.stop()
    samples, ready = sampler.frame(t0=t0), exact.frame(t0=t0)
    df = timing.deliveries(pool.snapshot(), t0=t0, durations=duration)
    peak = ready.loc[ready["ready"].idxmax()] if len(ready) else None
    return BacklogResult(samples, ready, df, {
        "workers_before": workers, "workers_added": add_workers if added_at else 0,
        "added_at_s": round(added_at, 2) if added_at is not None else None,
        "arrivals_per_s": rate, "published": total, "confirmed": len(sent),
        "capacity_before_per_s": round(workers / duration, 2),
        "capacity_after_per_s": round((workers + (add_workers if added_at else 0))
                                      / duration, 2),
        "peak_ready": int(peak["ready"]) if peak is not None else None,
        "peak_at_s": round(float(peak["t_s"]), 2) if peak is not None else None,
        "last_task_done_s": round(float(df["end_s"].max()), 2),
        "completed": int(df["finished_t"].notna().sum())})


def plot_backlog(result: BacklogResult):
    """Tasks waiting in the queue over time, with the moment workers were added.

    The solid line is the exact count (AMQP); the dotted ones are what the management API
    reported at the time (``rabbitmqctl list_queues`` would say the same), a little late.
    """
    fig, ax = plt.subplots(figsize=(9, 3.2))
    s = result.summary
    ax.step(result.ready["t_s"], result.ready["ready"], where="post", color="#1f77b4",
            linewidth=2, label="waiting in the queue (ready)")
    mgmt = result.samples
    ax.step(mgmt["t_s"], mgmt["messages_ready"], where="post", color="#1f77b4",
            linestyle=":", label="ready, as the management API saw it")
    ax.step(mgmt["t_s"], mgmt["messages_unacknowledged"], where="post", color="#ff7f0e",
            linestyle=":", label="unacknowledged (in the workers' hands)")
    ax.set_title(f"{s['arrivals_per_s']:g} tasks/s arrive; the workers can do "
                 f"{s['capacity_before_per_s']:g}/s, then {s['capacity_after_per_s']:g}/s")
    ax.set_ylabel("messages")
    ax.legend(fontsize=8, loc="upper right")
    if s["added_at_s"] is not None:
        ax.axvline(s["added_at_s"], color="black", linestyle="--", linewidth=0.8)
        ax.annotate(f" +{s['workers_added']} workers", (s["added_at_s"], ax.get_ylim()[1]),
                    va="top", fontsize=8)
    ax.set_xlabel("seconds since the first publish")
    ax.set_xlim(left=0)
    return finish(fig)


def backlog_table(result: BacklogResult) -> pd.DataFrame:
    """The backlog run's numbers as a one-column table."""
    return pd.DataFrame({"value": pd.Series(result.summary, dtype=object)})


def backlog_report(result: BacklogResult) -> list:
    """What the backlog panel of notebook 04 shows."""
    return [plot_backlog(result), backlog_table(result)]
