"""The folder a private node or a private cluster keeps its state in: a JSON file and a lock.

Every process (kernels, CLI, tests) that finds the same folder finds the same node or
cluster: ``state.json`` records its ports and pids, written whole or not at all, and the
``lock`` file serialises start, stop and kill across processes (two kernels must not boot
two nodes). Used by ``helpers.broker.private_node`` and ``helpers.broker.cluster``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path


def read_state(path: Path) -> dict:
    """The JSON state at ``path``; an empty dict when there is none (or it is unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def write_state(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


@contextlib.contextmanager
def locked(folder: Path):
    """Hold ``folder``'s lock (an exclusive ``flock`` on ``folder/lock``) for the block."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
