"""Idempotency: a side effect that happens once per task, while delivery stays at-least-once.

RabbitMQ with manual acks delivers every task *at least* once: a worker that dies after
doing a task but before its ack leaves gets the task delivered again. What must happen
once (a payment, an e-mail, a row) is guarded by a deduplication store keyed by task id:

    with store.once(task_id) as db:    # None when this task id was done before
        if db is not None:
            db.execute("INSERT INTO payments ...")   # the effect, in the same transaction

The key and the effect commit together, in one SQLite transaction, so a worker killed
before the commit leaves neither (the redelivery does both) and one killed after it
leaves both (the redelivery finds the key and skips). An effect outside the store (an
e-mail sent) keeps a window between sending and committing: keep it short, or make the
receiving side deduplicate too. SQLite is in the standard library; one file per run.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS done (task TEXT PRIMARY KEY, worker TEXT, t REAL);
CREATE TABLE IF NOT EXISTS effects (task TEXT, worker TEXT, t REAL);
CREATE TABLE IF NOT EXISTS effects_plain (task TEXT, worker TEXT, t REAL);
"""


class DedupStore:
    """Task ids whose side effect has happened, in one SQLite file shared by processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # Several worker processes write one file: wait for each other's locks, and let
        # readers go on while one writes (WAL).
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def once(self, key: str, worker: str = ""):
        """Yield the database inside a transaction when ``key`` is new, else yield None."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                new = self.db.execute("INSERT OR IGNORE INTO done VALUES (?, ?, ?)",
                                      (key, worker, time.time())).rowcount == 1
                yield self.db if new else None
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        """Close the file."""
        self.db.close()


class EffectLog(DedupStore):
    """The lesson's side effect, recorded twice: plainly, and through the store."""

    def record(self, task: str, worker: str) -> bool:
        """Record one completion of ``task``; True when the guarded effect happened."""
        row = (task, worker, time.time())
        with self._lock:
            self.db.execute("INSERT INTO effects_plain VALUES (?, ?, ?)", row)
        with self.once(task, worker) as db:
            if db is not None:
                db.execute("INSERT INTO effects VALUES (?, ?, ?)", row)
            return db is not None


def per_task(path: str | Path) -> dict[str, tuple[int, int]]:
    """Task id -> (plain effects, effects through the store), for the tasks with any."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        plain = dict(db.execute("SELECT task, COUNT(*) FROM effects_plain GROUP BY task"))
        guarded = dict(db.execute("SELECT task, COUNT(*) FROM effects GROUP BY task"))
    return {task: (plain.get(task, 0), guarded.get(task, 0)) for task in plain | guarded}


def effect_counts(path: str | Path) -> dict:
    """Per table, how many tasks had their effect more than once, and rows in all."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        out = {}
        for table in ("effects_plain", "effects"):
            rows = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            twice = db.execute(f"SELECT COUNT(*) FROM (SELECT task FROM {table} GROUP BY task "
                               "HAVING COUNT(*) > 1)").fetchone()[0]
            out[table] = {"rows": rows, "tasks_more_than_once": twice}
        return out
