"""Notebook 06: when tasks misbehave. Each pitfall measured on the broker that runs.

The experiments are the fault scenarios of ``helpers.faults`` (each also a command,
``python -m helpers fault NAME``); this module runs them for the notebook, turns their
results into small tables and one-paragraph accounts whose every number comes from the run
(``story``), and builds the panel. The figures are in ``pitfalls_plots``. A scenario that
needs node settings (consumer timeout, disk alarm) returns a ``Skipped`` sentence on a
broker named by ``AMQP_URL``.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from helpers.broker import resolve as broker_mod
from helpers.broker import dead_letter, node_control
from helpers import faults
from helpers.errors import BadInputError
from helpers.experiment import skeleton as runner
from helpers.faults.consumer_timeout import TICK_MS
from helpers.core.tasks import equal
from helpers.lessons import pitfalls_plots as figures
# ``answer``: for the notebook, which asks ``pitfalls.answer(result)`` after each run
from helpers.lessons.pitfalls_answers import answer, refusal_words  # noqa: F401
from helpers.lessons.common import Declared, Skipped, Text, full_text, value_table
from helpers.lessons.panels import Panel, declared_run, dropdown, float_slider, int_slider

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


@dataclass(frozen=True)
class Pitfall(Declared):
    """Fault scenario ``name``: ``tasks`` tasks of ``duration`` s on ``workers`` workers at
    ``prefetch``, with the scenario's ``options`` (its ``OPTIONS`` value, ``helpers.faults``)."""

    name: str
    workers: int
    prefetch: int
    tasks: int
    duration: float
    options: object


def _declared(name: str) -> Pitfall:
    """Scenario ``name`` as the command line runs it: its own size and options."""
    size = faults.defaults(name)
    return Pitfall(name, size["workers"], size["prefetch"], size["tasks"], size["duration"],
                   faults.scenario(name).OPTIONS())


#: Notebook 06's runs, in its order, each scenario at its own size and options (as the
#: ``fault`` command runs it): a blocking and a heartbeat-safe worker, one long task each; a
#: task longer than the ack timeout, split, and given more time; a poison task among good
#: ones; workers that die between a task's side effect and its ack; a disk alarm while
#: tasks are published. ``PITFALLS``: the same, by name.
HEARTBEAT, CONSUMER_TIMEOUT, POISON, DUPLICATE, ALARM = map(_declared, SCENARIOS)
PITFALLS = {plan.name: plan for plan in (HEARTBEAT, CONSUMER_TIMEOUT, POISON, DUPLICATE, ALARM)}


def scenario(plan: Pitfall, *, broker=None, progress=None):
    """Run ``plan`` (``HEARTBEAT``, ``POISON``, ... or a ``replace`` of one); a ``Skipped``
    sentence for a scenario that needs node settings this broker does not let us change.
    A duplicate run without a store gets one, kept for ``duplicates_table`` (a SQLite file,
    named in the summary's ``store``)."""
    broker = broker or broker_mod.get()
    if plan.name in ("consumer-timeout", "alarm"):
        skipped = _skipped(broker, f"the {plan.name} scenario")
        if skipped is not None:
            return skipped
    options = plan.options
    if plan.name == "duplicate" and options.store is None:
        store = Path(tempfile.mkdtemp(prefix="pitfalls-")) / "effects.sqlite"
        options = replace(options, store=store)
    result = faults.run_fault(plan.name, plan.workers, plan.prefetch,
                              equal(plan.tasks, plan.duration), options=options, broker=broker)
    if progress is not None:
        progress(1, 1)
    return result


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

def try_pitfall(plan: Pitfall = POISON, *, broker=None, progress=None):
    """The panel's experiment: scenario ``plan.name`` as declared, but for ``plan``'s
    workers and duration."""
    if plan.name not in PITFALLS:
        raise BadInputError(f"the scenario must be one of {', '.join(PITFALLS)} "
                            f"(got {plan.name!r}).")
    own = PITFALLS[plan.name]
    return scenario(own.replace(workers=plan.workers, duration=plan.duration), broker=broker,
                    progress=progress)


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
    first = POISON
    panel = Panel("Try a pitfall", declared_run(try_pitfall, first), pitfall_report, {
        "name": dropdown("scenario", list(PITFALLS), first.name),
        "workers": int_slider("workers", first.workers, 1, 6),
        "duration": float_slider("seconds per task", first.duration, 0.05, 8.0, 0.05)},
        fixed={"broker": broker})

    def defaults(change) -> None:  # a new scenario starts from its own declared run
        own = PITFALLS[change["new"]]
        panel.controls["workers"].value = own.workers
        panel.controls["duration"].value = own.duration

    panel.controls["name"].observe(defaults, names="value")
    return panel
