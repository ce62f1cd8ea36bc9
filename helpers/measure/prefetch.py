"""Prefetch arithmetic: how busy a worker far from its broker can be, and what prefetch to set.

A worker that holds at most ``p`` unacknowledged tasks, each ``t`` seconds of work, on a
connection with round trip ``r``: after it acks a task, the next one the broker sends for
that freed place arrives ``r`` later. Over one cycle of ``r + t`` seconds it can work at most
``p`` tasks, so it is busy at most ``min(1, p * t / (r + t))`` of the time, and a prefetch
of ``(r + t) / t`` (rounded up) is the smallest that keeps it busy. A larger one adds no
throughput and makes dispatch less fair: each worker holds more tasks, whatever their length.

These bounds ignore the broker's and the client's own time per message, which matters
only for tasks of a millisecond or less (see notebook 05).
"""
from __future__ import annotations

import math

#: The largest prefetch ``recommend_prefetch`` suggests. RabbitMQ's documentation finds
#: 100 to 300 usually gives the best throughput; beyond that, for tasks near zero length,
#: the broker's and the client's time per message, not the round trip, sets the pace.
MAX_RECOMMENDED = 300


def _check(round_trip_s: float, task_s: float) -> None:
    from helpers.errors import BadInputError

    for name, value in (("round_trip_s", round_trip_s), ("task_s", task_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not (0 <= value < math.inf):  # also refuses nan
            raise BadInputError(f"{name} must be a number of seconds >= 0 (got {value!r}).")


def busy_bound(prefetch: int, round_trip_s: float, task_s: float) -> float:
    """Largest fraction of time a worker is busy: ``min(1, p·t / (r + t))``; prefetch 0 = 1."""
    _check(round_trip_s, task_s)
    if prefetch == 0 or round_trip_s == 0:
        return 1.0
    return min(1.0, prefetch * task_s / (round_trip_s + task_s))


def throughput_bound(workers: int, prefetch: int, round_trip_s: float, task_s: float) -> float:
    """Most tasks per second ``workers`` workers can complete: ``workers · busy / t``."""
    if task_s == 0:
        return math.inf if prefetch == 0 or round_trip_s == 0 else \
            workers * prefetch / round_trip_s
    return workers * busy_bound(prefetch, round_trip_s, task_s) / task_s


def recommend_prefetch(round_trip_s: float, task_s: float) -> int:
    """The smallest prefetch that keeps a worker busy: ``ceil((r + t) / t)``, at most 300."""
    _check(round_trip_s, task_s)
    if task_s == 0:
        return MAX_RECOMMENDED if round_trip_s else 1
    # round() first: 0.025 / 0.005 is 5.000000000000001 in floating point, not 5
    return max(1, min(MAX_RECOMMENDED, math.ceil(round((round_trip_s + task_s) / task_s, 9))))
