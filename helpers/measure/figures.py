"""A run's figures as people and JSON read them: a number, or why there is none.

Some of a run's ratios cannot be computed: tasks of no length have an ideal makespan of
0 s, so there is no makespan/ideal and no efficiency; a run that completed nothing has no
makespan, hence no throughput; with nobody busy there is no Jain's index and no imbalance.
``timing.summarize`` stores such a figure as None (``null`` in JSON, never ``NaN``);
``text`` says in words why it is missing instead of printing ``nan`` or ``inf``, and
``dumps`` writes JSON in which no ``NaN`` or ``Infinity`` can appear (strict JSON has none).
"""
from __future__ import annotations

import json
import math

#: figure -> (how it reads, its unit, its name when it has no value) in ``text``
LABELS = {
    "makespan_s": ("makespan", " s", "makespan"),
    "ideal_makespan_s": ("ideal", " s", "ideal makespan"),
    "makespan_over_ideal": ("makespan/ideal", "", "makespan/ideal"),
    "efficiency": ("efficiency", "", "efficiency"),
    "throughput_tps": ("throughput", " tasks/s", "throughput"),
    "imbalance": ("imbalance (max/mean busy)", "", "imbalance"),
    "jain": ("Jain", "", "Jain's index"),
    "spawn_s": ("spawn", " s", "spawn time"),
}
#: the figures a run that completed nothing cannot have
NEED_COMPLETIONS = ("makespan_s", "throughput_tps", "makespan_over_ideal", "efficiency")

NOTHING_DONE = "no task was completed"
NO_LENGTH = "the tasks take no time, so the ideal makespan is 0 s"
NOBODY_BUSY = "no worker was busy"


def defined(value) -> bool:
    """True for a finite number (not None, NaN or an infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def number(value):
    """``value`` when it is a finite number, else None (how a summary stores "none")."""
    return value if defined(value) else None


def why(summary: dict, key: str) -> str:
    """Why figure ``key`` of ``summary`` has no value, as a clause."""
    if key in ("makespan_over_ideal", "efficiency") and summary.get("ideal_makespan_s") == 0:
        return NO_LENGTH
    if key in ("imbalance", "jain"):
        return NOBODY_BUSY
    if key in NEED_COMPLETIONS and not defined(summary.get("makespan_s")):
        return NOTHING_DONE
    if key == "throughput_tps":
        return "no time passed between the first publish and the last completion"
    return "it was not recorded"


def text(summary: dict, key: str, fmt: str = ".3f") -> str:
    """Figure ``key`` as ``label value unit`` (``makespan/ideal 1.028``), or, when it has no
    value, a clause saying so and why (``no makespan/ideal (the tasks take no time, ...)``)."""
    label, unit, name = LABELS.get(key, (key, "", key))
    value = summary.get(key)
    if defined(value):
        return f"{label} {value:{fmt}}{unit}"
    return f"no {name} ({why(summary, key)})"


def json_ready(value):
    """``value`` with every NaN or infinity, at any depth, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def dumps(value, **options) -> str:
    """Strict JSON of ``value``: a figure that has no value is ``null``, never ``NaN``."""
    return json.dumps(json_ready(value), allow_nan=False, default=str, **options)


def explained(frame, names: dict[str, str] | None = None, reasons: dict[str, str] | None = None):
    """A copy of table ``frame`` in which each missing cell (None, NaN) says why it is empty.

    A column named like a run figure (``LABELS``; ``names`` maps a table's own column names to
    them, e.g. ``{"ideal_s": "ideal_makespan_s"}``) gets ``why`` for its row; ``reasons`` gives
    the clause for any other column (``{"ideal_on_cores_s": "as ideal_s: sleeping takes no
    core"}``). Other columns are left alone."""
    names, reasons = names or {}, reasons or {}
    out = frame.copy()
    for column in out.columns:
        key = names.get(column, column)
        if key not in LABELS and column not in reasons:
            continue
        missing = [not defined(v) for v in out[column]]
        if not any(missing):
            continue
        out[column] = out[column].astype(object)
        for at, (label, row) in enumerate(out.iterrows()):
            if missing[at]:
                summary = {names.get(c, c): v for c, v in row.items()}
                out.at[label, column] = reasons.get(column) or f"none: {why(summary, key)}"
    return out
