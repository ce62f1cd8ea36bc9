"""Worker events -> one row per delivery (a pandas DataFrame), and the run's metrics.

Definitions (used by the CLI, the notebooks and the benchmarks alike):

* makespan: first publish to last completion.
* ideal makespan: ``max(sum(durations) / workers, max(durations))``, a lower bound
  (with unequal speeds: total work over total speed, or the longest task on the fastest).
* throughput: completed tasks / makespan (tasks per second).
* greedy floor: makespan / ideal of dealing whole tasks in queue order, each to the worker
  free first (prefetch 1 with nothing else costing): what no dispatcher of that order beats.
* efficiency: ideal / makespan; imbalance: max busy / mean busy;
  Jain's index: ``(sum busy)^2 / (n * sum busy^2)`` (1 = perfectly even).
* a ratio that cannot be computed (tasks of no length: no ideal; nothing completed: no
  makespan; nobody busy) is None in the summary, ``null`` in JSON, and a sentence in
  ``table`` (``helpers.measure.figures``), never ``nan``.
* lost: published and confirmed but never completed; duplicates: completions beyond the
  first for a task; redeliveries: deliveries flagged ``redelivered``.
"""
from __future__ import annotations

import heapq
import time
from pathlib import Path

import pandas as pd

from helpers import settings
from helpers.measure import figures

_COLUMNS = ["delivery", "worker", "task", "redelivered", "delivered_t", "started_t",
            "finished_t", "acked_t", "outcome"]
_STAMPS = {"delivered": "delivered_t", "started": "started_t", "finished": "finished_t",
           "acked": "acked_t"}


def deliveries(events: list[dict], t0: float | None = None,
               durations: dict | float | None = None) -> pd.DataFrame:
    """One row per delivery: worker, task, the four timestamps, redelivered, outcome.

    Times are wall-clock seconds; when ``t0`` is given, columns ``start_s``/``end_s`` are
    added relative to it (for plots). ``durations`` (task id -> nominal seconds, or one
    number for all) adds a ``duration`` column, which the timeline colours by.
    ``outcome`` is ``acked``, ``finished`` (work done, no ack seen), ``cut`` (started, never
    finished: its worker died), ``queued`` (held by the worker, never started), ``failed``
    or ``rejected`` (dead-lettered by the worker's guard).
    """
    rows: dict[str, dict] = {}
    for ev in events:
        key = ev.get("delivery")
        if key is None:
            continue
        row = rows.get(key)
        if row is None:
            row = rows[key] = {"delivery": key, "worker": ev["worker"], "task": ev.get("task"),
                               "redelivered": False}
        name = ev["event"]
        stamp = _STAMPS.get(name)
        if stamp is not None:
            row[stamp] = ev["t"]
        if name == "delivered":
            row["redelivered"] = bool(ev.get("redelivered"))
        elif name == "failed":
            row["failed"] = ev.get("reason", "")
        elif name in ("crashed", "abandoned", "rejected", "handed-back"):
            row[name] = True
    # The outcome from the plain rows, before pandas: 100,000 rows through
    # DataFrame.to_dict took 1.8 s of the 3.1 s this function took (cProfile).
    for row in rows.values():
        row["outcome"] = _outcome(row)
    df = pd.DataFrame(list(rows.values()))
    for col in _COLUMNS:
        if col not in df:
            df[col] = pd.Series(dtype="float64" if col.endswith("_t") else "object")
    df = df[_COLUMNS].sort_values("delivered_t", kind="stable").reset_index(drop=True)
    if t0 is not None:
        df["start_s"] = df["started_t"] - t0
        df["end_s"] = df["finished_t"] - t0
    if isinstance(durations, dict):
        df["duration"] = df["task"].map(pd.Series(durations, dtype=float))
    elif durations is not None:
        df["duration"] = float(durations)
    return df


def _outcome(row: dict) -> str:
    """A delivery's outcome from its row of events (missing stamps are absent or None)."""
    if row.get("rejected") is True:  # dead-lettered by the worker's guard, never run
        return "rejected"
    if row.get("handed-back") is True:  # reserve mode: back to the queue, never started
        return "handed back"
    if row.get("acked_t") is not None and not (row.get("started_t") is not None
                                               and row.get("finished_t") is None):
        return "acked"  # (acked as it started, and never finished: cut, below; Celery's default)
    if row.get("finished_t") is not None:
        return "finished"
    if isinstance(row.get("failed"), str) and row["failed"].startswith("malformed"):
        return "failed"
    if row.get("started_t") is not None:
        return "cut"
    return "queued"


def per_worker(df: pd.DataFrame, workers: list[str], makespan_s: float) -> pd.DataFrame:
    """Tasks completed, busy and idle seconds for each worker (workers with none included)."""
    done = df[df["finished_t"].notna()]
    busy = (done["finished_t"] - done["started_t"]).groupby(done["worker"]).sum()
    count = done.groupby("worker").size()
    names = list(dict.fromkeys(list(workers) + sorted(df["worker"].dropna().unique())))
    out = pd.DataFrame({"worker": names})
    out["tasks"] = [int(count.get(w, 0)) for w in names]
    out["busy_s"] = [float(busy.get(w, 0.0)) for w in names]
    out["idle_s"] = (makespan_s - out["busy_s"]).clip(lower=0)
    return out


def jain(values) -> float:
    """Jain's fairness index of ``values`` (1.0 when all equal, 1/n when one does all)."""
    values = [float(v) for v in values]
    square_sum = sum(v * v for v in values)
    if not values or square_sum == 0:
        return float("nan")
    return sum(values) ** 2 / (len(values) * square_sum)


def ideal_makespan(durations, workers: int, speeds=None) -> float:
    """Lower bound on the makespan: total work over total speed, or the longest task."""
    durations = list(durations)
    speeds = list(speeds) if speeds else [1.0] * workers
    if not durations:
        return 0.0
    return max(sum(durations) / sum(speeds), max(durations) / max(speeds))


def greedy_floor(durations: list[float], workers: int, gap_s: float = 0.0,
                 first_s: float = 0.0) -> float:
    """Makespan / ideal of dispatching ``durations`` in queue order, each to the worker free
    first (what prefetch 1 does), when every worker starts ``first_s`` after the first
    publish and waits ``gap_s`` between tasks, and nothing else costs: the floor those two
    costs leave (with both 0, the floor of whole tasks alone)."""
    ideal = max(sum(durations) / workers, max(durations, default=0.0))
    if ideal <= 0:
        return float("nan")
    free = [first_s] * workers
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration + gap_s)
    return max(free) / ideal


def summarize(events: list[dict], published_ids, confirmed_ids, durations: dict,
              workers: list[str], t_publish: float, speeds=None,
              frame: pd.DataFrame | None = None, **extra) -> dict:
    """The run's metrics as one JSON-ready dict (the ``run --json`` contract keys included).

    Parameters
    ----------
    durations: task id -> nominal seconds of work.
    workers: names of the workers that were running when the tasks were published.
    t_publish: wall-clock time of the first publish (start of the makespan).
    frame: ``deliveries(events)`` when the caller has built it already (a big run's
        events make it twice otherwise, and both copies at once in memory).
    """
    df = deliveries(events) if frame is None else frame
    completions = df[df["finished_t"].notna()].groupby("task").size()
    completed = set(completions.index) & set(published_ids)
    confirmed = set(confirmed_ids)
    last = df["finished_t"].max()
    makespan = float(last - t_publish) if pd.notna(last) else None  # None: nothing completed
    ideal = ideal_makespan(durations.values(), len(workers), speeds)
    pw = per_worker(df, workers, makespan if makespan is not None else float("nan"))
    busy = pw["busy_s"]
    mean_busy = busy.mean() if len(busy) else 0.0
    timed = makespan is not None and makespan > 0
    summary = {
        "workers": len(workers),
        "tasks_published": len(set(published_ids)),
        "tasks_confirmed": len(confirmed),
        "tasks_completed": len(completed),
        "tasks_lost": len(confirmed - completed),
        "duplicates": int((completions - 1).clip(lower=0).sum()),
        "redeliveries": int(df["redelivered"].astype(bool).sum()),
        "makespan_s": round(makespan, 4) if makespan is not None else None,
        "ideal_makespan_s": round(ideal, 4),
        # None where a ratio cannot be computed (helpers.measure.figures says why)
        "efficiency": round(ideal / makespan, 4) if timed and ideal > 0 else None,
        "makespan_over_ideal": round(makespan / ideal, 4) if timed and ideal > 0 else None,
        "throughput_tps": round(len(completed) / makespan, 2) if timed else None,
        "imbalance": round(float(busy.max() / mean_busy), 4) if mean_busy > 0 else None,
        "jain": figures.number(round(jain(busy), 4)),
        "per_worker": [{"worker": r.worker, "tasks": int(r.tasks), "busy_s": round(r.busy_s, 4),
                        "idle_s": round(r.idle_s, 4)} for r in pw.itertuples()],
    }
    summary.update(extra)
    return summary


def save_run(summary: dict, df: pd.DataFrame, label: str = "run",
             runs_dir: Path | None = None) -> Path:
    """Write ``deliveries.csv`` and ``summary.json`` under ``data/runs/<time>-<label>/``."""
    runs_dir = Path(runs_dir or settings.RUNS_DIR)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = runs_dir / f"{stamp}-{label}"
    n = 1
    while folder.exists():
        n += 1
        folder = runs_dir / f"{stamp}-{label}-{n}"
    folder.mkdir(parents=True)
    df.to_csv(folder / "deliveries.csv", index=False)
    (folder / "summary.json").write_text(figures.dumps(summary, indent=2))
    return folder


def table(summary: dict) -> str:
    """The short text table the CLI prints: one line per worker, then the totals (a figure
    that cannot be computed is a clause saying why, never ``nan``)."""
    def cell(value) -> str:
        return f"{value:>8.3f}" if figures.defined(value) else f"{'-':>8}"

    lines = [f"{'worker':<8} {'tasks':>6} {'busy_s':>8} {'idle_s':>8}"]
    for row in summary["per_worker"]:
        lines.append(f"{row['worker']:<8} {row['tasks']:>6} {cell(row['busy_s'])} "
                     f"{cell(row['idle_s'])}")
    s = summary
    lines.append(", ".join(figures.text(s, key, fmt) for key, fmt in (
        ("makespan_s", ".3f"), ("ideal_makespan_s", ".3f"), ("makespan_over_ideal", ".3f"),
        ("imbalance", ".2f"), ("jain", ".3f"))))
    lines.append(
        f"published {s['tasks_published']}, completed {s['tasks_completed']}, "
        f"lost {s['tasks_lost']}, duplicates {s['duplicates']}, "
        f"redeliveries {s['redeliveries']}, {figures.text(s, 'spawn_s', '.2f')}")
    return "\n".join(lines)
