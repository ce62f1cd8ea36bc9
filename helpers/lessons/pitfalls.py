"""Notebook 06: when tasks misbehave. Each pitfall measured on the broker that runs.

The experiments are the fault scenarios of ``helpers.faults`` (each also a command,
``python -m helpers fault NAME``); this module runs them for the notebook, turns their
results into small tables and one-paragraph accounts whose every number comes from the run
(``story``), and builds the panel. The figures are in ``pitfalls_plots``. A scenario that
needs node settings (consumer timeout, disk alarm) returns a ``Skipped`` sentence on a
broker named by ``AMQP_URL``.
"""
from __future__ import annotations

import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.broker import dead_letter, node_control
from helpers import faults
from helpers.experiment import skeleton as runner
from helpers.faults.consumer_timeout import TICK_MS
from helpers.core.tasks import equal
from helpers.lessons import pitfalls_plots as figures
# ``answer``: for the notebook, which asks ``pitfalls.answer(result)`` after each run
from helpers.lessons.pitfalls_answers import answer, refusal_words  # noqa: F401
from helpers.lessons.common import Skipped, Text, full_text, value_table
from helpers.lessons.panels import Panel, dropdown, float_slider, int_slider

#: the scenarios of this notebook, in its order
SCENARIOS = ("heartbeat", "consumer-timeout", "poison", "duplicate", "alarm")
#: what each run of a scenario is, above its figure (``{key}``: from the run's summary)
TITLES = {
    "blocking": "blocking: the work inside the delivery callback, as the tutorial's worker.py",
    "thread": "thread: the work in a thread, the ack through add_callback_threadsafe",
    "too-long": "too long: one task longer than the ack timeout",
    "split": "split: the same work in pieces, each shorter than the timeout",
    "longer": "longer: the task on a queue given a longer timeout",
    "classic": "classic queue: nothing counts",
    "delivery-limit": "quorum queue, delivery limit {delivery_limit}",
    "worker-guard": "quorum queue, the worker's guard ({max_attempts} attempts)"}


def _skipped(broker, what: str) -> Skipped | None:
    if node_control.can_control(broker):
        return None
    return Skipped(f"Skipped: {what} changes the broker's node settings with rabbitmqctl, "
                   "which only the private node lets us do here; unset AMQP_URL to see it.")


def scenario(name: str, workers: int | None = None, duration: float | None = None, *,
             broker=None, progress=None, **options):
    """Run fault scenario ``name`` on its defaults (or ``workers``, ``duration``)."""
    broker = broker or broker_mod.get()
    if name in ("consumer-timeout", "alarm"):
        skipped = _skipped(broker, f"the {name} scenario")
        if skipped is not None:
            return skipped
    size = faults.defaults(name)
    work = equal(size["tasks"], duration or size["duration"])
    result = faults.run_fault(name, workers or size["workers"], size["prefetch"], work,
                              broker=broker, **options)
    if progress is not None:
        progress(1, 1)
    return result


def heartbeat(heartbeat_s: int = 1, task_s: float = 4.0, *, broker=None):
    """A blocking and a heartbeat-safe worker, one long task each."""
    return scenario("heartbeat", 1, task_s, broker=broker, heartbeat_s=heartbeat_s)


def consumer_timeout(timeout_s: float = 1.0, task_s: float = 2.5, *, broker=None):
    """A task longer than the ack timeout; the task split; a longer timeout."""
    return scenario("consumer-timeout", 1, task_s, broker=broker, timeout_s=timeout_s)


def poison(workers: int = 3, limit: int = 3, max_attempts: int = 2, *, broker=None):
    """A poison task among good ones: classic queue, delivery limit, the worker's guard."""
    return scenario("poison", workers, broker=broker, limit=limit, max_attempts=max_attempts)


def duplicate(workers: int = 3, *, broker=None):
    """Workers that die between a task's side effect and its ack, with a dedup store (a
    SQLite file kept for ``duplicates_table``, named in the summary's ``store``)."""
    import tempfile
    from pathlib import Path

    store = Path(tempfile.mkdtemp(prefix="pitfalls-")) / "effects.sqlite"
    return scenario("duplicate", workers, broker=broker, store=store)


def alarm(workers: int = 2, hold_s: float = 2.5, *, broker=None):
    """A disk alarm while tasks are published."""
    return scenario("alarm", workers, broker=broker, hold_s=hold_s)


# -- tables ---------------------------------------------------------------------------------

def runs_table(result: runner.RunResult) -> pd.DataFrame:
    """Per run of a scenario: deliveries, how the broker or the network ended the consumer
    (a column per way it happened, ``figures.END_WORDS``), work done, and each ack's fate."""
    rows = []
    kinds = sorted({kind for _t, kind in figures.ends(result.events)})
    for label in result.summary.get("runs", ["run"]):
        mine = [e for e in result.events if str(e.get("worker", "")).startswith(f"{label}/")]
        fates = [d["fate"] for d in figures.deliveries_of(mine)]
        stops = [kind for _t, kind in figures.ends(mine)]
        rows.append({"run": label, "deliveries": len(fates),
                     "redelivered": sum(e["event"] == "delivered" and bool(e.get("redelivered"))
                                        for e in mine),
                     **{figures.END_WORDS[k]: stops.count(k) for k in kinds},
                     "work done": sum(e["event"] == "finished" for e in mine),
                     "acked": fates.count("acked"), "ack refused": fates.count("ack lost"),
                     "dropped unstarted": fates.count("dropped")})
    return pd.DataFrame(rows).set_index("run")


def poison_table(result: runner.RunResult) -> pd.DataFrame:
    """Per run: the poison's deliveries, workers it killed, good tasks done, where it ended."""
    s = result.summary
    waiting = s["classic_still_queued"] - s["injected"]
    where = {"classic": f"still going round (with {waiting} good tasks not yet done)",
             "delivery-limit": _ended(s["dead_lettered"], s["dead_letter_reasons"]),
             "worker-guard": _ended(s["guard_dead_lettered"], s["guard_dead_letter_reasons"])}
    rows = []
    for label in s["runs"]:
        mine = [e for e in result.events if e["worker"].startswith(f"{label}/")]
        rows.append({"run": label, "poison deliveries": sum(
            e["event"] == "delivered" and "poison" in e["task"] for e in mine),
            "workers killed": sum(e["event"] == "crashed" for e in mine),
            "good tasks done": len({e["task"] for e in mine if e["event"] == "finished"}),
            "the poison ended": where[label]})
    return full_text(pd.DataFrame(rows).set_index("run"))  # its last column is a sentence


def probe_table(summary: dict) -> pd.DataFrame:
    """What the delivery-limit probe measured on this broker."""
    return value_table({
        "broker": f"RabbitMQ {summary['broker_version']}",
        "default delivery limit (quorum queues)": summary["default_delivery_limit"] or
        "none: unlimited unless the queue sets one",
        "basic.reject (requeue) counts toward it": summary["limit_counts_reject"],
        "basic.nack (requeue) counts toward it": summary["limit_counts_nack"]}, "measured")


def _ended(dead_lettered: int, reasons: dict) -> str:
    return (f"dead-lettered: {reasons}" if dead_lettered
            else "gone: dropped, not in the dead-letter queue")


def dead_letter_note(result) -> Text | None:
    """Who took the poison to the dead-letter queue in each quorum run, in one sentence."""
    if isinstance(result, Skipped):
        return None
    s = result.summary
    runs = {"delivery-limit": s.get("dead_letter_route"),
            "worker-guard": s.get("guard_dead_letter_route")}
    return Text("; ".join(f"{label}: {dead_letter.ROUTE_WORDS.get(route, route)}"
                          for label, route in runs.items()) + ".")


def duplicates_table(result: runner.RunResult) -> pd.DataFrame:
    """The tasks done twice: who did them, and how often each side effect was recorded."""
    from helpers.worker.dedup import per_task

    counts = per_task(result.summary["store"])
    done: dict = {}
    for e in sorted(result.events, key=lambda e: e["t"]):
        if e["event"] == "finished":
            done.setdefault(e["task"], []).append(e["worker"])
    rows = [{"task": task, "done by": ", then ".join(workers),
             "plain effect (rows)": counts.get(task, (0, 0))[0],
             "through the dedup store (rows)": counts.get(task, (0, 0))[1]}
            for task, workers in done.items() if len(workers) > 1]
    return pd.DataFrame(rows).set_index("task")


def alarm_table(summary: dict) -> pd.DataFrame:
    """The alarm's figures, seconds since the first publish."""
    keys = ("alarm_raised_at_s", "blocked_at_s", "alarm_cleared_at_s", "unblocked_at_s",
            "blocked_s", "completed_while_blocked", "confirmed_after_alarm", "tasks_confirmed",
            "tasks_completed", "tasks_lost")
    return value_table({k: summary[k] for k in keys})


# -- the measured facts, in words ----------------------------------------------------------

def story(result) -> Text:
    """What the run showed, in a few sentences, every number from the run itself."""
    if isinstance(result, Skipped):
        return result
    s = result.summary
    version = f"RabbitMQ {s['broker_version']}"
    if s["fault"] == "consumer-timeout":
        how = ("per queue, by a consumer-timeout policy" if s["per_queue_timeout"] else
               f"node-wide: {refusal_words(s['per_queue_refusal'])}")
        return Text(f"On {version} the node's own consumer_timeout is "
                    f"{s['node_consumer_timeout_ms']} ms, checked every {s['node_tick_ms']} ms. "
                    f"For the lesson: {s['timeout_s']} s, checked every {TICK_MS} ms, set "
                    f"{how}.")
    if s["fault"] == "heartbeat":
        return Text(f"On {version} a connection that asked for a {s['heartbeat_s']} s "
                    f"heartbeat and then said nothing was closed by the broker after "
                    f"{s['broker_cut_s']} s.")
    if s["fault"] == "alarm":
        return Text(f"{faults.line(s)}.\nThe producer said: {s['producer_said']}")
    return Text(faults.line(s))


# -- the panel ------------------------------------------------------------------------------

def try_pitfall(name: str = "poison", workers: int = 3, duration: float = 0.1, *,
                broker=None, progress=None):
    """The panel's experiment: one scenario, on its defaults but for workers and duration."""
    return scenario(name, workers, duration, broker=broker, progress=progress)


def figure(result):
    """The scenario's figure (nothing for a scenario that did not run: ``story`` says why)."""
    if isinstance(result, Skipped):
        return None
    summary = result.summary
    titles = {run: TITLES[run].format(**summary) for run in summary.get("runs", [])
              if run in TITLES}
    return figures.figure(result, titles)


def table(result):
    """The scenario's small table (nothing for a scenario that did not run)."""
    if isinstance(result, Skipped):
        return None
    return {"poison": poison_table, "duplicate": duplicates_table,
            "alarm": lambda r: alarm_table(r.summary)}.get(result.summary["fault"],
                                                           runs_table)(result)


def pitfall_report(result) -> list:
    """What the panel's Run button shows: the scenario's figure, table and figures in words."""
    if isinstance(result, Skipped):
        return [result]
    return [figure(result), table(result), Text(faults.line(result.summary))]


def pitfall_panel(broker=None) -> Panel:
    """Notebook 06: run any of the scenarios, with other workers or task lengths."""
    panel = Panel("Try a pitfall", try_pitfall, pitfall_report, {
        "name": dropdown("scenario", list(SCENARIOS), "poison"),
        "workers": int_slider("workers", 3, 1, 6),
        "duration": float_slider("seconds per task", 0.1, 0.05, 8.0, 0.05)},
        fixed={"broker": broker})

    def defaults(change) -> None:  # a new scenario starts from its own defaults
        size = faults.defaults(change["new"])
        panel.controls["workers"].value = size["workers"]
        panel.controls["duration"].value = size["duration"]

    panel.controls["name"].observe(defaults, names="value")
    return panel

