"""Companion package of the work-queue notebooks: the library, usable without notebooks.

The public API, by name (each imported only when first used: ``python -m helpers.worker``
must start fast, so importing ``helpers`` imports nothing heavy, no pandas, no matplotlib)::

    import helpers
    broker = helpers.get_broker()                  # AMQP_URL, else a private node, else compose
    work = helpers.odd_heavy(40, heavy=0.2, light=0.02)
    result = helpers.run(2, 1, work, broker=broker)  # K workers, prefetch, tasks: a RunResult
    print(helpers.table(result.summary))

Modules: ``settings`` (paths, HELPERS_* variables, mode names), ``broker`` and
``private_node`` (find, start, stop, restart, crash a broker), ``connection``,
``management`` (the management HTTP API, where one answers), ``topology`` (the one place
that declares queues), ``dead_letter`` (the dead-letter policy, or the worker doing it),
``tasks``, ``worker`` (with ``worker_options`` and ``console``), ``pool``, ``producer`` and
``confirms``, ``pacing``, ``proxy`` and ``relay`` (a worker "on a host N ms away"),
``prefetch`` (the arithmetic of prefetch and distance), ``runner`` (the one run skeleton),
``faults`` (named fault scenarios), ``node_control`` (a private node's settings, for a few
seconds), ``task_hooks`` (crash injection, the poison guard, side effects) and ``dedup``
(idempotency), ``timing``, ``monitor``, ``plots``, ``notebooks``. The lessons of the notebooks
are in ``helpers.lessons``, which the rest never imports.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> (module, attribute)
_API = {
    "get_broker": ("broker", "get"), "resolve_broker": ("broker", "resolve"),
    "running_broker": ("broker", "running"), "Broker": ("broker", "Broker"),
    "connect": ("connection", "connect"), "mask_url": ("connection", "mask_url"),
    "QueueSpec": ("topology", "QueueSpec"), "Task": ("tasks", "Task"),
    "equal": ("tasks", "equal"), "odd_heavy": ("tasks", "odd_heavy"),
    "from_csv": ("tasks", "from_csv"), "WorkerPool": ("pool", "WorkerPool"),
    "publish": ("producer", "publish"), "PublishResult": ("producer", "PublishResult"),
    "run": ("runner", "run"), "RunResult": ("runner", "RunResult"),
    "LatencyProxy": ("proxy", "LatencyProxy"),
    "recommend_prefetch": ("prefetch", "recommend_prefetch"),
    "run_fault": ("faults", "run_fault"), "FAULTS": ("faults", "FAULTS"),
    "summarize": ("timing", "summarize"), "table": ("timing", "table"),
    "DedupStore": ("dedup", "DedupStore"),
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
