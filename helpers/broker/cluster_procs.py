"""Processes behind a private cluster: the server's version and settings, parallel steps, ending
a process.

Kept apart from ``cluster.py`` (what a cluster is and does) as plumbing. Ports come from
``procs.free_port`` and the shared epmd from ``private_node.start_epmd``, as for one node.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from pathlib import Path

from helpers.errors import BrokerControlError
from helpers.broker.private_node import PrivateBroker
from helpers.procs import pid_alive, wait_gone


@functools.lru_cache(maxsize=None)
def knows_setting(server: Path, key: str) -> bool:
    """True when the RabbitMQ of a start script takes ``key`` in ``rabbitmq.conf`` (its
    ``rabbit.schema`` maps it): a key it does not know stops the node at boot."""
    for schema in Path(server).parent.parent.glob("plugins/rabbit-[0-9]*/priv/schema/rabbit.schema"):
        with contextlib.suppress(OSError):
            if f'{{mapping, "{key}",' in schema.read_text(errors="replace"):
                return True
    return False


def in_parallel(action, members: list[PrivateBroker]) -> None:
    """Run ``action(member)`` for every member in threads; raise the first failure after all."""
    errors: list[tuple[str, Exception]] = []

    def run(member: PrivateBroker) -> None:
        try:
            action(member)
        except Exception as exc:  # noqa: BLE001  (re-raised below, with the node's name)
            errors.append((member.nodename, exc))

    threads = [threading.Thread(target=run, args=(m,), daemon=True) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        node, exc = errors[0]
        if isinstance(exc, BrokerControlError):
            raise BrokerControlError(f"{node}: {exc}") from exc
        raise exc


def end_process(pid: int | None, grace_s: float = 5.0) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``grace_s``; a process already gone is fine."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, grace_s):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, grace_s)
