"""Notebook 06's answers to its "Predict:" questions, in sentences, every number from the run.

Each main run of the notebook is preceded by a one-line question; the cell after the run
calls ``answer(result)``, which reads the run's summary and events (never a typed number)::

    hb = pitfalls.scenario(pitfalls.HEARTBEAT)
    pitfalls.answer(hb)
"""
from __future__ import annotations

import re

from helpers.lessons.common import Skipped, Text
from helpers.lessons.pitfalls_plots import END_WORDS, deliveries_of, ends


def refusal_words(refusal: str | None) -> str:
    """A broker's refusal of the consumer-timeout policy (an Erlang validation error, such as
    ``Validation failed [{<<"consumer-timeout">>,1000}] are not recognised policy settings``)
    as one sentence."""
    if not refusal:
        return "the broker took the policy"
    keys = re.findall(r'<<"([^"]+)">>', refusal)
    if "not recognised" in refusal and keys:
        return (f"this broker does not know {', '.join(map(repr, keys))} as a policy key (it "
                "answered that the setting is not recognised), so it has no per-queue timeout")
    return "this broker refused the policy"


def broker_said(closed_because: str | None) -> str:
    """The broker's reason, up to its first sentence (3.x adds where to read more)."""
    return (closed_because or "nothing").split(". ")[0]


def _heartbeat(s: dict) -> str:
    text = (f"The blocking worker was cut off {s['disconnects_blocking']} times: its task was "
            f"delivered {s['deliveries_blocking']} times, done {s['times_done_blocking']} times "
            f"and acked {s['acked_blocking']} times. The thread worker was cut off "
            f"{s['disconnects_thread']} times and acked its task {s['acked_thread']} time(s).")
    cut, every, default = s["broker_cut_s"], s["heartbeat_s"], s.get("default_heartbeat_s")
    if not (cut and default):
        return text
    ratio = cut / every
    return text + (
        f"\nThe broker closed a silent connection after {cut} s, {ratio:.1f} times the "
        f"{every} s heartbeat it asked for. A pika connection that asks for no heartbeat gets "
        f"the broker's, read from such a connection now: {default} s. At the same "
        f"{ratio:.1f} intervals, the tutorial's worker loses its connection in production "
        f"whenever a callback is blocked for more than about {ratio * default:.0f} s "
        f"({ratio * default / 60:.1f} minutes).")


def _consumer_timeout(result) -> str:
    s = result.summary
    mine = [e for e in result.events if str(e.get("worker", "")).startswith("too-long/")]
    got = deliveries_of(mine)
    fates = [d["fate"] for d in got]
    kinds = [kind for _t, kind in ends(mine)]
    how = "; ".join(f"{END_WORDS[k]} {kinds.count(k)} times" for k in sorted(set(kinds)))
    return (f"In {s['window_s']} s the {s['task_s']} s task was delivered {len(got)} times "
            f"({sum(d['redelivered'] for d in got)} of them redelivered) and its work was done "
            f"{sum('finished' in d for d in got)} times, each time to its end: the work runs "
            "in the worker's thread, which cannot be stopped half-way, and a new delivery "
            f"waits behind it. Acks accepted: {fates.count('acked')}; refused, the channel "
            f"being gone: {fates.count('ack lost')}; deliveries dropped before their work "
            f"could start: {fates.count('dropped')}. What ended the consumer: {how or 'nothing'} "
            f"(it said: {broker_said(s['closed_because'])}). Split into {s['pieces']} "
            f"pieces: {s['acked_split']} acked; on the queue with a longer timeout: "
            f"{s['acked_longer']} acked.")


def _poison(s: dict) -> str:
    return (f"With a delivery limit of {s['delivery_limit']}, the poison was delivered "
            f"{s['attempts_per_poison']:g} times (the limit, then one more) and dead-lettered; "
            f"the worker's guard ({s['max_attempts']} attempts) let it through "
            f"{s['guard_attempts']:g} times. On the classic queue it was delivered "
            f"{s['classic_deliveries']} times in {s['window_s']} s, and only "
            f"{s['classic_good_completed']} of the {s['good_tasks']} good tasks were done.")


def _duplicate(s: dict) -> str:
    return (f"{s['crashes']} workers died after a task's effect and before its ack: "
            f"{s['duplicates_delivered']} tasks were delivered and done again. The plain "
            f"record holds {s['effects_plain']} rows for {s['tasks_completed']} tasks "
            f"({s['side_effects_twice']} twice); the dedup store holds {s['effects_dedup']} "
            f"({s['side_effects_twice_dedup']} twice).")


def _alarm(s: dict) -> str:
    return (f"The workers did not stop: while the producer was blocked "
            f"({s['blocked_s']:.2f} s), they completed {s['completed_while_blocked']} tasks. "
            f"{s['confirmed_after_alarm']} tasks were confirmed after the alarm cleared, and "
            f"of {s['tasks_confirmed']} confirmed, {s['tasks_lost']} were lost.")


def answer(result) -> Text:
    """The answer to the question before ``result``'s run, from its own numbers."""
    if isinstance(result, Skipped):
        return result
    s = result.summary
    name = s["fault"]
    if name == "consumer-timeout":
        return Text(_consumer_timeout(result))
    return Text({"heartbeat": _heartbeat, "poison": _poison, "duplicate": _duplicate,
                 "alarm": _alarm}[name](s))
