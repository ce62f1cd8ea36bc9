"""Notebook 07's answers to its "Predict:" questions, in sentences, every number from the run.

The notebook asks them through ``cluster`` (``cluster.leader_story(result)`` after the leader
kill, ``cluster.majority_story(result)`` after the majority loss); each reads the run's
summary, never a typed number.
"""
from __future__ import annotations

from helpers.experiment import skeleton as runner
from helpers.lessons.cluster_plots import majority_online, short_name
from helpers.lessons.common import Text


def leader_story(result: runner.RunResult) -> Text:
    """What one leader kill did, in sentences, with this run's numbers."""
    s = result.summary
    cut = s["worker_disconnects"]
    return Text(
        f"{short_name(s['killed_node'])} led the queue and was killed {s['fault_at_s']:.2f} s in. "
        f"{short_name(s['new_leader'])} {_led(s)}; {cut} worker(s) "
        f"connected to the dead node reconnected to another, and every worker consumed again "
        f"{s['recovery_s']:.2f} s after the kill. Of {s['tasks_confirmed']} confirmed tasks "
        f"{s['tasks_lost']} were lost; {s['duplicates']} ran twice ({s['duplicates_redelivered']} "
        f"redelivered after their ack died with the node, {s['duplicates_republished']} "
        f"published again by the producer); the producer was refused (nack) {s['nacks']} times.")


def majority_story(result: runner.RunResult) -> Text:
    """What one majority loss did, in sentences, with this run's numbers."""
    s = result.summary
    before = f" ({', '.join(map(short_name, s['down_before']))} already down)" \
        if s["down_before"] else ""
    return Text(
        f"Killed {', '.join(map(short_name, s['killed_nodes']))} {s['fault_at_s']:.2f} s in"
        f"{before}: {s['nodes'] - len(s['down_before']) - len(s['killed_nodes'])} of "
        f"{s['nodes']} nodes left. Tasks confirmed while it lasted: "
        f"{s['confirmed_while_down']}; nacks received: {s['nacks']}. "
        f"{short_name(s['revived_node'])} was back {s['down_s']:.1f} s after the kill, every "
        f"worker consumed again {s['recovery_s']:.1f} s after the kill, and of "
        f"{s['tasks_confirmed']} confirmed tasks {s['tasks_lost']} were lost.\n"
        + gap_story(s))


def _led(s: dict) -> str:
    """When the new leader was elected (its log) and seen by the polls, after the kill; or,
    without the log line, seen, and when the poll before (which had not) was asked."""
    seen = f"was seen leading by the polls {s['leaderless_s']:.2f} s after the kill"
    if s.get("t_elected"):  # the polls may name a stale leader: the log names the elected
        return (f"{seen}; {short_name(s['elected_node'])}'s log dates the election "
                f"{s['t_elected'] - s['t_kill']:.2f} s after the kill (term "
                f"{s['elected_term']})")
    if not s.get("t_leader_unseen"):
        return seen
    return (f"was seen leading by the polls {s['leaderless_s']:.2f} s after the kill (the "
            f"poll asked at {s['t_leader_unseen'] - s['t_kill']:.2f} s had not seen it yet)")


def gap_story(s: dict) -> str:
    """What happened between a node's return and a leader being seen, in seconds after the
    kill: the queue's members online (management API), the restarted member's first log line
    about the queue, the election in the new leader's log, and the poll that saw it."""
    revived, leader, kill = short_name(s["revived_node"]), short_name(s["new_leader"]), s["t_kill"]
    parts = [f"{revived} was back in the cluster {s['down_s']:.2f} s after the kill"]
    quorate = majority_online(s)
    if quorate is not None:
        parts.append(f"from {quorate[0] - s['fault_at_s']:.2f} s the management API listed "
                     f"{len(quorate[1])} of the queue's {s['nodes']} members online (a "
                     "majority)")
    if s.get("revived_said"):
        t, said = s["revived_said"]
        parts.append(f"{revived}'s member of the queue logged its first line about it at "
                     f"{t - kill:.2f} s (\"{said[:60]}...\")")
    parts.append(f"{leader} {_led(s)}")
    said = s.get("revived_said")
    wait = ""
    if said and s.get("t_elected") and said[1].startswith("granting vote") and \
            f"{s['elected_node']}}}" in said[1]:  # its vote for the node that was elected
        wait = (f" The gap was a wait for that vote: {revived}'s member said nothing about the "
                f"queue for {said[0] - kill - s['down_s']:.2f} s after its node was back, and "
                f"its first word was the vote that made {short_name(s['elected_node'])} leader.")
    return "From the node's return to a leader: " + "; ".join(parts) + "." + wait
