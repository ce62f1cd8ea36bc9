"""A private node whose boot fails says why in one sentence, where the cause is a known one.

The stand-in for a machine without ``localhost`` in /etc/hosts is a ``rabbitmq-server`` that
writes what RabbitMQ 3.10.8 wrote there (captured in a mount namespace whose /etc/hosts had
no localhost line) and exits 1, as the real node did: the real /etc/hosts is never touched.
"""
import shutil

import pytest

from helpers.broker.boot_log import known_cause
from helpers.errors import BrokerControlError
from helpers.broker.private_node import PrivateBroker

#: The last line RabbitMQ 3.10.8 wrote to its console when localhost did not resolve.
NXDOMAIN = ('Kernel pid terminated (application_controller) ({application_start_failure,'
            'rabbitmq_prelaunch,{{shutdown,{failed_to_start_child,prelaunch,{epmd_error,'
            '"localhost",nxdomain}}},{rabbit_prelaunch_app,start,[normal,[]]}}})')


def test_an_unresolvable_host_is_named_with_what_to_do():
    sentence = known_cause("boot...\n" + NXDOMAIN + "\n\nCrash dump is being written")
    assert sentence is not None and sentence.count(". ") == 0 and sentence.endswith(".")
    assert "'localhost'" in sentence and "'127.0.0.1 localhost' to /etc/hosts" in sentence
    assert known_cause("{epmd_error,\"box.lan\",nxdomain}").count("'127.0.0.1 box.lan'") == 1
    assert known_cause("Kernel pid terminated (application_controller) (eaddrinuse)") is None


def _stand_in(tmp_path, name: str, line: str):
    server = tmp_path / name / "rabbitmq-server"
    server.parent.mkdir()
    server.write_text(f"#!/bin/sh\necho '{line}'\nexit 1\n")
    server.chmod(0o755)
    return server


@pytest.mark.skipif(shutil.which("epmd") is None, reason="no epmd here (comes with Erlang)")
def test_a_node_that_cannot_resolve_localhost_fails_in_one_sentence(tmp_path):
    state = tmp_path / "state"
    node = PrivateBroker(_stand_in(tmp_path, "nx", NXDOMAIN), state_dir=state, management=False)
    try:
        with pytest.raises(BrokerControlError) as failed:
            node.start()
        assert str(failed.value) == known_cause(NXDOMAIN)
        # A later boot that fails otherwise is not blamed on the earlier one's log lines.
        other = PrivateBroker(_stand_in(tmp_path, "other", "something else broke"),
                              state_dir=state, management=False)
        with pytest.raises(BrokerControlError) as failed:
            other.start()
        assert "nxdomain" not in str(failed.value) and "something else broke" in str(failed.value)
    finally:
        node.stop()
