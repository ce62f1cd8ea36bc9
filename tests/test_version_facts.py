"""Every version-dependent fact, measured on the running broker and compared with the row
pinned for its series in ``data/version_facts.json`` (``helpers.broker.version_facts``).

A broker that behaves otherwise than its pinned row fails here, fact by fact; a series with
no row fails once, saying so. What was measured is also written to
``build/version_facts-measured-<series>.json``: the row to pin, after a look, for a new one.
"""
import json

import pytest

from helpers import settings
from helpers.broker import node_control
from helpers.broker import version_facts as vf
from helpers.broker.version_facts_timeout import measure

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Every fact a row pins (the node restart's only where the session may restart its node).
FACTS = ("default_delivery_limit", "metadata_store", "counters_after_reject",
         "counters_after_nack", "counters_after_crash", "counters_after_timeout",
         "past_limit_reject_with_dlx", "past_limit_reject_without_dlx",
         "past_limit_nack_with_dlx", "past_limit_nack_without_dlx",
         *(f"consumer_timeout_{kind}_{where}" for kind in ("classic", "quorum")
           for where in ("node", "policy", "queue-argument", "consumer-argument")),
         "tutorial_loop_on_timeout", "non_durable_queue", "quorum_priority_order",
         "non_durable_after_restart")


@pytest.fixture(scope="module")
def measured(broker):
    """(version, {fact: value}) measured once for this module."""
    if not node_control.can_control(broker):
        pytest.skip("the consumer-timeout facts need rabbitmqctl on a private node")
    version = broker.version()
    facts = measure(broker.url, lambda *a: node_control.ctl(broker, *a),
                    broker.restart if broker.can_restart else None)
    out = settings.CHECKOUT / "build" / f"version_facts-measured-{vf.series(version)}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({vf.series(version): {
        k: {"value": v, "measured_on": version} for k, v in facts.items()}}, indent=2) + "\n")
    return version, facts


def test_the_running_series_has_a_pinned_row(measured):
    version, facts = measured
    assert vf.pinned(version) is not None, (
        f"RabbitMQ {version}: series {vf.series(version)} has no row in "
        f"data/version_facts.json; measured: {json.dumps(facts)}")


@pytest.mark.parametrize("fact", FACTS)
def test_a_fact_holds_as_pinned(measured, fact):
    version, facts = measured
    row = vf.pinned(version)
    if row is None:
        pytest.skip(f"series {vf.series(version)} is not pinned (see the test above)")
    if fact not in facts:
        pytest.skip(f"{fact} needs a node this session may restart")
    assert facts[fact] == row[fact], f"RabbitMQ {version}: {fact}"


def test_broker_status_names_the_version_and_the_pinned_metadata_store(measured, cli):
    version, facts = measured
    proc = cli("broker", "status")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["version"] == version
    assert status["metadata_store"] == facts["metadata_store"] in ("Mnesia", "Khepri")


def test_every_row_pins_every_fact_with_the_version_it_was_measured_on():
    table = json.loads(vf.FACTS_FILE.read_text())
    assert set(table) >= {"3.10", "4.0", "4.3"}
    for key, row in table.items():
        assert set(row) == set(FACTS), key
        assert all(vf.series(cell["measured_on"]) == key for cell in row.values()), key
