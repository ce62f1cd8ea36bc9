"""Shared fixtures: one real broker per test session, a unique queue per test.

Without any broker the broker tests skip on a laptop but fail under ``CI=true``.
A private node started by this session is stopped when the session ends; so is the second
node without management plugin (``bare_node``) that some tests start, and the three-node
cluster (``three_nodes``) the cluster tests share.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from helpers.broker import resolve as broker_mod
from helpers.broker.model import find_rabbitmq_server
from helpers.broker import dead_letter
from helpers.core import topology
from helpers.core.connection import connect, mask_url
from helpers.errors import HelpersError
from helpers.broker.private_node import PrivateBroker
from support import IN_CI, PHASES

#: The session broker's RabbitMQ version, read while it runs, for the closing summary line.
_SESSION = {}


def _cli(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run ``python -m helpers ARGS`` with ``env`` added to this environment."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


def _one_sentence(proc, *fragments) -> None:
    """Assert ``proc`` failed with one ``error:`` line, last on stderr, no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0]), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr


@pytest.fixture(scope="session")
def cli():
    """``cli(*args, env=None, timeout=120)``: run the command line, return the process."""
    return _cli


@pytest.fixture(scope="session")
def one_sentence():
    """``one_sentence(proc, *fragments)``: the CLI failed with one sentence naming them."""
    return _one_sentence


@pytest.fixture(scope="session")
def three_nodes(tmp_path_factory):
    """A private three-node cluster in a temporary folder (never the checkout's own
    ``.broker/cluster``), shared by tests/test_cluster*.py: one boot per session. Not started
    here: each test starts what it needs (``start`` boots only the nodes that are down)."""
    from helpers.broker.cluster import PrivateCluster
    from helpers.errors import NoBrokerError

    try:
        found = PrivateCluster(3, state_dir=tmp_path_factory.mktemp("cluster"))
    except NoBrokerError as exc:
        if IN_CI:
            pytest.fail(f"CI needs rabbitmq-server for the cluster tests: {exc}")
        pytest.skip(f"no rabbitmq-server here: {exc}")
    try:
        yield found
    finally:
        found.stop(reset=True)


@pytest.fixture(scope="session")
def broker():
    """The resolved broker, running for the whole session."""
    try:
        context = broker_mod.running()
        found = context.__enter__()
    except HelpersError as exc:
        if IN_CI:
            pytest.fail(f"CI needs a broker: {exc}")
        pytest.skip(f"no RabbitMQ broker here: {exc}")
    try:
        with contextlib.suppress(HelpersError):  # an unreachable broker fails its tests, not this
            _SESSION["version"] = found.version()
        yield found
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def bare_node(broker, tmp_path_factory):
    """A second RabbitMQ node without the management plugin, for this session only."""
    server = find_rabbitmq_server()
    if server is None:
        if IN_CI:
            pytest.fail("CI needs rabbitmq-server installed to start a second node")
        pytest.skip("no rabbitmq-server here to start a second node from")
    node = PrivateBroker(server, state_dir=tmp_path_factory.mktemp("bare-node"),
                         management=False)
    try:
        node.start()
    except HelpersError as exc:
        node.stop()
        pytest.fail(f"the second node did not start: {exc}")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def private_broker(broker):
    """The broker, when this session may restart it (a private node); skip otherwise."""
    if not broker.can_restart:
        if IN_CI:
            pytest.fail("CI needs a restartable private broker")
        pytest.skip("the broker in use cannot be restarted from here")
    return broker


@pytest.fixture
def queue(request, broker):
    """A fresh queue spec named after the test (its dead-lettering settled); deleted after."""
    name = f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    spec = dead_letter.prepare(broker, topology.QueueSpec(name))
    yield spec
    topology.discard(broker.url, spec)


@pytest.fixture
def channel(broker, request):
    """A channel on a connection named after the test."""
    conn = connect(broker.url, name=f"test {request.node.name}")
    yield conn.channel()
    if conn.is_open:
        conn.close()


def pytest_configure(config):
    """A SIGTERM (a CI runner's or a user's kill) ends the run as Ctrl-C does: pytest then
    tears the fixtures down, so JupyterLab, kernels, workers and nodes they started end too."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Note the phase's outcome on the item (``PHASES``)."""
    report = (yield).get_result()
    item.stash.setdefault(PHASES, {})[report.when] = report.outcome


def pytest_collection_modifyitems(items):
    for item in items:  # carry fixture names onto the reports, for the summary below
        item.user_properties.append(("fixtures", tuple(item.fixturenames)))
        # Whatever uses the broker is broker-facing: `-m broker` (CI on RabbitMQ 4) runs it.
        if "broker" in item.fixturenames and not item.get_closest_marker("broker"):
            item.add_marker(pytest.mark.broker)


def pytest_terminal_summary(terminalreporter):
    """Say how many tests ran against a real broker, and which one."""
    counts: dict[str, int] = {}
    for rep in terminalreporter.getreports("passed") + terminalreporter.getreports("failed"):
        fixtures = dict(rep.user_properties).get("fixtures", ())
        if rep.when == "call" and "broker" in fixtures:
            counts[rep.outcome] = counts.get(rep.outcome, 0) + 1
    if counts:
        try:
            found = broker_mod.resolve()
            where = f"{found.kind} broker {mask_url(found.url)}"
        except HelpersError:
            where = "a broker"
        if _SESSION.get("version"):
            where += f" (RabbitMQ {_SESSION['version']})"
        terminalreporter.write_line(
            f"real-broker tests on {where}: " +
            ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
    _print_figures(terminalreporter)


def _print_figures(terminalreporter) -> None:
    """Print what the fault tests measured (``record_property("figures", {...})``)."""
    lines = []
    for rep in terminalreporter.getreports("passed") + terminalreporter.getreports("failed"):
        figures = dict(rep.user_properties).get("figures")
        if rep.when == "call" and figures:
            values = ", ".join(f"{k} {v}" for k, v in figures.items())
            lines.append(f"{rep.nodeid.split('::')[-1]} [{rep.outcome}]: {values}")
    if lines:
        terminalreporter.section("guarantees: figures measured by this run", sep="-")
        for line in lines:
            terminalreporter.write_line(line)
