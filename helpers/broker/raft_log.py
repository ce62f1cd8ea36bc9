"""What a node's log says about one quorum queue's Raft group: when its member there became
the leader, and what it logged at all.

Each member of a quorum queue (a Raft group run by the ``ra`` library) logs its state
changes in its node's ``log/node.log``; on 3.10, for example::

    2026-12-06 05:58:51.524109+00:00 [notice] <0.896.0> queue 'q' in vhost '/': candidate -> leader in term: 2 machine version: 2
    2026-12-06 05:58:51.522912+00:00 [info] <0.619.0> {'%2F_q',rabbit1@localhost}: granting vote for ...

The management API names a leader only once it is recorded, and a poll sees it later still;
the log line is the moment of the election itself, on the clock of this machine.
"""
from __future__ import annotations

import datetime
import re
from pathlib import Path

#: a log line: its timestamp, level, process, and the message
_LINE = re.compile(r"^(\S+ \S+) \[\w+\] <[^>]+> (.*)$")


def queue_lines(log: Path, queue: str, since: float = 0.0) -> list[tuple[float, str]]:
    """``(time, message)`` of each line of ``log`` about quorum queue ``queue`` (the message
    after the queue's name), from ``since`` (seconds since the epoch); [] without a log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    names = (f"queue '{queue}' in vhost", f"_{queue}',")  # a leader's form, a member's form
    out = []
    for line in text.splitlines():
        found = _LINE.match(line)
        if not found or not any(name in found.group(2) for name in names):
            continue
        try:
            t = datetime.datetime.fromisoformat(found.group(1)).timestamp()
        except ValueError:
            continue
        if t >= since:
            out.append((t, found.group(2).split(": ", 1)[-1]))
    return out


def became_leader(log: Path, queue: str, since: float) -> tuple[float, int] | None:
    """When the member of ``queue`` whose node writes ``log`` became its leader after
    ``since``, and in which Raft term; None when the log does not say (another format)."""
    for t, message in queue_lines(log, queue, since):
        found = re.search(r"-> leader in term: (\d+)", message)
        if found:
            return t, int(found.group(1))
    return None


def after_node_loss(cluster, queue: str, revived: str | None, t_kill: float,
                    t_restart: float | None) -> tuple:
    """From the logs of ``cluster``'s nodes: the first election of ``queue``'s leader after
    ``t_kill`` (time, term, node), and the first line ``revived``'s member logged about the
    queue after ``t_restart`` (time, message); None for either that was not logged."""
    def log(node: str) -> Path:
        return cluster.member(node).state_dir / "log" / "node.log"

    found = [(*won, m.nodename) for m in cluster.members()
             if (won := became_leader(log(m.nodename), queue, t_kill))]
    said = queue_lines(log(revived), queue, t_restart) if revived and t_restart else []
    return (min(found) if found else None), (said[0] if said else None)
