"""Notebook 09: the series' lessons in Celery and Dramatiq, real workers on the same broker.

Three parts, each on the one run skeleton, so every figure is the project's own: the skewed
workload (and notebook 04's odd-heavy one) under each framework's defaults and under
fair-dispatch settings (``dispatch``); a worker killed mid-task under each setting: lost or
redelivered (``kills``, through notebook 02's ``acks.kill_run``); and the table that maps
each concept of notebooks 01-08 to each framework's setting and default, read from the
installed packages, with what these runs measured (``mapping_table``).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from helpers import frameworks
from helpers.core import tasks as task_lists
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.frameworks import defaults
from helpers.frameworks.config import FrameworkConfig
from helpers.lessons import acks
from helpers.lessons.common import Declared, Skipped, chain_progress, finish, full_text
from helpers.lessons.panels import KillPanel, Panel, declared_run, dropdown, int_slider, queue_type
from helpers.lessons.skew import skewed_tasks
from helpers.measure import plots, timing
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.worker.config import WorkerConfig

PIKA = "pika workers, prefetch 1"
#: The dispatch comparison: the project's workers, then each framework as shipped and set
#: for fair dispatch (None: the project's pika workers, manual acks, prefetch 1).
DISPATCH = {PIKA: None,
            "Celery defaults": FrameworkConfig("celery"),
            "Celery acks_late, prefetch 1": FrameworkConfig("celery", prefetch=1, acks_late=True),
            "Dramatiq defaults": FrameworkConfig("dramatiq"),
            "Dramatiq prefetch 1": FrameworkConfig("dramatiq", prefetch=1)}
#: The kill comparison: who loses the task whose process is SIGKILLed.
KILLS = {PIKA: None,
         "Celery defaults": FrameworkConfig("celery"),
         "Celery acks_late": FrameworkConfig("celery", prefetch=1, acks_late=True),
         "Celery acks_late + reject_on_worker_lost": FrameworkConfig(
             "celery", prefetch=1, acks_late=True, reject_on_worker_lost=True),
         "Dramatiq defaults": FrameworkConfig("dramatiq")}
WORKLOADS = ("skewed", "odd heavy")
#: The kill comparison's run (notebook 02's, at prefetch 1), and its panel's defaults.
KILL = acks.KILL.replace(prefetch=1)


def missing() -> Skipped | None:
    """The sentence to show when Celery or Dramatiq is not installed (else None)."""
    absent = [name for name in ("celery", "dramatiq") if not frameworks.available(name)]
    if not absent:
        return None
    return Skipped(f"{' and '.join(absent)} not installed: {frameworks.INSTALL_HINT} installs "
                   "both, then run the notebook again.")


#: The skewed workload's seed: its long tasks 4, 8 and 12 are four apart, so a dealer that
#: hands 4 workers 4 tasks each at once gives all three to one worker (data/README.md).
SKEWED_SEED = 594
FOUR_APART = ("t00004", "t00008", "t00012")


def workload(name: str = "skewed") -> list:
    """``skewed``: data/workloads/skewed.csv (notebook 05's generator, 400 ms / 20 ms);
    ``odd heavy``: notebook 04's, 24 tasks of 0.2 s and 0.02 s."""
    if name == "skewed":
        return skewed_tasks(48, long_ms=400, short_ms=20, seed=SKEWED_SEED)
    return task_lists.odd_heavy(24, 0.2, 0.02)


@dataclass(frozen=True)
class Mixed(Declared):
    """``workers`` of each setup of ``DISPATCH`` on the workload named (one of ``WORKLOADS``)."""

    workers: int = 4
    workload_name: str = "skewed"
    queue_type: str = DEFAULT_QUEUE_KIND


#: Notebook 09's dispatch runs, and their panel's defaults.
MIXED = Mixed()


def dispatch(plan: Mixed = MIXED, *, broker=None, progress=None) -> dict:
    """One run per setup of ``DISPATCH`` on the same tasks: label -> ``RunResult``."""
    workers, workload_name, queue_type = plan.workers, plan.workload_name, plan.queue_type
    work = tuple(workload(workload_name))
    out = {}
    for n, (label, framework) in enumerate(DISPATCH.items()):
        exp = Experiment(workers, work, WorkerConfig(prefetch=1), queue_type=queue_type,
                         save=False, label=f"nb09-{n}", framework=framework)
        out[label] = runner.run(exp, broker=broker, progress=chain_progress(
            progress, n * len(work), len(DISPATCH) * len(work)))
    return out


def ran_on(result, tasks=FOUR_APART) -> list[str]:
    """The worker that completed each of ``tasks`` (the skewed workload's long 4, 8, 12)."""
    done = result.deliveries[result.deliveries["finished_t"].notna()]
    where = dict(zip(done["task"], done["worker"]))
    return [where.get(task, "-") for task in tasks]


def long_tasks(result) -> str:
    """``w1:4,8,12 w2:9 ...``: which long tasks (above the median) each worker completed."""
    df = result.deliveries
    done = df[df["finished_t"].notna() & (df["duration"] > df["duration"].median())]
    return " ".join(f"{w}:" + ",".join(t.lstrip("t0") for t in sorted(g["task"]))
                    for w, g in done.groupby("worker"))


def dispatch_table(results: dict) -> pd.DataFrame:
    """Per run: the prefetch its consumers asked for, makespan against the ideal, tasks each."""
    rows = []
    for label, result in results.items():
        s = result.summary
        rows.append({"run": label, "prefetch_count": s["prefetch"] or "no limit",
                     "makespan_s": s["makespan_s"], "ideal_s": s["ideal_makespan_s"],
                     "makespan/ideal": s["makespan_over_ideal"], "imbalance": s["imbalance"],
                     "tasks per worker": " ".join(str(w["tasks"]) for w in s["per_worker"]),
                     "long tasks per worker": long_tasks(result), "lost": s["tasks_lost"]})
    return pd.DataFrame(rows).set_index("run").round(3)


def floor(results: dict) -> float:
    """Prefetch 1's floor on the runs' tasks and workers (``timing.greedy_floor``)."""
    first = next(iter(results.values()))
    durations = first.deliveries.drop_duplicates("task").sort_values("task")["duration"]
    return timing.greedy_floor(list(durations), first.summary["workers"])


def ratio(results: dict, label: str) -> float:
    """Makespan / ideal of one run."""
    return results[label].summary["makespan_over_ideal"]


def dispatch_note(results: dict) -> str:
    """Each framework's defaults against its fair-dispatch setting, in numbers."""
    pairs = [("Celery defaults", "Celery acks_late, prefetch 1"),
             ("Dramatiq defaults", "Dramatiq prefetch 1")]
    lines = [f"{PIKA}: makespan {ratio(results, PIKA):.2f}x the ideal"]
    for default, fair in pairs:
        lines.append(f"{default}: {ratio(results, default):.2f}x; {fair}: "
                     f"{ratio(results, fair):.2f}x")
    return "\n".join(lines)


def dispatch_answer(results: dict) -> str:
    """The answer to the notebook's prediction, from this run's numbers."""
    shipped, fair = results["Celery defaults"], results["Celery acks_late, prefetch 1"]
    busiest = max(shipped.summary["per_worker"], key=lambda w: w["busy_s"])
    return (f"Celery as shipped: long tasks 4, 8, 12 ran on {', '.join(ran_on(shipped))}; "
            f"{busiest['worker']} was busy {busiest['busy_s']:.2f} s against an ideal of "
            f"{shipped.summary['ideal_makespan_s']:.2f} s: makespan "
            f"{ratio(results, 'Celery defaults'):.2f}x the ideal.\n"
            f"Celery acks_late, prefetch 1: they ran on {', '.join(ran_on(fair))}: "
            f"{ratio(results, 'Celery acks_late, prefetch 1'):.2f}x (pika workers "
            f"{ratio(results, PIKA):.2f}x; prefetch 1's floor, nothing else costing, "
            f"{floor(results):.2f}x).\n"
            f"Dramatiq as shipped: {ratio(results, 'Dramatiq defaults'):.2f}x, with prefetch 1 "
            f"{ratio(results, 'Dramatiq prefetch 1'):.2f}x.")


def plot_dispatch(results: dict):
    """The runs' timelines on one time axis, with each worker's busy seconds beside them."""
    return finish(plots.compare_runs(results))


def dispatch_report(results: dict) -> list:
    """What the dispatch panel shows."""
    return [plot_dispatch(results), dispatch_table(results)]


def kills(plan: acks.KillPlan = KILL, *, broker=None, progress=None) -> dict:
    """One kill run of ``plan`` per setup of ``KILLS``: w1's task process SIGKILLed mid-task."""
    out, tasks = {}, plan.tasks
    for n, (label, framework) in enumerate(KILLS.items()):
        out[label] = acks.kill_run(plan.replace(framework=framework), broker=broker,
                                   progress=chain_progress(progress, n * tasks,
                                                           len(KILLS) * tasks))
    return out


def fate(result: acks.KillResult) -> str:
    """What became of the task the kill cut off: ``lost``, ``redelivered`` or ``none cut``."""
    df = result.deliveries
    cut = df[(df["worker"] == result.victim) & (df["outcome"] == "cut")]
    if cut.empty:
        return "none cut"
    return "lost" if set(cut["task"]) & set(result.lost) else "redelivered"


def kill_table(results: dict) -> pd.DataFrame:
    """Notebook 02's table for each setup, and the fate of the task that was cut off."""
    table = acks.kill_table({label: r for label, r in results.items()})
    table.insert(1, "the cut task", [fate(r) for r in results.values()])
    return table


def kill_answer(results: dict) -> str:
    """The answer to the kill prediction: which setups lost the cut task, from this run."""
    lost = [label for label, r in results.items() if fate(r) == "lost"]
    kept = [label for label, r in results.items() if fate(r) == "redelivered"]
    return (f"lost: {', '.join(lost) or 'none'}\nredelivered: {', '.join(kept) or 'none'}")


def plot_kills(results: dict):
    """One timeline per setup; a dashed line where the task's process died."""
    return acks.plot_kills(results)


def mapping_table(dispatched: dict | None = None, killed: dict | None = None) -> pd.DataFrame:
    """Each concept of notebooks 01-08, the setting that governs it in each framework with
    its installed default, and what this notebook's runs measured for it."""
    celery, dramatiq, v = defaults.celery(), defaults.dramatiq(), defaults.versions()
    measured = _measured(dispatched or {}, killed or {})
    rows = [{"concept": f"{name} ({nb})", "this series (pika)": pika,
             "Celery setting": celery[key][0], f"Celery {v['celery']} default": celery[key][1],
             "Dramatiq setting": dramatiq[key][0],
             f"Dramatiq {v['dramatiq']} default": dramatiq[key][1],
             "measured here": measured.get(key, "-")}
            for key, name, nb, pika in defaults.CONCEPTS]
    return full_text(pd.DataFrame(rows).set_index("concept"))


def _measured(dispatched: dict, killed: dict) -> dict:
    out = {}
    if dispatched:
        per = {label: "/".join(str(w["tasks"]) for w in r.summary["per_worker"])
               for label, r in dispatched.items()}
        out["round_robin"] = "; ".join(f"{label}: {per[label]} tasks"
                                       for label in ("Celery defaults", "Dramatiq defaults"))
        out["prefetch"] = "; ".join(f"{label} {ratio(dispatched, label):.2f}x"
                                    for label in dispatched) + " (makespan/ideal)"
        out["prefetch"] += (f"; long tasks 4, 8, 12 on Celery defaults: "
                            f"{', '.join(ran_on(dispatched['Celery defaults']))}")
    if killed:
        out["acks"] = "; ".join(f"{label}: {fate(killed[label])}" for label in
                                ("Celery defaults", "Dramatiq defaults", PIKA))
        out["worker_lost"] = "; ".join(f"{label}: {fate(killed[label])}" for label in
                                       ("Celery acks_late",
                                        "Celery acks_late + reject_on_worker_lost"))
    return out


# -- panels ------------------------------------------------------------------------------

def dispatch_panel(broker=None) -> Panel:
    """Notebook 09: every setup of ``DISPATCH`` on one workload."""
    return Panel("Pika, Celery and Dramatiq on one workload", declared_run(dispatch, MIXED),
                 dispatch_report, {
                     "workers": int_slider("workers", MIXED.workers, 1, 8),
                     "workload_name": dropdown("workload", list(WORKLOADS), MIXED.workload_name),
                     "queue_type": queue_type(MIXED.queue_type)}, fixed={"broker": broker})


def _kill_one(plan: acks.KillPlan, setup: str, *, broker=None, progress=None,
              on_pool=None) -> acks.KillResult:
    return acks.kill_run(plan.replace(framework=KILLS[setup]), broker=broker,
                         progress=progress, on_pool=on_pool)


def kill_panel(broker=None) -> KillPanel:
    """Notebook 09: one setup of ``KILLS``, its worker killed by timer or with Kill."""
    return KillPanel("Kill a task's process", declared_run(_kill_one, KILL), acks.kill_report,
                     acks.kill_controls(KILL, {
                         "setup": dropdown("framework and settings", list(KILLS),
                                           "Celery defaults")}),
                     fixed={"broker": broker})
