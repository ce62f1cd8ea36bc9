"""Notebook 04, fair dispatch: round robin against a prefetch limit on odd-heavy tasks.

Three experiments, each one or more runs of the run skeleton (``helpers.experiment.skeleton``): prefetch
0 against a limit, a sweep over prefetch values, and workers of unequal speed; each has a
table, a figure and a panel. The backlog (tasks arriving faster than the workers take
them) is the notebook's last section, in ``helpers.lessons.backlog``.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from helpers.measure import figures, plots
from helpers.checks import validate
from helpers.experiment import skeleton as runner
from helpers.experiment.value import Experiment
from helpers.worker.config import WorkerConfig
from helpers.core import tasks as task_lists
from helpers.errors import BadInputError
from helpers.lessons.common import Declared, chain_progress, finish, prefetch_name
from helpers.settings import DEFAULT_QUEUE_KIND
from helpers.lessons.panels import Panel, declared_run, float_slider, int_slider, queue_type, text


@dataclass(frozen=True)
class OddHeavy(Declared):
    """``workers`` share ``tasks`` tasks, the odd ones ``heavy`` s, the even ones ``light``."""

    workers: int = 2
    tasks: int = 20
    heavy: float = 0.2
    light: float = 0.02
    queue_type: str = DEFAULT_QUEUE_KIND


@dataclass(frozen=True)
class Speeds(Declared):
    """Workers of ``speeds`` (``"1, 3"``: one 3x as fast), tasks of ``duration`` s at 1x."""

    speeds: str = "1, 3"
    tasks: int = 20
    duration: float = 0.2
    queue_type: str = DEFAULT_QUEUE_KIND


#: Notebook 04's odd-heavy runs (the prefetch ``COMPARED`` with 0, the sweep) and its speeds
#: runs, and their panels' defaults.
FAIR, SPEEDS, COMPARED = OddHeavy(), Speeds(), 1


def compare_prefetch(plan: OddHeavy = FAIR, prefetch: int = COMPARED, *, broker=None,
                     progress=None) -> dict:
    """Round robin (prefetch 0) against ``prefetch`` on odd-heavy tasks: two runs."""
    workers, tasks, queue_type = plan.workers, plan.tasks, plan.queue_type
    work = task_lists.odd_heavy(tasks, plan.heavy, plan.light)
    validate(workers, prefetch, work)  # before the first run, not after it
    out = {}
    for n, p in enumerate((0, prefetch)):
        exp = Experiment(workers, work, WorkerConfig(prefetch=p), save=False, label=f"fair-p{p}",
                         queue_type=queue_type)
        out[f"prefetch {prefetch_name(p)}"] = runner.run(
            exp, broker=broker, progress=chain_progress(progress, n * tasks, 2 * tasks))
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


def compare_note(results: dict) -> str:
    """One line per run: its makespan as a multiple of the ideal."""
    return "\n".join(f"{label}: {figures.text(r.summary, 'makespan_s', '.2f')}, "
                     f"{times_ideal(r.summary)}" for label, r in results.items())


def times_ideal(s: dict) -> str:
    """``1.03x the ideal 2.20 s``; or why there is no such ratio (tasks of no length)."""
    if figures.defined(s["makespan_over_ideal"]):
        return f"{s['makespan_over_ideal']:.2f}x the ideal {s['ideal_makespan_s']:.2f} s"
    return figures.text(s, "makespan_over_ideal")


def limit_beats_round_robin(results: dict) -> bool:
    """True when the run with a prefetch limit ended sooner than round robin (prefetch 0)."""
    rr = results["prefetch unlimited"].summary["makespan_s"]
    return all(r.summary["makespan_s"] < rr for label, r in results.items()
               if label != "prefetch unlimited")


def plot_compare(results: dict):
    """Timelines on one time axis, with the busy seconds of each worker beside them, and a
    legend for the colours of heavy and light tasks."""
    fig = plots.compare_runs(results)
    first = next(iter(results.values())).deliveries
    fig = finish(fig)  # lays it out; the legend then takes a band above the panels
    plots.task_legend(fig, first["duration"] if "duration" in first else [])
    return fig


def fair_dispatch_report(results: dict) -> list:
    """What the Run button of the first panel of notebook 04 shows."""
    return [plot_compare(results), dispatch_table(results)]


def prefetch_sweep(plan: OddHeavy = FAIR, prefetches=(1, 2, 5, 10, 0), *, broker=None,
                   progress=None) -> pd.DataFrame:
    """One run per prefetch value on the same workload; one row of metrics per run."""
    workers, tasks, queue_type = plan.workers, plan.tasks, plan.queue_type
    work = task_lists.odd_heavy(tasks, plan.heavy, plan.light)
    rows = []
    for n, p in enumerate(prefetches):
        exp = Experiment(workers, work, WorkerConfig(prefetch=p), save=False, label=f"sweep-p{p}",
                         queue_type=queue_type)
        result = runner.run(exp, broker=broker,
                            progress=chain_progress(progress, n * tasks,
                                                    len(prefetches) * tasks))
        s = result.summary
        rows.append({"prefetch": prefetch_name(p), "makespan_s": s["makespan_s"],
                     "ideal_s": s["ideal_makespan_s"], "efficiency": s["efficiency"],
                     "imbalance": s["imbalance"], "jain": s["jain"]})
    sweep = pd.DataFrame(rows)
    sweep.attrs.update(workers=workers, tasks=tasks)
    return sweep


def share_note(sweep: pd.DataFrame) -> str:
    """Each worker's round-robin share (N/K tasks) in the sweep's runs, in one line."""
    n, k = sweep.attrs["tasks"], sweep.attrs["workers"]
    return (f"round-robin share: N/K = {n}/{k} = {n / k:g} tasks per worker; "
            f"prefetch values swept: {', '.join(sweep['prefetch'])}")


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


def unequal_speeds(plan: Speeds = SPEEDS, prefetches=(0, 1), *, broker=None,
                   progress=None) -> dict:
    """Workers of different speeds (2 = twice as fast), equal tasks, per prefetch value."""
    speeds, tasks, queue_type = plan.speeds, plan.tasks, plan.queue_type
    speeds = parse_speeds(speeds) if isinstance(speeds, str) else list(speeds)
    work = task_lists.equal(tasks, plan.duration)
    out = {}
    for n, p in enumerate(prefetches):
        exp = Experiment(len(speeds), work, WorkerConfig(prefetch=p), speeds=speeds, save=False,
                         label=f"speeds-p{p}", queue_type=queue_type)
        result = runner.run(exp, broker=broker,
                            progress=chain_progress(progress, n * tasks,
                                                    len(prefetches) * tasks))
        result.summary.setdefault("speeds", speeds)
        out[f"prefetch {prefetch_name(p)}"] = result
    return out


def speeds_note(results: dict) -> str:
    """The workers' speeds, and how much faster the fastest is than the slowest."""
    speeds = next(iter(results.values())).summary["speeds"]
    return (f"speeds {', '.join(f'{v:g}' for v in speeds)}: the fastest worker is "
            f"{max(speeds) / min(speeds):g}x as fast as the slowest")


def compare_answer(results: dict) -> str:
    """The first prediction's answer: tasks and busy seconds per worker, per run."""
    said = []
    for label, result in results.items():
        per = result.summary["per_worker"]
        busy = [w["busy_s"] for w in per]
        ratio = max(busy) / min(busy) if min(busy) > 0 else float("inf")
        said.append(f"{label}: {' and '.join(str(w['tasks']) for w in per)} tasks, "
                    f"{' and '.join(f'{b:.2f}' for b in busy)} busy seconds "
                    f"(the busiest {ratio:.1f}x the least busy), makespan "
                    f"{result.summary['makespan_s']:.2f} s")
    return "\n".join(said)


def sweep_answer(sweep: pd.DataFrame, within: float = 0.1) -> str:
    """The sweep's answer: which prefetch values came within ``within`` of round robin's
    makespan, and which was shortest."""
    by_p = sweep.set_index("prefetch")["makespan_s"]
    rr = by_p.get("unlimited")
    near = [p for p in by_p.index if p != "unlimited" and rr and by_p[p] >= (1 - within) * rr]
    best = by_p.idxmin()
    return (f"round robin (unlimited) took {rr:.2f} s; within {within:.0%} of it: "
            f"prefetch {', '.join(near) or 'none'}; the shortest makespan: prefetch {best}, "
            f"{by_p[best]:.2f} s")


def speeds_answer(results: dict) -> str:
    """The speeds' answer: the fastest worker's share of the tasks in each run."""
    said = []
    for label, result in results.items():
        s = result.summary
        speeds = s.get("speeds") or []
        fast = max(range(len(speeds)), key=speeds.__getitem__)
        done = s["per_worker"][fast]["tasks"]
        said.append(f"{label}: the fastest worker (speed {speeds[fast]:g}) did {done} of "
                    f"{s['tasks_completed']} tasks ({done / s['tasks_completed']:.0%})")
    return "\n".join(said)


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


# -- panels ------------------------------------------------------------------------------

def _odd_heavy_controls() -> dict:
    return {"workers": int_slider("workers", FAIR.workers, 1, 8),
            "tasks": int_slider("tasks (odd heavy, even light)", FAIR.tasks, 2, 100),
            "heavy": float_slider("heavy task, s", FAIR.heavy, 0.02, 2.0, 0.02),
            "light": float_slider("light task, s", FAIR.light, 0.0, 1.0, 0.01),
            "queue_type": queue_type(FAIR.queue_type)}


def fair_dispatch_panel(broker=None) -> Panel:
    """Notebook 04: round robin against a prefetch limit."""
    controls = _odd_heavy_controls()
    controls["prefetch"] = int_slider("prefetch to compare", COMPARED, 1, 20)
    return Panel("Round robin (prefetch 0) against a prefetch limit",
                 declared_run(compare_prefetch, FAIR), fair_dispatch_report, controls,
                 fixed={"broker": broker})


def sweep_panel(broker=None) -> Panel:
    """Notebook 04: makespan and imbalance for prefetch 1, 2, 5, 10 and unlimited."""
    return Panel("Prefetch sweep: 1, 2, 5, 10, unlimited", declared_run(prefetch_sweep, FAIR),
                 sweep_report, _odd_heavy_controls(), fixed={"broker": broker})


def speeds_panel(broker=None) -> Panel:
    """Notebook 04: workers of unequal speed."""
    return Panel("Workers of unequal speed", declared_run(unequal_speeds, SPEEDS),
                 speeds_report, {
                     "speeds": text("speed of each worker", SPEEDS.speeds),
                     "tasks": int_slider("tasks (all equal)", SPEEDS.tasks, 1, 100),
                     "duration": float_slider("seconds per task at speed 1", SPEEDS.duration,
                                              0.02, 2.0, 0.02),
                     "queue_type": queue_type(SPEEDS.queue_type)},
                 fixed={"broker": broker})
