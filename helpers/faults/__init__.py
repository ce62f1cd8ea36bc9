"""Named fault scenarios: ``python -m helpers fault NAME`` runs one and counts what survived.

``FAULTS`` maps each name to the module of this package that runs it; a scenario module has
``run(name, workers, prefetch, tasks, **options) -> RunResult`` (a run of the skeleton in
``helpers.runner`` with the fault plugged into it) and ``line(summary) -> str`` (its figures
in one line, as the CLI prints them). A new scenario is one module here plus its names in
``FAULTS``; the CLI's choices are read from it. Modules are imported only when run, so the
CLI starts fast.
"""
from __future__ import annotations

import importlib

from ..errors import BadInputError

#: fault name -> module in ``helpers.faults`` that runs it
FAULTS: dict[str, str] = {
    "restart": "broker_down",  # the broker is stopped cleanly and started again
    "crash": "broker_down",    # the broker's node is SIGKILLed and started again
    "leader-kill": "leader_kill",    # a private cluster loses its quorum queue's leader
    "majority-loss": "leader_kill",  # ... and a majority of its nodes, one comes back
}


def scenario(name: str):
    """The module that runs fault ``name`` (one sentence when there is no such fault)."""
    if name not in FAULTS:
        raise BadInputError(f"the fault must be one of {', '.join(FAULTS)} (got {name!r}).")
    return importlib.import_module(f"{__name__}.{FAULTS[name]}")


def run_fault(name: str, workers: int, prefetch: int, tasks: list, **options):
    """Run fault scenario ``name`` on ``workers`` workers and return its ``RunResult``."""
    return scenario(name).run(name, workers, prefetch, tasks, **options)


def line(summary: dict) -> str:
    """The figures of a fault run in one line, by the scenario that ran it."""
    return scenario(summary["fault"]).line(summary)
