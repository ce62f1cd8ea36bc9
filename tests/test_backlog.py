"""Notebook 04's backlog: what is drawn is exact, and how late the management figures were
is measured, not assumed (the arithmetic on made-up runs without a broker; one real run)."""
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers.lessons import backlog, mgmt_lag  # noqa: E402


def _made_up(lag_s: float = 1.5, tick_s: float = 5.0, ctl=()):
    """A queue whose ready count climbs 0.1 s by 0.1 s to 40 at 4 s, then drains to 0 at 8 s;
    the management API shows it ``lag_s`` late, refreshed every ``tick_s``."""
    t = np.round(np.arange(0, 14, 0.1), 2)
    ready = np.where(t <= 4, t * 10, np.clip(80 - t * 10, 0, None)).round().astype(int)
    exact = pd.DataFrame({"t_s": t, "ready": ready})
    seen = np.floor(np.clip(t - lag_s, 0, None) / tick_s) * tick_s  # the last tick before
    shown = np.interp(seen, t, ready).round().astype(int)
    mgmt = pd.DataFrame({"t_s": t, "messages_ready": shown, "messages_unacknowledged": 0,
                         "consumers": 1})
    deliveries = pd.DataFrame({"delivered_t": [100.5, 101.0, 101.2],
                               "acked_t": [101.5, 101.6, np.nan]})
    return backlog.BacklogResult(mgmt, exact, deliveries, {}, "management", list(ctl), 100.0)


def test_the_refresh_is_what_the_figures_did():
    result = _made_up(tick_s=5.0, lag_s=0.0)
    assert mgmt_lag.refresh_s(result) == [5.0, 10.0]  # when the shown figure changed
    assert mgmt_lag.refresh_interval_s(result) == 5.0
    assert mgmt_lag.refresh_interval_s(_made_up(tick_s=2.0, lag_s=0.0)) == 2.0


def test_the_lag_is_measured_or_said_to_be_beyond_the_search():
    lag = mgmt_lag.management_lag_s(_made_up(lag_s=1.5, tick_s=0.1))
    assert lag == pytest.approx(1.5, abs=0.15)
    beyond = mgmt_lag.management_lag_s(_made_up(lag_s=1.5, tick_s=0.1), longest_s=1.0)
    assert math.isinf(beyond)  # the 1 s cap is not a measurement
    assert "more than the 12 s" not in mgmt_lag.lag_sentence(_made_up(lag_s=1.5, tick_s=0.1))


def test_rabbitmqctl_is_late_only_when_it_said_what_the_queue_did_not_hold():
    result = _made_up(ctl=[{"asked_s": 2.0, "answered_s": 3.0, "ready": 25, "unacked": 0},
                           {"asked_s": 9.0, "answered_s": 10.5, "ready": 30, "unacked": 0}])
    during, after = mgmt_lag.ctl_against_exact(result)
    assert (during["exact_low"], during["exact_high"], during["late"]) == (20, 30, False)
    assert (after["exact_low"], after["exact_high"], after["late"]) == (0, 0, True)
    said = mgmt_lag.lag_sentence(result)
    assert "within the exact count" in said and "did not hold then" in said


def test_the_unacked_line_comes_from_the_events():
    held = mgmt_lag.held_by_workers(_made_up())
    assert list(held["unacked"]) == [0, 1, 2, 3, 2, 1]  # delivered +1, acked -1, in time order
    assert list(held["t_s"].round(2)) == [0.0, 0.5, 1.0, 1.2, 1.5, 1.6]


@pytest.mark.broker
def test_a_backlog_run_draws_exact_counts_and_times_the_management_view(broker):
    result = backlog.backlog(backlog.BACKLOG.replace(workers=1, add_workers=1, rate=10,
                                                     seconds=1.5, duration=0.2,
                                                     add_after_s=0.8), broker=broker)
    s = result.summary
    assert s["completed"] == s["published"] == s["confirmed"] == 15
    held = mgmt_lag.held_by_workers(result)
    # prefetch 1: never more in the workers' hands than there are workers
    assert held["unacked"].max() <= s["workers_before"] + s["workers_added"]
    assert held["unacked"].iloc[-1] == 0 and result.ready["ready"].max() >= 3
    if hasattr(broker, "rabbitmqctl"):  # a private node: asked mid-run and at the end
        assert len(result.ctl) == 2
        assert all(c["asked_s"] < c["answered_s"] for c in result.ctl)
    table = backlog.backlog_table(result)["value"]
    assert "AMQP" in table["solid lines from"] and "events" in table["solid lines from"]
    if result.source == "management":
        assert table["dotted lines from"].startswith("the management API")
        # a backlog shorter than the queue's tick may never show there: the sentence says so
        changes = mgmt_lag.refresh_s(result)
        assert f"changed {len(changes)} times" in mgmt_lag.lag_sentence(result)
