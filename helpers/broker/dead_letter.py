"""Dead-lettering without queue arguments: one policy for the project's queues, or the worker.

A queue argument such as ``x-dead-letter-exchange`` is part of a queue's identity: declare
``task_queue`` with it and the tutorial's ``worker.py``, which declares it without, gets
``406 PRECONDITION_FAILED``. RabbitMQ's own advice is a *policy*, which the broker applies to
every queue whose name matches, whoever declared it. ``ensure`` sets the project's one
policy, ``helpers-dead-letter`` (``settings.DEAD_LETTER_PATTERN``: ``task_queue`` and the
project's ``wq-``, ``test-`` and ``bench-`` queues), the first way that works:

1. over the management HTTP API, when one answers (``helpers.broker.management``);
2. with ``rabbitmqctl set_policy``, on a private node (ours, so its CLI can reach it);
3. not at all: then the worker moves a rejected message to ``<queue>.dead`` itself
   (publish there, then ack), so dead-lettering still works, and says so. A queue with a
   delivery limit (``x-delivery-limit``) instead names the dead-letter exchange in its own
   arguments: past the limit the broker, not a worker, lets the message go, and would drop
   it. That argument clashes with nothing new: the limit already sets the queue apart from
   the tutorial's declaration.

``prepare(broker, spec)`` returns the spec with ``dead_letter_by`` set to what holds for that
queue on that broker, and ``describe`` says it in one sentence.
"""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess

from helpers.broker import management
from helpers.broker.model import Broker
from helpers.errors import HelpersError
from helpers.settings import DEAD_LETTER_EXCHANGE, DEAD_LETTER_PATTERN, DEAD_LETTER_POLICY, DEAD_LETTER_PRIORITY
from helpers.core.topology import QueueSpec

#: How the policy was set, by broker (once per process: policies survive restarts).
_SET_BY: dict[tuple, str | None] = {}
#: The definition of the policy: rejected (and expired) messages go to this exchange.
DEFINITION = {"dead-letter-exchange": DEAD_LETTER_EXCHANGE}


def _body() -> dict:
    return {"pattern": DEAD_LETTER_PATTERN, "definition": DEFINITION, "apply-to": "queues",
            "priority": DEAD_LETTER_PRIORITY}


def _over_management(broker: Broker) -> bool:
    if not management.answers(broker):
        return False
    path = "policies/" + management.vhost_path(broker, DEAD_LETTER_POLICY)
    try:
        status, current = management.call(broker, "GET", path)
        if status == 200 and all(current.get(k) == v for k, v in _body().items()):
            return True  # already there, as we would set it
        return management.call(broker, "PUT", path, _body())[0] < 300
    except HelpersError:
        return False


def _over_rabbitmqctl(broker: Broker) -> bool:
    if not hasattr(broker, "rabbitmqctl"):  # not our node: its CLI tools cannot reach it
        return False
    try:
        proc = broker.rabbitmqctl("set_policy", "-p", broker.vhost(), "--apply-to", "queues",
                                  "--priority", str(DEAD_LETTER_PRIORITY), DEAD_LETTER_POLICY,
                                  DEAD_LETTER_PATTERN, json.dumps(DEFINITION), timeout=60)
    except (OSError, ValueError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def ensure(broker: Broker) -> str | None:
    """Set the dead-letter policy on ``broker``; how (``"management API"``,
    ``"rabbitmqctl"``), or None when no way worked (the workers then do it)."""
    key = _key(broker)
    if _SET_BY.get(key) is None:
        _SET_BY[key] = ("management API" if _over_management(broker)
                        else "rabbitmqctl" if _over_rabbitmqctl(broker) else None)
    return _SET_BY[key]


def _key(broker: Broker) -> tuple:
    """A broker as far as setting a policy goes: its URL and the ways we have to it."""
    return broker.url, broker.management_url, hasattr(broker, "rabbitmqctl")


def covers(name: str) -> bool:
    """True when the policy's pattern matches queue ``name``."""
    return re.match(DEAD_LETTER_PATTERN, name) is not None


def prepare(broker: Broker, spec: QueueSpec) -> QueueSpec:
    """``spec`` with ``dead_letter_by`` set to what works for it on ``broker``."""
    if not spec.dead_letter:
        return spec
    if covers(spec.name) and ensure(broker):
        by = "broker"
    elif spec.delivery_limit is not None:
        by = "arguments"
    else:
        by = "worker"
    return dataclasses.replace(spec, dead_letter_by=by)


def describe(spec: QueueSpec, broker: Broker | None = None) -> str:
    """Where a rejected message of ``spec``'s queue goes, and who takes it there."""
    if not spec.dead_letter:
        return f"Dead-lettering is off for {spec.name}: a rejected message is dropped."
    if spec.dead_letter_by == "broker":
        how = _SET_BY.get(_key(broker)) if broker is not None else None
        how = {"management API": ", set over the management API",
               "rabbitmqctl": ", set with rabbitmqctl"}.get(how, "")
        return (f"Rejected messages go to {spec.dead_letter_queue}: the broker dead-letters "
                f"them (policy {DEAD_LETTER_POLICY}{how}).")
    reason = ("no policy could be set on this broker (no management API answered and "
              "rabbitmqctl cannot reach it)" if covers(spec.name)
              else f"the policy {DEAD_LETTER_POLICY} does not cover this queue name")
    if spec.dead_letter_by == "arguments":
        return (f"Rejected messages go to {spec.dead_letter_queue}: the broker dead-letters "
                "them through the queue's own x-dead-letter-exchange argument, since "
                f"{reason} and past its delivery limit it would drop them.")
    return (f"Rejected messages go to {spec.dead_letter_queue}: the worker publishes them "
            f"there itself, since {reason}.")


#: The short name of each path (``route``), in words.
ROUTE_WORDS = {
    "policy": "rejected messages dead-lettered by the broker's policy",
    "arguments": "rejected messages dead-lettered by the broker, through the queue's own "
                 "x-dead-letter-exchange argument (no policy could be set)",
    "worker": "rejected messages moved to the dead-letter queue by the workers (no policy "
              "could be set)",
    "off": "no dead-letter queue"}


def route(spec: QueueSpec) -> str:
    """``policy``, ``arguments``, ``worker`` or ``off``: the short name of the path."""
    if not spec.dead_letter:
        return "off"
    return {"broker": "policy"}.get(spec.dead_letter_by, spec.dead_letter_by)

