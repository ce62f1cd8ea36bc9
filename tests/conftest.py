"""Shared fixtures: one real broker per test session, a unique queue per test.

Without any broker the broker tests skip on a laptop but fail under ``CI=true``.
A private node started by this session is stopped when the session ends.
"""
from __future__ import annotations

import os
import uuid

import pytest

from helpers import broker as broker_mod
from helpers import topology
from helpers.errors import HelpersError

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
        yield found
    finally:
        context.__exit__(None, None, None)


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
    """A fresh queue spec named after the test; deleted afterwards."""
    name = f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    spec = topology.QueueSpec(name)
    yield spec
    try:
        with broker_mod.connect(broker.url, name=f"cleanup {name}") as conn:
            topology.delete(conn.channel(), spec)
    except HelpersError:
        pass


@pytest.fixture
def channel(broker, request):
    """A channel on a connection named after the test."""
    conn = broker_mod.connect(broker.url, name=f"test {request.node.name}")
    yield conn.channel()
    if conn.is_open:
        conn.close()


def pytest_collection_modifyitems(items):
    for item in items:  # carry fixture names onto the reports, for the summary below
        item.user_properties.append(("fixtures", tuple(item.fixturenames)))


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
            where = f"{found.kind} broker {broker_mod.mask_url(found.url)}"
        except HelpersError:
            where = "a broker"
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
