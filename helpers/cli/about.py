"""``python -m helpers --version``: this package's version, and the broker's when it runs.

Nothing is started to answer: the broker is resolved as every command resolves it
(``helpers.broker.resolve``), and asked for its version only when something already
listens on its AMQP port (a check of 0.3 s at most when nothing does).
"""
from __future__ import annotations

import argparse
import platform
import sys
import urllib.parse

#: the distribution's name in pyproject.toml
DISTRIBUTION = "rabbitmq-work-queues"


def package_version() -> str:
    """The installed distribution's version (the source's ``helpers.__version__`` without
    an installation)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        import helpers
        return helpers.__version__


def broker_line(prog: str) -> str:
    """One line on the resolved broker: its RabbitMQ version, or why there is none."""
    from helpers.broker import resolve
    from helpers.core.connection import mask_url, url_list
    from helpers.errors import HelpersError
    from helpers.procs import port_open

    try:
        found = resolve.resolve()
    except HelpersError as exc:
        return f"broker: none found ({str(exc).splitlines()[0]})"
    where = f"{found.kind} broker"
    try:
        url = url_list(found.url)[0]
        parts = urllib.parse.urlsplit(url)
        listening = bool(parts.port) and port_open(parts.hostname or "127.0.0.1", parts.port)
        if not listening and found.kind == "private":
            return (f"broker: the private node of this checkout, not running (`{prog} broker "
                    "start` starts it)")
        if not listening:
            return f"broker: {where} at {mask_url(url)}, not answering"
        return f"broker: {where} at {mask_url(url)}, RabbitMQ {found.version()}"
    except HelpersError as exc:
        return f"broker: {where}, no answer ({exc})"


def versions(prog: str) -> str:
    """What ``--version`` prints."""
    return (f"{DISTRIBUTION} {package_version()} ({prog}), Python "
            f"{platform.python_version()}\n{broker_line(prog)}")


class VersionAction(argparse.Action):
    """``--version``: print ``versions`` and exit 0, before any command is required."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(versions(parser.prog))
        sys.stdout.flush()
        parser.exit(0)
