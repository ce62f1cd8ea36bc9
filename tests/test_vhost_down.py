"""A virtual host that is down, as while a node boots: transient inside a retry window.

While a node starts (or recovers a virtual host) it accepts connections but answers
``541 access to vhost '/' refused ...: vhost '/' is down``; pika reports that as a probable
access error. The tests reach that state on purpose: a virtual host of their own whose
supervisor they stop, then start again, with ``rabbitmqctl`` (so a private node only).
"""
import threading
import time
import uuid

import pika.exceptions as pe
import pytest

from helpers.publish import producer
from helpers.publish.options import PublishOptions
from helpers.core import tasks, topology
from helpers.core.connection import connect, explain_connect_error, refusal_is_final
from helpers.errors import BrokerAuthError, BrokerConnectionError
from helpers.pool.pool import WorkerPool


# -- what pika reports, classified (no broker) ------------------------------------------

def _pika_error(cls, inner: str):
    return cls(inner)  # pika builds these from the repr of what ended the handshake


@pytest.mark.parametrize("cls, inner, final", [
    (pe.ProbableAccessDeniedError, 'ConnectionClosedByBroker: (541) "INTERNAL_ERROR - access '
     "to vhost '/' refused for user 'guest': vhost '/' is down\"", False),
    (pe.ProbableAccessDeniedError, "StreamLostError: (\"Stream connection lost: "
     "ConnectionResetError(104, 'Connection reset by peer')\",)", False),
    (pe.ProbableAuthenticationError, "StreamLostError: (\"Stream connection lost: "
     "ConnectionResetError(104, 'Connection reset by peer')\",)", False),
    (pe.ProbableAccessDeniedError, 'ConnectionClosedByBroker: (530) "NOT_ALLOWED - access to '
     "vhost 'v' refused for user 'guest'\"", True),
    (pe.ProbableAccessDeniedError, 'ConnectionClosedByBroker: (530) "NOT_ALLOWED - vhost v '
     'not found"', True),
    (pe.ProbableAuthenticationError, 'ConnectionClosedByBroker: (403) "ACCESS_REFUSED - Login '
     'was refused using authentication mechanism PLAIN."', True),
])
def test_only_the_brokers_own_refusals_are_final(cls, inner, final):
    exc = _pika_error(cls, inner)
    assert refusal_is_final(exc) is final
    explained = explain_connect_error("amqp://guest:guest@127.0.0.1:1/%2F", exc)
    assert isinstance(explained, BrokerAuthError) is final


# -- the same state on a real node --------------------------------------------------------

@pytest.fixture
def vhost(private_broker):
    """A virtual host of this test, with a ``down()`` and ``up()`` for its supervisor."""
    if not hasattr(private_broker, "rabbitmqctl"):
        pytest.skip("needs rabbitmqctl on the node")
    name = f"test-down-{uuid.uuid4().hex[:6]}"

    def ctl(*args):
        proc = private_broker.rabbitmqctl(*args)
        assert proc.returncode == 0, proc.stderr or proc.stdout
        return proc

    ctl("add_vhost", name)
    ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    class Handle:
        url = private_broker.url.rsplit("/", 1)[0] + "/" + name

        @staticmethod
        def down():
            proc = ctl("eval", f'rabbit_vhost_sup_sup:stop_and_delete_vhost(<<"{name}">>).')
            assert "ok" in proc.stdout, proc.stdout

        @staticmethod
        def up():
            ctl("restart_vhost", "-p", name)

    yield Handle
    private_broker.rabbitmqctl("delete_vhost", name)


@pytest.mark.broker
def test_a_down_vhost_is_a_connection_error_not_a_credentials_error(vhost):
    connect(vhost.url).close()
    vhost.down()
    with pytest.raises(BrokerConnectionError, match="is down") as info:
        connect(vhost.url)
    assert not isinstance(info.value, BrokerAuthError)
    vhost.up()
    connect(vhost.url).close()


@pytest.mark.broker
def test_a_vhost_the_user_may_not_use_stays_a_credentials_error(private_broker):
    name = f"test-noperm-{uuid.uuid4().hex[:6]}"
    assert private_broker.rabbitmqctl("add_vhost", name).returncode == 0
    try:
        with pytest.raises(BrokerAuthError, match=f"virtual host '{name}'"):
            connect(private_broker.url.rsplit("/", 1)[0] + "/" + name)
    finally:
        private_broker.rabbitmqctl("delete_vhost", name)


@pytest.mark.broker
def test_producer_waits_out_a_down_vhost_inside_its_retry_window(vhost):
    spec = topology.QueueSpec(f"test-down-{uuid.uuid4().hex[:6]}", dead_letter=False)
    vhost.down()
    # Outside a retry window the producer says what happened, in one sentence, at once.
    with pytest.raises(BrokerConnectionError, match="is down") as info:
        producer.publish(vhost.url, spec, tasks.equal(5, 0))
    assert not isinstance(info.value, BrokerAuthError)
    # Inside one it keeps trying, and publishes everything once the vhost is back.
    out: dict = {}

    def publish():
        try:
            out["result"] = producer.publish(vhost.url, spec, tasks.equal(50, 0),
                                             PublishOptions(retry_for=60))
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            out["error"] = exc

    thread = threading.Thread(target=publish)
    thread.start()
    time.sleep(2)
    # Done already: only right if it published everything (the broker may have brought the
    # vhost back by itself meanwhile); an error is the producer giving up.
    assert "error" not in out, f"the producer gave up on a down vhost: {out.get('error')!r}"
    if thread.is_alive():
        vhost.up()
    thread.join(60)
    assert "error" not in out, f"the producer gave up on a down vhost: {out.get('error')!r}"
    result = out["result"]
    assert len(result.confirmed) == 50 and not result.unconfirmed, result.error
    assert result.reconnects >= 1


@pytest.mark.broker
def test_worker_and_pool_wait_out_a_down_vhost(vhost):
    spec = topology.QueueSpec(f"test-down-{uuid.uuid4().hex[:6]}", dead_letter=False)
    vhost.down()
    with WorkerPool(vhost.url, spec) as pool:
        (handle,) = pool.start(1, wait=False)
        time.sleep(3)
        assert handle.alive and handle.ready_t is None, handle.stderr
        vhost.up()
        pool.start(1, timeout=60)  # a second worker, once the vhost is back
        assert pool.wait_for(lambda p: p.workers[handle.name].ready_t is not None, 30)
        producer.publish(vhost.url, spec, tasks.equal(6, 0))
        assert pool.wait_for(lambda p: sum(p.finished.values()) >= 6, 30)
        assert handle.alive, handle.stderr
