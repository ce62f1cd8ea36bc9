"""Notebook 02's forgotten ack, on the session's broker: the figures it draws and waits on
are exact, and the management view beside them refreshes at the quorum tick the private node
sets (``settings.QUORUM_TICK_MS``, written as ``rabbit.quorum_tick_interval``), measured."""
import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import settings  # noqa: E402
from helpers.broker import management  # noqa: E402
from helpers.lessons import forgotten_ack  # noqa: E402
from helpers.measure import monitor  # noqa: E402

pytestmark = pytest.mark.broker


def test_the_exact_figures_hold_every_message_then_give_them_back(broker):
    result = forgotten_ack.forgotten_ack(
        forgotten_ack.FORGOTTEN.replace(backlog=10, more=20, rate=5.0), broker=broker)
    s = result.summary
    assert s["finished_by_the_worker"] == 30 and s["peak_unacknowledged"] == 30
    assert s["ready_after_stop"] == 30
    running = result.samples[(result.samples["t_s"] > result.arrived_s)
                             & (result.samples["t_s"] < result.stopped_s)]
    assert (running["messages_ready"] == 0).all(), running
    assert running["messages_unacknowledged"].iloc[-1] == 30
    said = str(forgotten_ack.answer(result))
    assert "finished 30 of 30 tasks and acked 0" in said and "After the stop: 30 ready" in said
    if not management.answers(broker) or not hasattr(broker, "rabbitmqctl"):
        return  # the management view, and the tick we set, exist on the private node only
    gaps = s["management_refresh_gaps_s"]
    print(f"management view changed after {gaps} s (quorum tick {settings.QUORUM_TICK_MS} ms)")
    # Tasks arrive for 4 s, so the counts change at every tick for about four ticks (then
    # stay still until the stop: one long gap, which the median leaves aside). The node
    # publishes them every QUORUM_TICK_MS (RabbitMQ's default, 5000, would leave one gap of
    # about 5 s); sampled every 0.1 s, the management API adds jitter.
    assert len(gaps) >= 3, gaps
    assert abs(s["management_refresh_observed_s"] - settings.QUORUM_TICK_MS / 1000) < 0.35


def test_refresh_gaps_are_the_times_between_changes():
    frame = pd.DataFrame({"t_s": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0],
                          "messages_ready": [0, 0, 5, 5, 6, 6],
                          "messages_unacknowledged": [0, 0, 0, 0, 0, 2]})
    assert monitor.refresh_gaps_s(frame) == [1.0, 1.0]
    assert monitor.refresh_gaps_s(frame, start_s=1.5) == [1.0]
