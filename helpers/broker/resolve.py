"""Which broker to use: ``resolve()``, ``get()`` (started) and ``running()`` (a block).

Resolution order (the same for notebooks, the CLI and the tests):

1. ``AMQP_URL`` is set: use that broker (``kind="external"``). Restarting it is not ours to do.
2. A ``rabbitmq-server`` is installed on this machine (Debian/Ubuntu package, conda-forge,
   Homebrew): run a *private node* from it (``helpers.broker.private_node``), in a state folder of
   this checkout, on free loopback ports, with the management plugin. It is started once and
   reused by every process that asks; ``python -m helpers broker stop`` ends it.
3. Something answers on ``localhost:5672`` (typically ``docker compose up -d``): use it
   (``kind="compose"``), restarting through ``docker compose restart``.
4. None of these: a ``NoBrokerError`` naming the ways to get a broker.
"""
from __future__ import annotations

import contextlib

from helpers import settings
from helpers.broker.model import NO_BROKER_HELP, Broker, ComposeBroker, find_rabbitmq_server, split_credentials
from helpers.errors import NoBrokerError
from helpers.procs import port_open


def resolve() -> Broker:
    """Find the broker to use, without starting anything (see module docstring)."""
    url = settings.amqp_url()
    if url:  # the common case of a worker, whose pool passes AMQP_URL: nothing more to import
        # Only the management API a setting names: guessing port 15672 on the AMQP host
        # finds nothing, or the wrong thing, on many brokers.
        mgmt, credentials = split_credentials(settings.management_url())
        return Broker(url=url, management_url=mgmt, kind="external",
                      management_credentials=credentials)
    server = find_rabbitmq_server()
    if server is not None:
        from helpers.broker.private_node import PrivateBroker

        return PrivateBroker(server)
    if port_open("127.0.0.1", 5672):
        return ComposeBroker(url=settings.COMPOSE_URL,
                             management_url=settings.COMPOSE_MANAGEMENT_URL, kind="compose")
    raise NoBrokerError(NO_BROKER_HELP)


def get(progress=None) -> Broker:
    """Resolve the broker and make sure it is running (starting a private node if needed)."""
    resolved = resolve()
    if resolved.kind == "private":
        resolved.start(progress=progress)
    return resolved


@contextlib.contextmanager
def running(progress=None):
    """Yield a running broker; stop it afterwards only if this block started it."""
    resolved = resolve()
    started = resolved.kind == "private" and resolved.start(progress=progress)
    try:
        yield resolved
    finally:
        if started:
            resolved.stop()

