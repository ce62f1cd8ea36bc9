"""What differs between RabbitMQ versions, as notebooks 02, 03, 06 and 07 show it.

Each of those notebooks measures the facts it teaches on the broker it runs on (the probes
of ``helpers.broker.version_facts``) and prints them beside what the other versions did,
from the measurements pinned in ``data/version_facts.json`` (which
``tests/test_version_facts.py`` checks against every version CI runs)::

    measured = versions.measure(broker, ["counters_after_crash"])
    versions.table(broker, measured)      # this run's column, then 3.10 / 4.0 / 4.3
"""
from __future__ import annotations

import json
import re

import pandas as pd

from helpers.broker import version_facts as vf
from helpers.broker.model import Broker
from helpers.lessons.common import Text, full_text

#: fact -> what it is, in words (the table's first column)
LABELS = {
    "metadata_store": "where the broker keeps its metadata",
    "default_delivery_limit": "a quorum queue's default delivery limit",
    "counters_after_reject": "counters after one basic.reject (requeue)",
    "counters_after_nack": "counters after one basic.nack (requeue)",
    "counters_after_crash": "counters after a worker died holding it",
    "counters_after_timeout": "after one consumer timeout (quorum queue)",
    "past_limit_reject_with_dlx": "delivery limit 2, a worker that rejects",
    "past_limit_nack_with_dlx": "delivery limit 2, a worker that nacks",
    "consumer_timeout_classic_node": "consumer timeout on a classic queue",
    "consumer_timeout_quorum_node": "consumer timeout on a quorum queue",
    "consumer_timeout_quorum_policy": "consumer-timeout policy on a quorum queue",
    "tutorial_loop_on_timeout": "the tutorial's start_consuming() after a timeout",
    "non_durable_queue": "a non-durable, non-exclusive queue",
    "non_durable_after_restart": "that queue after a restart",
    "quorum_priority_order": "quorum queue, priorities 0 0 0 0 9 9 9 9 read as",
    "consumer_disconnected_timeout_default": "consumer_disconnected_timeout of a new queue (ms)",
    "lost_consumer_leader_node": "a consumer lost with the leader's node: its messages",
    "declare_without_majority_new_quorum": "majority down: declare a new quorum queue",
    "declare_without_majority_new_classic": "majority down: declare a new classic queue",
    "declare_without_majority_existing_quorum": "majority down: redeclare an existing quorum queue",
}

#: fact -> how a lesson measures it on ``url`` (quick probes only: seconds, no restart)
PROBES = {
    "metadata_store": lambda broker: vf.metadata_store(broker),
    "counters_after_reject": lambda broker: vf.counters_after(broker.url, "reject"),
    "counters_after_nack": lambda broker: vf.counters_after(broker.url, "nack"),
    "counters_after_crash": lambda broker: vf.counters_after(broker.url, "crash"),
    "past_limit_reject_with_dlx": lambda broker: vf.past_the_limit(broker.url, "reject", True),
    "past_limit_nack_with_dlx": lambda broker: vf.past_the_limit(broker.url, "nack", True),
    "non_durable_queue": lambda broker: vf.non_durable_queue(broker.url),
}


def measure(broker: Broker, facts: list[str]) -> dict:
    """Measure ``facts`` (names of ``PROBES``) on ``broker`` now: ``{fact: value}``."""
    return {fact: PROBES[fact](broker) for fact in facts}


def words(value) -> str:
    """A fact's value as a reader wants it: counters as ``x-delivery-count 1``, None as none."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        parts = [f"{key} {'absent' if v is None else v}" for key, v in value.items()]
        return ", ".join(parts)
    return str(value)


def _pinned_table() -> dict:
    return json.loads(vf.FACTS_FILE.read_text())


def table(broker: Broker, measured: dict, pinned_only: tuple[str, ...] = ()) -> pd.DataFrame:
    """This run's column (``measured``; facts in ``pinned_only`` come from the pinned row of
    this broker's series, marked so), then one column per pinned series."""
    version = broker.version()
    pinned = _pinned_table()
    own = pinned.get(vf.series(version), {})
    facts = list(measured) + [f for f in pinned_only if f not in measured]
    rows = {}
    for fact in facts:
        if fact in measured:
            here = words(measured[fact])
        elif fact in own:
            here = f"{words(own[fact]['value'])} (pinned)"
        else:
            here = "not measured"
        row = {f"{version} (this run)": here}
        for series, facts_of in sorted(pinned.items(), key=lambda kv: vf.series_key(kv[0])):
            if series == vf.series(version):
                continue
            entry = facts_of.get(fact)
            column = f"{entry['measured_on'] if entry else series}"
            row[column] = words(entry["value"]) if entry else "not measured"
        rows[LABELS.get(fact, fact)] = row
    return full_text(pd.DataFrame.from_dict(rows, orient="index"))


def surprises(broker: Broker, measured: dict) -> list[str]:
    """Facts this run measured otherwise than pinned for its series, in words (none: [])."""
    own = vf.pinned(broker.version()) or {}
    return [f"{LABELS.get(fact, fact)}: measured {words(value)}, pinned {words(own[fact])}"
            for fact, value in measured.items() if fact in own and own[fact] != value]


# -- what each notebook's own runs measured -------------------------------------------------

#: notebook 06: how a worker gives a poison back, and what the delivery limit makes of it
REJECT_OR_NACK = ("counters_after_reject", "counters_after_nack", "past_limit_reject_with_dlx",
                  "past_limit_nack_with_dlx")
#: notebook 06: where the consumer timeout applies, and what it does (pinned beside the run)
TIMEOUT_FACTS = ("consumer_timeout_classic_node", "consumer_timeout_quorum_node",
                 "consumer_timeout_quorum_policy", "tutorial_loop_on_timeout")


def timeout_measured(summary: dict) -> dict:
    """The consumer-timeout fact notebook 06's too-long run measured, in the pinned words."""
    fact = ("consumer_timeout_quorum_policy" if summary.get("per_queue_timeout")
            else "consumer_timeout_quorum_node")
    because = summary.get("closed_because") or ""
    code = re.match(r"(\d{3}) (\w+)", because)
    value = ("consumer cancelled" if "cancel" in because
             else f"channel closed: {code.group(1)} {code.group(2)}" if code else "nothing")
    return {fact: value}


def durability_measured(result) -> dict:
    """Notebook 03's non-durable queue, as its survival run found it (before/after)."""
    row = result.table.iloc[0]
    refused = row["before"] == "refused"
    out = {"non_durable_queue": f"refused: {row.get('why')}" if refused else "allowed"}
    if result.restarted and not refused:
        out["non_durable_after_restart"] = "gone" if row["after"] == "queue gone" else "kept"
    return out


def _deliveries(outcome: str) -> int | None:
    found = re.search(r"after (\d+) deliveries", outcome)
    return int(found.group(1)) if found else None


def reject_or_nack_answer(measured: dict) -> Text:
    """Notebook 06's answer to its prediction, from this run's probe."""
    reject, nack = measured["past_limit_reject_with_dlx"], measured["past_limit_nack_with_dlx"]
    text = (f"With a delivery limit of 2, the rejected message was {reject}; "
            f"the nacked one was {nack}. ")
    if "looping" in nack:
        return Text(text + "On this broker a nack with requeue does not count toward the "
                    "limit (it raises x-acquired-count, not x-delivery-count), so a worker "
                    "that nacks a poison keeps it going round for ever: reject it instead.")
    if _deliveries(reject) == _deliveries(nack):
        return Text(text + "On this broker a nack and a reject count alike toward the limit; "
                    "RabbitMQ 4.3 and later count only the reject (table above).")
    return Text(text)


#: notebook 07: the facts about a cluster that loses nodes, pinned per version
CLUSTER_FACTS = ("consumer_disconnected_timeout_default", "lost_consumer_leader_node",
                 "declare_without_majority_new_quorum", "declare_without_majority_new_classic",
                 "declare_without_majority_existing_quorum")


def cluster_table(lab) -> pd.DataFrame:
    """Notebook 07: this cluster's metadata store, read now, beside the pinned versions."""
    from helpers.broker.cluster_info import cluster_broker

    broker = cluster_broker(lab.cluster)
    return table(broker, measure(broker, ["metadata_store"]), pinned_only=CLUSTER_FACTS)
