"""Notebook 02, part one, read back: what became of each task a killed worker held.

``fate_table`` follows every task the victim had received (done, cut off, waiting in its
buffer) to where it went next (redelivered to whom, or lost); ``answer`` says it in one line
per run, the answer to the notebook's prediction. ``helpers.lessons.acks`` runs the kills.
"""
from __future__ import annotations

import pandas as pd


def fate_table(result) -> pd.DataFrame:
    """Every task the killed worker had received, and what became of it."""
    df = result.deliveries
    held = df[df["worker"] == result.victim]
    rows = []
    for r in held.itertuples():
        at_victim = {"acked": "done", "finished": "done", "cut": "cut off mid-task",
                     "queued": "waiting in its buffer"}.get(r.outcome, r.outcome)
        later = df[(df["task"] == r.task) & (df["delivered_t"] > r.delivered_t)]
        if at_victim == "done":
            then = "-"
        elif len(later):
            again = later.iloc[0]
            then = f"redelivered to {again['worker']} (redelivered={bool(again['redelivered'])})"
        else:
            then = "LOST"
        rows.append({"task": str(r.task).lstrip("t0"), f"at {result.victim}": at_victim,
                     "then": then})
    return pd.DataFrame(rows)


def answer(results: dict) -> str:
    """The answer to notebook 02's prediction, one line per run, from the runs' numbers:
    how many of the victim's tasks were lost and how many came back, buffered ones apart."""
    lines = []
    for label, r in results.items():
        fate = fate_table(r)
        if r.killed_at_s is None or fate.empty:
            lines.append(f"{label}: nobody was killed.")
            continue
        at = fate[f"at {r.victim}"]
        came_back = fate["then"].str.startswith("redelivered")
        buffered = at == "waiting in its buffer"
        lines.append(
            f"{label}: {r.victim} held {len(fate[at != 'done'])} unfinished task(s) when it "
            f"was killed at {r.killed_at_s:.2f} s ({int((at == 'cut off mid-task').sum())} "
            f"cut off, {int(buffered.sum())} waiting in its buffer); "
            f"{int(came_back.sum())} came back redelivered "
            f"({int((came_back & buffered).sum())} of them from the buffer), "
            f"{r.summary['tasks_lost']} lost.")
    return "\n".join(lines)
