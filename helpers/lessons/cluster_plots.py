"""Notebook 07's figures: a node-loss run as a timeline, coloured by the node each worker used.

Top: one row per worker, one bar per task (hatched: redelivered), coloured by the node the
worker was connected to; a cross where a worker lost its connection, a triangle where it
consumed again; the producer's row shows which node took each batch. Bottom: tasks
confirmed and completed so far. Vertical lines: the kill; the election, read from the new
leader's log (``t_elected``), and the moment the polls of the management API first saw that
leader (without the log line, shaded back to the poll before, which had not); a node started again and back in the
cluster, and when a majority of the queue's members was online again. One legend under both
says what each colour and mark is.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

NODE_COLOURS = ("#1b9e77", "#7570b3", "#d95f02", "#66a61e", "#e6ab02")
KILL, LEADER, BACK = "#b00020", "#1f4e9c", "#2e7d32"


def short_name(node: str | None) -> str:
    """``rabbit-1@host`` as ``rabbit-1``."""
    return (node or "?").split("@")[0]


def _connections(result) -> dict:
    """worker -> [(t, node)] from its ready events (the broker each connection reached)."""
    nodes = result.summary.get("node_of", {})
    out: dict = {}
    for e in result.events:
        if e["event"] == "ready":
            out.setdefault(e["worker"], []).append((e["t"], nodes.get(e.get("broker"), "?")))
    return out


def _node_at(connections: list, t: float) -> str:
    node = connections[0][1] if connections else "?"
    for since, name in connections:
        if since <= t:
            node = name
    return node


def node_loss_figure(result, title: str | None = None) -> Figure:
    """The timeline and the confirmed/completed counts of one node-loss run (see above)."""
    fig = plt.figure(figsize=(11, 6))
    colours, marks = _draw(fig, result, title)
    for row, handles in enumerate((colours, marks)):  # two rows under the axes
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.035 - 0.035 * row),
                   ncol=len(handles), fontsize=8, frameon=False, handlelength=1.5)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    plt.close(fig)  # shown once, where the notebook displays it
    return fig


def _draw(fig, result, title: str | None = None) -> tuple[list, list]:
    s, df, t0 = result.summary, result.deliveries, result.publish.t_first
    colours = {n: NODE_COLOURS[i % len(NODE_COLOURS)]
               for i, n in enumerate(sorted(set(s.get("node_of", {}).values())))}
    conns = _connections(result)
    workers = sorted(conns, key=lambda w: (len(w), w))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    rows = {w: i + 1 for i, w in enumerate(workers)}
    for r in df[df["started_t"].notna()].itertuples():
        end = r.finished_t if pd.notna(r.finished_t) else r.started_t + 0.01
        top.barh(rows.get(r.worker, 0), end - r.started_t, left=r.started_t - t0, height=0.6,
                 color=colours.get(_node_at(conns.get(r.worker, []), r.started_t), "grey"),
                 edgecolor="black", linewidth=0.2, hatch="//" if r.redelivered else None)
    for e in result.events:
        row = rows.get(e["worker"])
        if e["event"] == "disconnected" and row:
            top.plot(e["t"] - t0, row, marker="x", color=KILL, markersize=9, mew=2)
        elif e["event"] == "ready" and e.get("generation", 0) > 0 and row:
            top.plot(e["t"] - t0, row, marker=">", color="black", markersize=7)
    for t, broker in result.publish.connections:
        node = s.get("node_of", {}).get(broker, "?")
        top.plot(t - t0, 0, marker="|", color=colours.get(node, "grey"), markersize=10, mew=2)
    top.set_yticks(range(len(workers) + 1), ["producer", *workers])
    top.invert_yaxis()
    top.set_title(title or _title(s), loc="left", fontsize=10)
    confirmed = s.get("confirmed_at_s", [])
    first_done = df[df["finished_t"].notna()].groupby("task")["finished_t"].min() - t0
    if confirmed:
        bottom.step(confirmed, range(1, len(confirmed) + 1), where="post", label="confirmed")
    bottom.step(sorted(first_done), range(1, len(first_done) + 1), where="post",
                label="completed")
    bottom.set_ylabel("tasks")
    bottom.set_xlabel("seconds since the first publish")
    bottom.legend(fontsize=8, loc="lower right")
    for ax in (top, bottom):
        _marks(ax, s, t0, label=ax is top)
    return [*(Patch(color=c, label=f"a task, by a worker on {short_name(n)}")
              for n, c in colours.items()),
            Patch(facecolor="white", edgecolor="black", hatch="//", label="redelivered task")], [
            Line2D([], [], marker="x", color=KILL, mew=2, ls="none",
                   label="worker's connection lost"),
            Line2D([], [], marker=">", color="black", ls="none",
                   label="worker consuming again, on another node"),
            Line2D([], [], marker="|", color="grey", mew=2, ls="none",
                   label="producer: a batch, by node")]


def _marks(ax, s: dict, t0: float, label: bool) -> None:
    already = s.get("down_before") or []
    kill = "SIGKILL " + ", ".join(map(short_name, s["killed_nodes"])) + (
        f" ({', '.join(map(short_name, already))} already down)" if already else "")
    revived = short_name(s.get("revived_node"))
    leader = short_name(s.get("new_leader"))
    marks = [(s.get("t_kill"), KILL, "-", kill),
             (s.get("t_elected"), LEADER, "--",
              f"{short_name(s.get('elected_node'))} elected (its log, term {s.get('elected_term')})"),
             (s.get("t_leader"), LEADER, ":", f"{leader} seen leading (polled)"),
             (s.get("t_restart"), BACK, ":", f"{revived} started again"),
             (s.get("t_restarted"), BACK, "-.", f"{revived} back in the cluster")]
    quorate = majority_online(s) if s.get("revived_node") else None
    if quorate is not None:
        marks.append((t0 + quorate[0], BACK, (0, (1, 3)), "queue members online: "
                      + ", ".join(map(short_name, quorate[1])) + " (a majority)"))
    left, right = ax.get_xlim()
    if s.get("t_leader") and s.get("t_leader_unseen") and not s.get("t_elected"):
        # no election in the log: the polls bracket it (the poll before had not seen it)
        ax.axvspan(s["t_leader_unseen"] - t0, s["t_leader"] - t0, color=LEADER, alpha=0.15,
                   linewidth=0)
    for height, (t, colour, style, text) in zip((0.97, 0.88, 0.79, 0.70, 0.61, 0.52), marks):
        if t is None or pd.isna(t):
            continue
        ax.axvline(t - t0, color=colour, linestyle=style, linewidth=1.2)
        if label:  # one height per mark: lines close together keep their labels apart
            late = t - t0 > left + 0.75 * (right - left)  # label on the left of the line
            ax.text(t - t0, height, f"{text} " if late else f" {text}", color=colour,
                    transform=ax.get_xaxis_transform(), fontsize=8, va="top",
                    ha="right" if late else "left",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})


def majority_online(s: dict) -> tuple[float, list] | None:
    """When the polls first saw a majority of the queue's members online after the kill
    (seconds since the first publish, and those members). The leader they named then may be
    a stale record (the node that led before the loss), so it is not read here."""
    dead = (set(s.get("killed_nodes") or []) | set(s.get("down_before") or [])) - {
        s.get("revived_node")}  # a stale record may still list a dead node as online
    for t, _leader, online in s.get("leader_seen", []):
        alive = [n for n in online if n not in dead]
        if t > s["fault_at_s"] and len(alive) > s["nodes"] // 2:
            return t, alive
    return None


def _title(s: dict) -> str:
    if not s["killed_nodes"]:
        return (f"Nothing killed (RabbitMQ {s['broker_version']}): the run was over before the "
                f"kill was due; lost {s['tasks_lost']} of {s['tasks_confirmed']} confirmed")
    if s["fault"] == "majority-loss":
        return (f"Majority lost (RabbitMQ {s['broker_version']}): no confirm for "
                f"{s['first_confirm_after_kill_s']:.1f} s, lost {s['tasks_lost']} of "
                f"{s['tasks_confirmed']} confirmed")
    role = "the leader" if s["killed_node"] == s["leader_before"] else "a follower"
    until = (f"{s['t_elected'] - s['t_kill']:.2f} s until a new leader was elected"
             if s.get("t_elected") else
             f"{s['leaderless_s']:.2f} s until a running node was seen leading the queue")
    return (f"{short_name(s['killed_node'])}, {role}, killed (RabbitMQ {s['broker_version']}): "
            f"{until}, lost {s['tasks_lost']} of {s['tasks_confirmed']} confirmed")
