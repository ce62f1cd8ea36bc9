"""Companion package of the work-queue notebooks: the library, usable without notebooks.

The public API, by name (each imported only when first used: ``python -m helpers.worker``
must start fast, so importing ``helpers`` imports nothing heavy, no pandas, no matplotlib)::

    import helpers
    broker = helpers.get_broker()                  # AMQP_URL, else a private node, else compose
    work = helpers.odd_heavy(40, heavy=0.2, light=0.02)
    result = helpers.run(2, 1, work, broker=broker)  # K workers, prefetch, tasks: a RunResult
    print(helpers.table(result.summary))

The package is in families (folders), in layers; a module imports only from its own or a
lower layer (``tests/test_layout.py`` checks it; CONTRIBUTING.md has the table)::

    0  helpers.settings, errors, procs, checks    the ground floor
    1  helpers.core        connection, topology, tasks
    2  helpers.broker      find, run and control a broker; a private cluster
    3  helpers.net         a worker "on a host N ms away"
    3  helpers.worker      the worker process (python -m helpers.worker)
    3  helpers.publish     PublishOptions, producer, pipelined confirms, pacing
    4  helpers.pool        WorkerPool and the workers' events
    5  helpers.measure     timing, monitor, plots, prefetch arithmetic
    6  helpers.experiment  the one run skeleton and the steps that plug into it
    7  helpers.faults      named fault scenarios
    8  helpers.lessons     one module per notebook section (the rest never imports it)
    9  helpers.cli, helpers.__main__   the command line
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> (module, attribute)
_API = {
    "get_broker": ("broker.resolve", "get"), "resolve_broker": ("broker.resolve", "resolve"),
    "running_broker": ("broker.resolve", "running"), "Broker": ("broker.model", "Broker"),
    "connect": ("core.connection", "connect"), "mask_url": ("core.connection", "mask_url"),
    "QueueSpec": ("core.topology", "QueueSpec"), "Task": ("core.tasks", "Task"),
    "equal": ("core.tasks", "equal"), "odd_heavy": ("core.tasks", "odd_heavy"),
    "from_csv": ("core.tasks", "from_csv"), "WorkerPool": ("pool.pool", "WorkerPool"),
    "publish": ("publish.producer", "publish"),
    "PublishOptions": ("publish.options", "PublishOptions"),
    "PublishResult": ("publish.outcome", "PublishResult"),
    "run": ("experiment.skeleton", "run"), "RunResult": ("experiment.skeleton", "RunResult"),
    "LatencyProxy": ("net.proxy", "LatencyProxy"),
    "recommend_prefetch": ("measure.prefetch", "recommend_prefetch"),
    "run_fault": ("faults", "run_fault"), "FAULTS": ("faults", "FAULTS"),
    "summarize": ("measure.timing", "summarize"), "table": ("measure.timing", "table"),
    "DedupStore": ("worker.dedup", "DedupStore"),
    "HelpersError": ("errors", "HelpersError"),
}

__all__ = sorted(_API)


def __getattr__(name: str):
    """Import a public name's module on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'helpers' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
