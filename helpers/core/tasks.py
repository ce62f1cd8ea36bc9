"""Task bodies: JSON with an id and a duration, or the tutorial's dotted strings.

``"Hello..."`` is the tutorial's way of saying "three units of work": one unit per dot.
JSON bodies carry an ``id`` (so runs can be matched up) and a ``duration`` in seconds.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from helpers.errors import BadInputError
from helpers.settings import FAIL_KIND, POISON_KIND, TASK_KINDS

if TYPE_CHECKING:
    from pathlib import Path

#: Seconds of work per dot in a tutorial-style body (the tutorial uses 1 s).
DOT_UNIT_S = 1.0


class MalformedTask(ValueError):
    """A message body that is neither JSON task nor dotted string."""


@dataclass(frozen=True)
class Task:
    """One unit of work: ``duration`` seconds of sleeping (or CPU when kind='cpu').

    ``kind='crash'`` is a poison message: the worker that takes it dies half-way through;
    ``kind='fail'`` a failing one: it raises after its duration, every time. ``priority``
    is the message's AMQP priority (None: none; a queue needs ``x-max-priority`` for it).
    """

    id: str
    duration: float
    kind: str = "sleep"
    priority: int | None = None

    def body(self) -> bytes:
        """The message body a worker understands."""
        return json.dumps({"id": self.id, "duration": self.duration, "kind": self.kind}).encode()


def _check_duration(value, where: str) -> float:
    try:
        duration = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: duration {value!r} is not a number.") from None
    if not math.isfinite(duration) or duration < 0:
        raise BadInputError(f"{where}: duration {value!r} must be a number of seconds >= 0.")
    return duration


def odd_heavy(n: int, heavy: float, light: float, kind: str = "sleep") -> list[Task]:
    """``n`` tasks numbered from 1; odd ones take ``heavy`` seconds, even ones ``light``."""
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise BadInputError(f"--tasks must be a whole number of at least 1 (got {n!r}).")
    heavy = _check_duration(heavy, "--heavy")
    light = _check_duration(light, "--light")
    return [Task(f"t{i:05d}", heavy if i % 2 else light, kind) for i in range(1, n + 1)]


def equal(n: int, duration: float, kind: str = "sleep") -> list[Task]:
    """``n`` tasks of the same duration."""
    return odd_heavy(n, duration, duration, kind)


def from_csv(path: str | Path) -> list[Task]:
    """Read a workload CSV: a ``duration`` column (seconds), optional ``id`` and ``kind``."""
    import csv  # here, not at the top: a worker process never reads workload files
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"Workload file {path} does not exist (or is not a file).")
    try:
        return _read_csv(path)
    except UnicodeDecodeError as exc:
        raise BadInputError(f"Workload file {path} is not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start}): save it as a UTF-8 CSV.") from None
    except (OSError, csv.Error) as exc:
        raise BadInputError(f"Workload file {path} could not be read: {exc}.") from None


def _read_csv(path: Path) -> list[Task]:
    import csv

    with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: Excel writes a BOM
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "duration" not in reader.fieldnames:
            raise BadInputError(f"Workload file {path} has no 'duration' column "
                                f"(columns: {', '.join(reader.fieldnames or []) or 'none'}).")
        tasks = []
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            duration = _check_duration(row["duration"], where)
            kind = (row.get("kind") or "sleep").strip()
            if kind not in TASK_KINDS:
                raise BadInputError(f"{where}: kind {kind!r} must be 'sleep' or 'cpu'.")
            task_id = (row.get("id") or "").strip() or f"t{len(tasks) + 1:05d}"
            tasks.append(Task(task_id, duration, kind))
    if not tasks:
        raise BadInputError(f"Workload file {path} holds no tasks.")
    return tasks


def decode(body: bytes, unit: float = DOT_UNIT_S) -> tuple[str | None, float, str]:
    """Return ``(id, seconds, kind)`` for a message body, or raise ``MalformedTask``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedTask("body is not UTF-8") from exc
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
            duration = float(data["duration"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedTask(f"bad JSON task: {exc}") from exc
        if not math.isfinite(duration) or duration < 0:
            raise MalformedTask(f"bad duration {duration}")
        kind = data.get("kind", "sleep")
        if kind not in TASK_KINDS + (POISON_KIND, FAIL_KIND):
            raise MalformedTask(f"unknown kind {kind!r}")
        return (str(data["id"]) if "id" in data else None), duration, kind
    return None, text.count(".") * unit, "sleep"


def work(seconds: float, kind: str = "sleep") -> None:
    """Do ``seconds`` of work: sleep, or burn that much CPU time of this thread."""
    if seconds <= 0:
        return
    if kind == "cpu":
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            for _ in range(2000):
                pass
    else:
        time.sleep(seconds)
