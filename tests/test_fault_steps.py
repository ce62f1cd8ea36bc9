"""The heartbeat scenario's ending, without a broker: a loaded machine lengthens the blocking
run instead of cutting it between two disconnects (it once saw 1 where the lesson needs 2)."""
import time
from types import SimpleNamespace

from helpers.faults.heartbeat import CutOff


def _run(t_first: float, *events: str):
    log = [{"event": name} for name in events]
    return SimpleNamespace(published=SimpleNamespace(t_first=t_first),
                           pool=SimpleNamespace(snapshot=lambda: list(log)))


def test_the_blocking_run_waits_for_its_window_then_for_the_cuts():
    step = CutOff(8.5)
    twice = ("delivered", "disconnected", "delivered", "disconnected", "delivered")
    assert not step.ends(_run(time.time(), *twice))  # within the window: go on
    assert step.holds(_run(time.time(), *twice))
    late = time.time() - 9.0
    # The window is over, but a slow reconnect has not let the second cut happen yet.
    assert not step.ends(_run(late, "delivered", "disconnected", "delivered"))
    assert step.holds(_run(late, "delivered", "disconnected", "delivered"))
    # Cut twice, but the task not yet delivered again: still going.
    assert not step.ends(_run(late, *twice[:-1]))
    assert step.ends(_run(late, *twice)) and not step.holds(_run(late, *twice))
    assert 8.5 < step.summary(None)["run_s"] < 10
