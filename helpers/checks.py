"""The values a run is given, checked before anything starts: one sentence per bad value.

``validate`` is what ``helpers.experiment.skeleton`` checks first, and what the CLI and the lessons call
to refuse a bad slider or flag before a broker is even asked.
"""
from __future__ import annotations

import math

from helpers.errors import BadInputError
from helpers.settings import MAX_PREFETCH


def is_whole(value) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """True for an int or float that is neither a bool nor NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and not math.isnan(value)


def validate(workers: int, prefetch: int, tasks: list, kill_every: float | None = None) -> None:
    """Raise ``BadInputError`` naming the first bad value."""
    if not is_whole(workers) or workers < 1:
        raise BadInputError(f"workers must be a whole number of at least 1 (got {workers!r}).")
    check_prefetch(prefetch)
    if not tasks:
        raise BadInputError("There are no tasks to run (give at least one).")
    if kill_every is not None and not (is_number(kill_every) and 0 < kill_every < math.inf):
        raise BadInputError(f"kill_every must be a positive number of seconds (got {kill_every}).")


def check_prefetch(prefetch) -> None:
    """Raise ``BadInputError`` unless ``prefetch`` is 0 (unlimited) to ``MAX_PREFETCH``."""
    if not is_whole(prefetch) or not 0 <= prefetch <= MAX_PREFETCH:
        raise BadInputError(f"prefetch must be a whole number from 0 (unlimited) to "
                            f"{MAX_PREFETCH} (got {prefetch!r}).")
