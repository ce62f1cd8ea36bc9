"""What survives a clean restart and a crash (SIGKILL), per RabbitMQ version: notebook 03's
survival table on the real broker.

Measured on 3.10.8 and 4.0.5 alike: a crash keeps a quorum queue's confirmed messages once
the queue's declaration has reached the disk, about 1 s after it was confirmed; a quorum
queue crashed inside that second comes back empty (see ``settings.SETTLE_S``).
"""
import pytest

from helpers import settings
from helpers.broker import version_facts
from helpers.lessons import durability

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Versions on which the crash inside a quorum queue's first second was measured.
MEASURED = {(3, 10), (4, 0)}


def expected(version: tuple, how: str, settled: bool) -> dict:
    """``survived`` per case for this version, as measured."""
    table = {
        "non-durable queue": "0 (no queue)",
        "durable queue, transient messages": "0/100",
        "durable queue, persistent messages": "100/100",
        "quorum queue": "100/100",
    }
    # A non-durable, non-exclusive queue: allowed or refused, and gone after a restart, as
    # pinned for this series (data/version_facts.json; 4.3.6 still allows it).
    row = version_facts.pinned(".".join(map(str, version)))
    assert row is not None, f"RabbitMQ {version}: no row in data/version_facts.json"
    if row["non_durable_queue"].startswith("refused"):
        table["non-durable queue"] = "-"
    elif row["non_durable_after_restart"] != "gone":
        table["non-durable queue"] = "100/100"  # kept: not measured on any version yet
    if how == "crash" and not settled:
        table["quorum queue"] = "0/100"  # its registration had not reached the disk
    return table


@pytest.mark.parametrize("how, settle_s", [("restart", settings.SETTLE_S),
                                           ("crash", settings.SETTLE_S),
                                           ("crash", 0.0)])
def test_survival_table_per_version(private_broker, how, settle_s, record_property):
    version = private_broker.version_tuple()
    if settle_s == 0 and version[:2] not in MEASURED:
        pytest.skip(f"a crash inside a quorum queue's first second was not measured on "
                    f"RabbitMQ {private_broker.version()}")
    result = durability.survival(durability.SURVIVAL.replace(how=how, settle_s=settle_s),
                                 broker=private_broker)
    survived = dict(result.table["survived"])
    declared_before_s = result.declared_before_s  # None for a clean restart: no wait
    record_property("figures", {"version": private_broker.version(), "how": how,
                                "declared_before_s": declared_before_s and round(declared_before_s, 2)}
                    | survived)
    assert result.restarted
    if how == "crash" and settle_s:
        assert result.declared_before_s >= settle_s
    if how == "crash" and not settle_s and result.declared_before_s > 0.5:
        pytest.skip(f"the crash came {result.declared_before_s:.1f} s after the declarations "
                    "(a loaded machine): too late to land inside the first second")
    assert survived == expected(version, how, settled=how == "restart" or settle_s > 0)
