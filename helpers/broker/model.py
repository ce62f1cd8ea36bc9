"""The one interface every kind of broker has: ``Broker``, and the docker compose kind.

Every kind answers the same calls: ``start()`` (True when this call started it), ``stop()``
(True when it was running), ``restart()``, ``crash()``, ``status()``, ``version()``; a
broker that is not ours to control says so in one sentence (``BrokerControlError``).
``helpers.broker.resolve`` decides which one to use; ``helpers.broker.private_node`` is
the kind this checkout runs itself.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from helpers import settings
from helpers.core.connection import can_connect, connect, mask_url, url_list
from helpers.errors import BrokerControlError
from helpers.procs import wait_until

NO_BROKER_HELP = (
    "No RabbitMQ broker found: set AMQP_URL to a running broker, or install rabbitmq-server "
    "(`apt-get install rabbitmq-server`, or `conda env create -f environment.yml`) so a private "
    "node can be started, or run `docker compose up -d` in this folder."
)


@dataclass
class Broker:
    """A resolved broker: its AMQP URL, management URL and what we may do to it."""

    url: str
    #: the management HTTP API, without credentials; None: none known (figures over AMQP)
    management_url: str | None = None
    kind: str = "external"  # external | private | compose
    #: the management API's own user and password, when they differ from the AMQP URL's
    management_credentials: tuple[str, str] | None = None

    @property
    def can_restart(self) -> bool:
        """True when this process may stop/restart/crash the broker."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, url={mask_url(self.url)!r})"

    def describe(self) -> str:
        """One line for people: kind, masked URL, server version."""
        return f"{self.kind} broker at {mask_url(self.url)} (RabbitMQ {self.version()})"

    def version(self) -> str:
        """The server's RabbitMQ version, as it reports it on connect."""
        conn = connect(self.url, name="helpers-version")
        try:
            props = conn._impl.server_properties  # pika keeps the Connection.Start properties
            version = props.get("version", b"?")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            conn.close()

    def version_tuple(self) -> tuple[int, ...]:
        """``version()`` as integers, for comparisons such as ``>= (4, 3)``."""
        out = []
        for piece in self.version().split("."):
            digits = "".join(ch for ch in piece if ch.isdigit())
            out.append(int(digits) if digits else 0)
        return tuple(out)

    def management_auth(self) -> tuple[str, str]:
        """User and password for the management HTTP API (by default those of the AMQP URL)."""
        if self.management_credentials:
            return self.management_credentials
        parts = urllib.parse.urlsplit(url_list(self.url)[0])  # a cluster's: of its first node
        return (urllib.parse.unquote(parts.username or "guest"),
                urllib.parse.unquote(parts.password or "guest"))

    def vhost(self) -> str:
        """The virtual host of the AMQP URL (``/`` by default)."""
        path = urllib.parse.urlsplit(url_list(self.url)[0]).path
        return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"

    def _refuse(self, action: str):
        raise BrokerControlError(
            f"Cannot {action} the {self.kind} broker at {mask_url(self.url)} from here: "
            "it was not started by helpers (unset AMQP_URL to use a private node).")

    def start(self, progress=None) -> bool:
        """Start the broker unless it runs; True when this call started it."""
        self._refuse("start")

    def stop(self) -> bool:
        """Stop the broker cleanly; True when it was running."""
        self._refuse("stop")

    def restart(self) -> None:
        """Stop cleanly and start again, keeping node name and data."""
        self._refuse("restart")

    def crash(self) -> None:
        """Kill the broker's node abruptly (SIGKILL), as a power cut would, then start it."""
        self._refuse("crash")

    def status(self) -> dict:
        """A small dict describing the broker; ``running`` tells whether AMQP answers."""
        return {"kind": self.kind, "url": mask_url(self.url),
                "management_url": self.management_url,
                "running": can_connect(self.url)}


class ComposeBroker(Broker):
    """The docker-compose service of this checkout, on localhost:5672."""

    @property
    def can_restart(self) -> bool:
        return shutil.which("docker") is not None and settings.COMPOSE_FILE.exists()

    def _compose(self, *args: str) -> None:
        if not self.can_restart:
            self._refuse(args[0])
        proc = subprocess.run(["docker", "compose", *args], cwd=settings.COMPOSE_FILE.parent,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise BrokerControlError(f"`docker compose {' '.join(args)}` failed ({last}): "
                                     "check that Docker runs and try the command by hand.")

    def _wait_ready(self) -> None:
        if not wait_until(lambda: can_connect(self.url), settings.BOOT_TIMEOUT_S, 0.2):
            raise BrokerControlError(
                "The compose broker did not accept AMQP connections within "
                f"{settings.BOOT_TIMEOUT_S:.0f} s: see `docker compose logs rabbitmq`.")

    def start(self, progress=None) -> bool:
        if can_connect(self.url):
            return False
        if progress:
            progress("starting the compose broker ...")
        self._compose("start", "rabbitmq")
        self._wait_ready()
        return True

    def stop(self) -> bool:
        was_running = can_connect(self.url)
        self._compose("stop", "rabbitmq")
        return was_running

    def restart(self) -> None:
        self._compose("restart", "rabbitmq")
        self._wait_ready()

    def crash(self) -> None:
        self._compose("kill", "rabbitmq")
        self.start()


def find_rabbitmq_server() -> Path | None:
    """Path of a ``rabbitmq-server`` start script that runs as the current user, if any."""
    candidates = []
    if settings.rabbitmq_server():
        candidates.append(Path(settings.rabbitmq_server()))
    if os.environ.get("CONDA_PREFIX"):  # an activated conda env, not one of our settings
        prefix = Path(os.environ["CONDA_PREFIX"])
        candidates += [prefix / "bin" / "rabbitmq-server", prefix / "sbin" / "rabbitmq-server"]
    # Debian/Ubuntu: /usr/sbin/rabbitmq-server is a wrapper that switches user; this is the script.
    candidates.append(Path("/usr/lib/rabbitmq/bin/rabbitmq-server"))
    on_path = shutil.which("rabbitmq-server")
    if on_path:
        candidates.append(Path(on_path))
    candidates += [Path("/opt/homebrew/sbin/rabbitmq-server"),
                   Path("/usr/local/sbin/rabbitmq-server")]
    for path in candidates:
        if not path.exists():
            continue
        real = path.resolve()
        if real.name == "rabbitmq-script-wrapper":
            real = real.with_name("rabbitmq-server")
        if real.exists() and os.access(real, os.X_OK):
            return real
    return None


def split_credentials(url: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """``http://user:pw@host:port`` -> ``("http://host:port", ("user", "pw"))``."""
    if not url:
        return None, None
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return (urllib.parse.urlunsplit(parts._replace(netloc=netloc)),
            (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")))


def server_major(server: Path) -> int | None:
    """The major version of the RabbitMQ a start script belongs to, from its install path."""
    found = re.search(r"rabbitmq[_-]server-(\d+)\.", str(server))
    if not found:
        plugins = sorted(server.parent.parent.glob("plugins/rabbit-[0-9]*"))
        found = re.search(r"rabbit-(\d+)\.", plugins[-1].name) if plugins else None
    return int(found.group(1)) if found else None
