"""What a quorum queue does when nodes of a three-node cluster are lost, measured on the
session's private cluster (``three_nodes``) by ``helpers.broker.cluster_facts`` and compared
with the row pinned for its series in ``data/version_facts.json``.

Measured once for the module (70 s on 3.10 and 4.0, 100 s on 4.3, the cluster's boot
included: four node kills and restarts, declarations waited for up to
``cluster_facts.WAIT_S`` with the majority down); every node runs again afterwards, for
tests/test_cluster_lesson.py. What was measured is also written to
``build/cluster_facts-measured-<series>.json``, and its seconds are printed with the run's
figures.
"""
import json

import pytest

from helpers import settings
from helpers.broker import cluster_facts as cf
from helpers.broker import version_facts as vf

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture(scope="module")
def measured(three_nodes):
    """(version, {fact: value}, {figure: seconds}) measured once for this module."""
    three_nodes.start()
    version = vf.server_version(three_nodes.urls()[0])
    figures: dict = {}
    facts = cf.measure(three_nodes, figures)
    out = settings.CHECKOUT / "build" / f"cluster_facts-measured-{vf.series(version)}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({vf.series(version): {
        k: {"value": v, "measured_on": version} for k, v in facts.items()}}, indent=2) + "\n")
    return version, facts, figures


def test_the_running_series_pins_every_cluster_fact(measured, record_property):
    version, facts, figures = measured
    record_property("figures", {"RabbitMQ": version, **figures})
    row = vf.pinned(version) or {}
    assert set(cf.FACTS) <= set(row), (
        f"RabbitMQ {version}: series {vf.series(version)} does not pin every cluster fact in "
        f"data/version_facts.json; measured: {json.dumps(facts)}")


@pytest.mark.parametrize("fact", cf.FACTS)
def test_a_cluster_fact_holds_as_pinned(measured, fact):
    version, facts, figures = measured
    row = vf.pinned(version) or {}
    if fact not in row:
        pytest.skip(f"series {vf.series(version)} does not pin {fact} (see the test above)")
    assert facts[fact] == row[fact], f"RabbitMQ {version}: {fact} (seconds: {figures})"


def test_every_node_runs_again_after_the_probes(measured, three_nodes):
    assert three_nodes.running_nodes() == three_nodes.names
