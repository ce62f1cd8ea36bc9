"""Notebook 02's Kill button, pressed at random moments of a manual-ack run: nothing is lost.

Issue 21: a browser run of notebook 02 ended at 11/12 with "1 lost", the last task cut off
on a worker nobody killed. The kill run used to end early once a worker had been killed and
both the queue's ready count was 0 and no live worker had an open delivery in the events;
a task the broker had just handed to a live worker is in neither view (its ``delivered``
line still on its way to the parent), so the run stopped the pool under that worker. On a
loaded machine the parent reads events late and the blind spot is wide. Here the pool's
reader waits 50 ms between reads (``READ_COALESCE_S``, 5 ms normally) to be that machine.
Under load the end of a run showed a second fault (1 in 100 kills): the pool stopped a
worker between its last ``finished`` line and its ack, and the requeued task went to a
worker not yet stopped (a redelivery no kill caused, cut off): the kill step now waits for
the last acks.
"""
from __future__ import annotations

import random
import time

import pytest

from helpers.pool import pool as pool_mod
from helpers.lessons import acks

from support import eventually

#: Kills judged per run: the fault this test was written for went wrong in 7 of 20 kills,
#: so 12 kills miss it with a chance of (13/20)**12, about 1 in 180.
KILLS = 12
TASKS, DURATION = 9, 0.3  # three rounds of 3 workers: ~1 s a run (0.3 s: not run inline)


def _press_kill_during_a_run(broker, victim: str, after_s: float):
    """Run the kill panel (kill by hand, manual acks, prefetch 1) and press Kill ``after_s``
    after its pool is attached; the panel once the run is over."""
    panel = acks.kill_panel(broker=broker)
    for name, value in dict(workers=3, tasks=TASKS, duration=DURATION, ack="manual",
                            prefetch=1, kill_after_s=0.0, victim=victim).items():
        panel.controls[name].value = value
    panel.button.click()
    eventually(lambda: panel.pool is not None or not panel.running, 60, "the run's pool")
    time.sleep(after_s)
    panel.kill_button.click()  # the Kill button's own path: KillPanel._kill -> pool.kill
    panel.wait(60)
    assert not panel.running and panel.error is None, panel.error or "the run did not end"
    return panel


def _problems(panel, victim: str) -> list[str]:
    """What is wrong with a manual-ack run in which ``victim`` was killed: all or nothing."""
    r, s = panel.result, panel.result.summary
    df = r.deliveries
    out = []
    if s["tasks_lost"] or r.lost or s["tasks_completed"] != TASKS:
        out.append(f"lost {r.lost}, completed {s['tasks_completed']}/{TASKS}")
    cut = df[(df["worker"] != victim) & df["finished_t"].isna()]
    if len(cut):
        out.append(f"cut off on a live worker: {cut[['worker', 'task']].values.tolist()}")
    at_victim = df[df["worker"] == victim]
    held = set(at_victim.loc[at_victim["finished_t"].isna(), "task"])  # never finished there
    unacked = set(at_victim.loc[at_victim["acked_t"].isna(), "task"])  # the broker requeues
    again = df[df["redelivered"].astype(bool)]
    # A delivery on its way to the victim when it died (sent, never reported) comes back too:
    # its redelivery is then the task's only row.
    in_flight = {t for t in again["task"] if (df["task"] == t).sum() == 1}
    if not held <= set(again["task"]) <= unacked | in_flight:
        out.append(f"redelivered {sorted(again['task'])}: the victim held {sorted(held)} "
                   f"unfinished, {sorted(unacked)} unacked")
    if (again["worker"] == victim).any() or again["finished_t"].isna().any():
        out.append(f"a redelivery went to the victim or was not finished: {again.values}")
    if s["redeliveries"] != len(again):
        out.append(f"summary says {s['redeliveries']} redeliveries, rows say {len(again)}")
    if (acks.fate_table(r).iloc[:, -1] == "LOST").any():
        out.append("the fate table says LOST")
    return out


@pytest.mark.broker
def test_hand_kills_at_random_moments_lose_nothing(broker, monkeypatch):
    monkeypatch.setattr(pool_mod, "READ_COALESCE_S", 0.05)  # a parent that reads late
    rng = random.Random(21)
    kills, failed = 0, []
    for attempt in range(KILLS + 5):
        if kills >= KILLS:
            break
        victim, after_s = rng.choice(["w1", "w2", "w3"]), rng.uniform(0.0, 0.8)
        panel = _press_kill_during_a_run(broker, victim, after_s)
        if panel.result.killed_at_s is None:
            continue  # the run ended before the press: no kill to judge
        kills += 1
        assert panel.result.victim == victim and f"killed {victim}" in panel.status.value
        problems = _problems(panel, victim)
        if problems:
            failed.append(f"kill {kills} ({victim} at {panel.result.killed_at_s:.2f} s): "
                          + "; ".join(problems))
    assert kills >= KILLS, f"only {kills} presses of Kill landed during a run"
    assert not failed, f"{len(failed)} of {kills} hand kills went wrong:\n" + "\n".join(failed)
