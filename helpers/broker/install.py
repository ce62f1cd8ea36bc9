"""Make sure a RabbitMQ broker can be had before ``make run``, ``make test`` or ``make lab``.

``python -m helpers.broker.install`` does one of three things, in this order:

1. a broker resolves (``AMQP_URL``, an installed ``rabbitmq-server``, something on
   ``localhost:5672``): nothing, silently;
2. the system's package manager can install ``rabbitmq-server`` without asking anyone
   (root or password-less sudo with apt-get or dnf; Homebrew on macOS): it says so in one
   line and installs it, without leaving a system-wide broker running (the project runs
   its own private node);
3. otherwise: the one sentence naming the ways to get a broker, exit status 2.

Standard library only: make runs this with the system's Python before the virtual
environment exists, so a machine with no way to a broker hears so within seconds.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers import settings
from helpers.broker.model import NO_BROKER_HELP, find_rabbitmq_server
from helpers.broker.resolve import resolve
from helpers.errors import HelpersError, NoBrokerError

#: Debian's hook that invoke-rc.d asks before starting a service; 101 means "do not".
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
#: What the policy says while we install: no service may start.
DENY_ALL = "#!/bin/sh\n# Written by helpers.broker.install: no service starts during this install.\nexit 101\n"
#: Where the package manager's output goes (shown in part when it fails).
LOG_FILE = settings.STATE_DIR / "install.log"
#: How long a password-less sudo may take to say yes (seconds).
SUDO_PROBE_S = 3.0


@dataclass
class Plan:
    """How this machine can install rabbitmq-server without a question."""

    manager: str                 # apt-get | dnf | brew
    sudo: list[str] = field(default_factory=list)  # [] as root or with brew, else ["sudo", "-n"]

    def commands(self) -> list[list[str]]:
        """The commands that install the package, in order."""
        if self.manager == "apt-get":
            return [[*self.sudo, "apt-get", "update", "-q"],
                    [*self.sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                     "rabbitmq-server"]]
        if self.manager == "dnf":
            return [[*self.sudo, "dnf", "install", "-y", "-q", "rabbitmq-server"]]
        return [["brew", "install", "rabbitmq"]]

    def describe(self) -> str:
        """The one line said before installing."""
        who = " (sudo -n)" if self.sudo else ""
        held = ("; a policy-rc.d keeps its system service from starting"
                if self.manager == "apt-get" else "")
        return (f"No RabbitMQ broker found: installing rabbitmq-server with "
                f"{self.manager}{who} (about a minute){held}; the project runs its own "
                f"private node.")


def broker_resolves() -> bool:
    """True when a broker can be found without installing anything."""
    try:
        resolve()
    except NoBrokerError:
        return False
    return True


def _passwordless_sudo() -> list[str] | None:
    if not shutil.which("sudo"):
        return None
    try:
        probe = subprocess.run(["sudo", "-n", "true"], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=SUDO_PROBE_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return ["sudo", "-n"] if probe.returncode == 0 else None


def plan() -> Plan | None:
    """The way to install rabbitmq-server here without asking anyone, or None."""
    if platform.system() == "Darwin":
        return Plan("brew") if shutil.which("brew") else None
    manager = next((m for m in ("apt-get", "dnf") if shutil.which(m)), None)
    if manager is None:
        return None
    if os.geteuid() == 0:
        return Plan(manager)
    sudo = _passwordless_sudo()
    return Plan(manager, sudo) if sudo else None


def _run(cmd: list[str], log, env: dict) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                          env=env)
    if proc.returncode != 0:
        raise HelpersError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {_log_tail()} "
            f"See {LOG_FILE}, or get a broker another way: {NO_BROKER_HELP}")


def _log_tail(lines: int = 2) -> str:
    try:
        text = LOG_FILE.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _as_root(sudo: list[str], *cmd: str, stdin: str | None = None) -> None:
    subprocess.run([*sudo, *cmd], input=stdin, text=True, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class _NoServiceStarts:
    """Deny every service start (policy-rc.d exit 101) for the block; restore after.

    A policy that was there before (container images ship one) is put back as it was.
    """

    def __init__(self, sudo: list[str], path: Path | None = None):
        self.sudo, self.path = sudo, path or POLICY_RC_D
        self.backup = self.path.with_name(self.path.name + ".helpers-saved")

    def __enter__(self):
        if self.path.exists():
            _as_root(self.sudo, "mv", str(self.path), str(self.backup))
        try:
            _as_root(self.sudo, "sh", "-c", f'cat > "{self.path}" && chmod 755 "{self.path}"',
                     stdin=DENY_ALL)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        _as_root(self.sudo, "rm", "-f", str(self.path))
        if self.backup.exists():
            _as_root(self.sudo, "mv", str(self.backup), str(self.path))


def install(how: Plan) -> float:
    """Install rabbitmq-server as ``how`` says; return the seconds it took."""
    started = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG_FILE, "w") as log:
        if how.manager == "apt-get":
            with _NoServiceStarts(how.sudo):
                for cmd in how.commands():
                    _run(cmd, log, env)
        else:  # dnf and brew install without starting the service
            for cmd in how.commands():
                _run(cmd, log, env)
    if find_rabbitmq_server() is None:
        raise HelpersError(f"{how.manager} installed rabbitmq-server, but no rabbitmq-server "
                           f"script was found afterwards; set RABBITMQ_SERVER to its path.")
    return time.monotonic() - started


def ensure(dry_run: bool = False, out=print) -> int:
    """Make sure a broker can be had; return an exit status (0 ready, 2 not)."""
    if broker_resolves():
        return 0
    how = plan()
    if how is None:
        out(NO_BROKER_HELP, file=sys.stderr)
        return 2
    out(how.describe(), file=sys.stderr)
    if dry_run:
        out("would run: " + "; ".join(" ".join(c) for c in how.commands()), file=sys.stderr)
        return 0
    try:
        took = install(how)
    except (HelpersError, subprocess.CalledProcessError) as exc:
        detail = exc if isinstance(exc, HelpersError) else (exc.stderr or "").strip()
        out(f"Installing rabbitmq-server failed: {detail}", file=sys.stderr)
        return 2
    out(f"installed {find_rabbitmq_server()} in {took:.0f} s (log: {LOG_FILE}).",
        file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m helpers.broker.install``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.broker.install", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be installed, install nothing")
    return ensure(dry_run=parser.parse_args(argv).dry_run)


if __name__ == "__main__":
    sys.exit(main())
