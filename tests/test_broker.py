"""Broker resolution and connection errors."""
import pytest

from helpers.broker import resolve as broker_mod
from helpers.broker.model import Broker
from helpers.core.connection import connect, mask_url
from helpers.errors import BrokerConnectionError, NoBrokerError


def test_mask_url_hides_the_password():
    assert mask_url("amqp://bob:s3cret@host:5672/%2F") == "amqp://bob:***@host:5672/%2F"
    assert mask_url("amqp://host/") == "amqp://host/"
    assert "s3cret" not in repr(Broker(url="amqp://bob:s3cret@host/"))


def test_no_broker_names_the_ways_to_get_one(monkeypatch):
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.setattr(broker_mod, "find_rabbitmq_server", lambda: None)
    monkeypatch.setattr(broker_mod, "port_open", lambda host, port: False)
    with pytest.raises(NoBrokerError) as info:
        broker_mod.resolve()
    text = str(info.value)
    assert "AMQP_URL" in text and "rabbitmq-server" in text and "docker compose up" in text


def test_amqp_url_wins(monkeypatch):
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@example.invalid:5673/v")
    found = broker_mod.resolve()
    assert found.kind == "external" and not found.can_restart
    assert found.vhost() == "v" and found.management_auth() == ("u", "p")


@pytest.mark.broker
def test_private_node_listens_on_loopback_and_reports_version(broker):
    assert broker.version_tuple() >= (3, 8)
    if broker.kind == "private":
        conf = (broker.state_dir / "rabbitmq.conf").read_text()
        assert "listeners.tcp.1 = 127.0.0.1:" in conf


@pytest.mark.broker
def test_wrong_password_is_one_sentence(broker):
    bad = broker.url.replace("guest:guest", "guest:wrong")
    with pytest.raises(BrokerConnectionError, match="refused the user name or password"):
        connect(bad)


@pytest.mark.broker
def test_unknown_vhost_is_one_sentence(broker):
    bad = broker.url.rsplit("/", 1)[0] + "/no-such-vhost"
    with pytest.raises(BrokerConnectionError, match="virtual host 'no-such-vhost'"):
        connect(bad)


@pytest.mark.broker
def test_second_start_reuses_the_running_node(broker):
    if broker.kind != "private":
        pytest.skip("private node only")
    pid = broker.node_pid()
    again = broker_mod.resolve()
    assert again.start() is False
    assert again.node_pid() == pid and again.url == broker.url


def test_a_pika_failure_is_described_in_words_not_as_a_repr():
    import pika.exceptions as pe

    from helpers.core.connection import describe_error

    closed = pe.ConnectionClosedByBroker(320, "CONNECTION_FORCED - broker forced connection "
                                              "closure with reason 'shutdown'")
    assert describe_error(closed) == ("320 CONNECTION_FORCED - broker forced connection "
                                      "closure with reason 'shutdown'")
    assert describe_error(pe.StreamLostError("Stream connection lost")) == \
        "StreamLostError: Stream connection lost"
    assert describe_error(pe.AMQPConnectionError()) == "AMQPConnectionError"


def test_free_ports_are_bindable_and_below_the_ephemeral_range():
    """Client sockets borrow ephemeral ports by the thousand (TIME-WAIT); a node must not."""
    import socket

    from helpers import procs

    high = min(procs.LISTEN_PORTS[1], procs._ephemeral_start())
    ports = [procs.free_port() for _ in range(20)]
    assert all(procs.LISTEN_PORTS[0] <= p < high for p in ports), ports
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports[0]))
        listener.listen()
        assert not procs.port_bindable(ports[0])
    assert procs.port_bindable(ports[0])


def test_the_series_of_a_private_node_is_read_from_its_servers_path():
    """What decides whether a clean stop first takes out 3.x's management event handler."""
    from pathlib import Path

    from helpers.broker.model import server_major

    assert server_major(Path("/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/sbin/rabbitmq-server")) \
        == 3
    assert server_major(Path("/usr/lib/rabbitmq/lib/rabbitmq_server-4.3.6/sbin/rabbitmq-server")) \
        == 4
    assert server_major(Path("/nowhere/sbin/rabbitmq-server")) is None
