"""Named fault scenarios: ``python -m helpers fault NAME`` runs one and counts what survived.

``FAULTS`` maps each name to the module of this package that runs it. A scenario module has
``run(name, workers, prefetch, tasks, options, *, progress=None, broker=None) -> RunResult``
(a run of the skeleton in ``helpers.experiment.skeleton`` with the fault plugged into it;
``options`` is its own small frozen value, the class its ``OPTIONS`` names, checked once;
``progress(done, total)`` is called as tasks complete, summed over its runs) and
``line(summary) -> str`` (its figures in one line, as the CLI prints them). A new scenario
is one module here plus its names in ``FAULTS``; the CLI's choices are read from it. A module's
``COMMAND_LINE`` names the ``fault`` command's options it takes, and its ``DEFAULTS``
(optional) sizes its run on the command line (``workers``, ``prefetch``, ``tasks``,
``duration``, ``after``), over the broker faults' ``DEFAULTS`` below. Modules are imported
only when run, so the CLI starts fast.
"""
from __future__ import annotations

import dataclasses
import importlib

from helpers.errors import BadInputError

#: fault name -> module in ``helpers.faults`` that runs it
FAULTS: dict[str, str] = {
    "restart": "broker_down",  # the broker is stopped cleanly and started again
    "crash": "broker_down",    # the broker's node is SIGKILLed and started again
    "heartbeat": "heartbeat",  # a task longer than three heartbeat intervals
    "consumer-timeout": "consumer_timeout",  # a task longer than the ack timeout
    "poison": "poison",        # a task that kills every worker that takes it
    "duplicate": "duplicate",  # workers die between a task's side effect and its ack
    "alarm": "alarm",          # a disk alarm blocks the publishers for a while
    "leader-kill": "leader_kill",    # a private cluster loses its quorum queue's leader
    "majority-loss": "leader_kill",  # ... and a majority of its nodes, one comes back
    "retry": "retry",          # a failing task: requeued at once, or retried after delays
    "priority": "priority",    # urgent tasks behind a backlog, with and without priorities
    "single-active": "single_active",  # related tasks in order, and a takeover after a kill
    "overflow": "overflow",    # a length limit: nacked publishes, or the oldest dropped
    "shutdown": "shutdown",    # SIGTERM mid-task, and a rolling restart of every worker
}


#: the size of a fault run on the command line, unless the scenario or the user says otherwise
DEFAULTS = {"workers": 4, "prefetch": 1, "tasks": 300, "duration": 0.05, "after": 1.0}


def defaults(name: str) -> dict:
    """The command-line defaults of fault ``name``."""
    return {**DEFAULTS, **getattr(scenario(name), "DEFAULTS", {})}


def scenario(name: str):
    """The module that runs fault ``name`` (one sentence when there is no such fault)."""
    if name not in FAULTS:
        raise BadInputError(f"the fault must be one of {', '.join(FAULTS)} (got {name!r}).")
    return importlib.import_module(f"{__name__}.{FAULTS[name]}")


def run_fault(name: str, workers: int, prefetch: int, tasks: list, *, options=None,
              progress=None, **keywords):
    """Run fault scenario ``name`` on ``workers`` workers and return its ``RunResult``.

    ``options`` is the scenario's options value (its module's ``OPTIONS``, see
    ``options_for``); without it, the keywords that are fields of that value make it, and
    the rest (``broker``, ``cluster``) go to ``run`` as they are (a misspelt one is a
    ``TypeError``). ``progress(done, total)`` is called as tasks complete.
    """
    module = scenario(name)
    if options is None:
        own = {f.name for f in dataclasses.fields(module.OPTIONS)}
        options = module.OPTIONS(**{key: keywords.pop(key) for key in list(keywords)
                                    if key in own})
    return module.run(name, workers, prefetch, tasks, options, progress=progress, **keywords)


def options_for(name: str, given: dict):
    """What the ``fault`` command hands scenario ``name``: of its options (``given``), those
    the scenario's ``COMMAND_LINE`` names (e.g. ``fault_after_s``, ``queue_type``), as its
    ``OPTIONS`` value."""
    module = scenario(name)
    return module.OPTIONS(**{key: given[key] for key in getattr(module, "COMMAND_LINE", ())})


def line(summary: dict) -> str:
    """The figures of a fault run in one line, by the scenario that ran it."""
    return scenario(summary["fault"]).line(summary)
