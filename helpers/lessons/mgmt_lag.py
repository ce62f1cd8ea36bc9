"""Notebook 04, backlog: how the management API's figures compare with the exact ones.

A ``BacklogResult`` (``helpers.lessons.backlog``) holds the exact ready count (passive
declares over AMQP), the workers' events, what the management API showed, and one
``rabbitmqctl list_queues`` asked mid-run and at the end. From them: the unacknowledged count over time from
the events (``held_by_workers``); when the management figures changed (``refresh_s``: a
quorum queue publishes its counts on a tick, 5 s by default); how late they were
(``management_lag_s``); and rabbitmqctl's answer beside the exact count (``ctl_against_exact``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def held_by_workers(result) -> pd.DataFrame:
    """Messages delivered and not yet acked over time, from the workers' own events (exact):
    ``t_s`` and ``unacked``, one row per change."""
    df, t0 = result.deliveries, result.t0
    steps = pd.concat([pd.DataFrame({"t": df["delivered_t"].dropna(), "d": 1}),
                       pd.DataFrame({"t": df["acked_t"].dropna(), "d": -1})]).sort_values("t")
    return pd.DataFrame({"t_s": [0.0, *(steps["t"] - t0)],
                         "unacked": [0, *steps["d"].cumsum()]})


def refresh_s(result) -> list[float]:
    """When the management API's figures changed in this run (seconds since the first
    publish, to the 0.2 s of its sampling); empty without a management API."""
    mgmt = result.samples
    if result.source != "management" or len(mgmt) < 2:
        return []
    shown = mgmt[["messages_ready", "messages_unacknowledged"]].astype(float)
    changed = shown.ne(shown.shift()).any(axis=1)
    changed.iloc[0] = False
    return [round(float(t), 2) for t in mgmt.loc[changed, "t_s"]]


def refresh_interval_s(result) -> float | None:
    """The median time between two changes of the management figures, as observed in this
    run (None with fewer than two changes)."""
    changes = refresh_s(result)
    return round(float(np.median(np.diff(changes))), 1) if len(changes) > 1 else None


def management_lag_s(result, longest_s: float = 12.0) -> float | None:
    """How far the management API's ``messages_ready`` trailed the exact count in this run:
    the shift (in 0.05 s steps, up to ``longest_s``) that best lays the exact curve onto the
    reported one. None without a management API; ``inf`` when the best shift is the
    longest searched (the lag is beyond the search, not measured)."""
    exact, mgmt = result.ready, result.samples
    if result.source != "management" or len(exact) < 2 or len(mgmt) < 2:
        return None
    times, values = exact["t_s"].to_numpy(), exact["ready"].to_numpy()

    def exact_at(t):
        return values[np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(values) - 1)]

    shifts = np.arange(0.0, longest_s + 1e-9, 0.05)
    errors = [np.abs(exact_at(mgmt["t_s"].to_numpy() - d) - mgmt["messages_ready"].to_numpy())
              .mean() for d in shifts]
    best = int(np.argmin(errors))
    return float("inf") if best == len(shifts) - 1 else round(float(shifts[best]), 2)


def ctl_against_exact(result) -> list[dict]:
    """Each ``rabbitmqctl list_queues`` of the run beside the exact ready count (its lowest
    and highest while rabbitmqctl ran) and what the management API showed meanwhile;
    ``late``: its ready count was none the queue had then."""
    exact, mgmt, out = result.ready, result.samples, []
    for ctl in result.ctl:
        during = exact[(exact["t_s"] >= ctl["asked_s"]) & (exact["t_s"] <= ctl["answered_s"])]
        span = pd.concat([exact[exact["t_s"] <= ctl["asked_s"]].tail(1), during])["ready"]
        shown = mgmt[(mgmt["t_s"] >= ctl["asked_s"]) & (mgmt["t_s"] <= ctl["answered_s"])]
        out.append({**ctl, "exact_low": int(span.min()), "exact_high": int(span.max()),
                    "management_ready": sorted({int(v) for v in shown["messages_ready"]}),
                    "late": not span.min() <= ctl["ready"] <= span.max()})
    return out


def lag_sentence(result) -> str:
    """How often the management API's figures changed and how late they were in this run,
    and what ``rabbitmqctl`` said, in a few sentences."""
    if result.source != "management":
        return ("No management API answered, so there is no late count to compare: the ready "
                "count was read over AMQP only, exact at each sample.")
    changes, every, lag = refresh_s(result), refresh_interval_s(result), management_lag_s(result)
    said = [f"The management API's figures changed {len(changes)} times in this run "
            f"(at {', '.join(f'{t:g}' for t in changes) or 'no time'} s)"
            + (f": every {every:g} s (median)." if every is not None else ".")]
    if lag is not None:
        said.append(f"Its ready count matched the exact one shifted {lag:g} s later (best fit)."
                    if np.isfinite(lag) else "Its ready count trailed the exact one by more "
                    "than the 12 s the comparison searches: no lag could be measured.")
    for ctl in ctl_against_exact(result):
        said.append(f"rabbitmqctl list_queues, asked at {ctl['asked_s']:g} s (answered at "
                    f"{ctl['answered_s']:g} s), said ready {ctl['ready']} while the exact count "
                    f"was {ctl['exact_low']}" + (f" to {ctl['exact_high']}" if ctl["exact_high"]
                                                  > ctl["exact_low"] else "")
                    + " and the management API showed "
                    + ", ".join(map(str, ctl["management_ready"])) + ": "
                    + ("a figure the queue did not hold then, late like the management API's."
                       if ctl["late"] else "within the exact count of that moment."))
    return " ".join(said)
