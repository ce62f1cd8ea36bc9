"""Companion package of the work-queue notebooks.

Kept import-light on purpose: ``python -m helpers.worker`` must start fast, so this
file imports nothing heavy (no pandas, no matplotlib). Import submodules directly::

    from helpers import broker, pool, producer, timing, plots
"""
__version__ = "0.1.0"
