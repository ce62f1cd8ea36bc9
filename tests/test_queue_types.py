"""Where quorum and classic queues dispatch differently, pinned per RabbitMQ version.

Notebook 04 shows ``queue_types.differences`` for the broker that runs; this holds it to what
was measured on 3.10.8 and 4.0.5, so a new version that changes either shows up here.
"""
import pytest

from helpers.lessons import queue_types

pytestmark = pytest.mark.broker


def test_prefetch_0_and_delivery_counts_by_queue_type(broker):
    table = queue_types.differences(broker)
    held, counts = table.index
    assert table.loc[held, "classic queue"] == queue_types.UNLIMITED_PROBE  # no limit at all
    assert table.loc[held, "quorum queue"] == 2000  # a quorum queue's "unlimited"
    assert table.loc[counts, "classic queue"] == "-, -, -"
    first = "-" if broker.version_tuple() >= (4, 0) else "0"  # 4.0 leaves it off the first
    assert table.loc[counts, "quorum queue"] == f"{first}, 1, 2"
