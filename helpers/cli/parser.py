"""The command line's options: one sub-parser per command, every option described with its
default and unit (``tests/test_cli.py`` checks that none is left bare).

``COMMANDS`` lists the commands in the order ``python -m helpers`` alone shows them, each
with one line saying what it does and one example. ``build_parser(handlers)`` builds the
parser; ``handlers`` maps a command's name to the function that runs it.
"""
from __future__ import annotations

import argparse

from helpers import settings
from helpers.worker.options import MODE_HELP

#: What ``broker`` can do (each kind of broker answers every one, or says why it cannot).
BROKER_ACTIONS = ("start", "stop", "restart", "crash", "status", "url")
#: What ``cluster`` can do (``leader QUEUE`` names the node leading a quorum queue; ``urls``
#: prints every node's AMQP URL, password included, for scripts).
CLUSTER_ACTIONS = ("start", "stop", "status", "kill", "start-node", "leader", "urls")

#: command -> (what it does, one example of its use, without the program's name)
COMMANDS = {
    "broker": ("start, stop, restart, crash or inspect the broker", "broker start"),
    "cluster": ("a private cluster of N nodes on 127.0.0.1: start, stop, status, kill or "
                "start one node", "cluster start --nodes 3"),
    "worker": ("run one worker in the foreground", "worker --prefetch 1"),
    "new-task": ("publish one tutorial-style task ('Hello...')", 'new-task "A task..."'),
    "run": ("K workers, N tasks: measure how they were spread",
            "run --workers 2 --prefetch 1 --tasks 40 --heavy 0.2 --light 0.02"),
    "fault": ("run a named fault scenario: count what survived", "fault crash --json out.json"),
    "notebooks": ("execute notebooks headless, write HTML", "notebooks notebooks --out build"),
}

_QUEUE_KIND = settings.DEFAULT_QUEUE_KIND


def overview(prog: str) -> str:
    """What ``python -m helpers`` alone prints: every command with one example."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {prog} COMMAND [options]   ({prog} COMMAND --help for its options)", "",
             "commands:"]
    for name, (what, example) in COMMANDS.items():
        lines += [f"  {name:<{width}}  {what}", f"  {'':<{width}}  e.g. {prog} {example}"]
    lines += ["", f"{prog} --version: this package's version, and the running broker's."]
    return "\n".join(lines)


def _queue_type(parser: argparse.ArgumentParser, what: str = "the work queue's type") -> None:
    parser.add_argument("--queue-type", choices=settings.QUEUE_KINDS, default=_QUEUE_KIND,
                        help=f"{what} (default: {_QUEUE_KIND}, as in the tutorial)")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="also write the summary as JSON to "
                        "PATH; figures that cannot be computed are null (default: none)")


def build_parser(handlers: dict, prog: str = "python -m helpers",
                 version: argparse.Action | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``handlers[name]`` runs command ``name`` (``args.func``)."""
    from helpers.faults import FAULTS, DEFAULTS  # names only: scenarios load when they run
    from helpers.worker.options import build_parser as worker_parser

    parser = argparse.ArgumentParser(
        prog=prog, description="The work-queue lab from the command line: "
        f"{', '.join(COMMANDS)}. Run `{prog}` alone for an example of each.")
    if version is not None:
        parser.add_argument("--version", action=version, nargs=0,
                            help="print this package's version and, when it is running, the "
                                 "broker's (nothing is started to find out), then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, **options) -> argparse.ArgumentParser:
        what, example = COMMANDS[name]
        p = sub.add_parser(name, help=what, description=f"{what[0].upper()}{what[1:]}.",
                           epilog=f"example: {prog} {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter, **options)
        p.set_defaults(func=handlers[name])
        return p

    p = command("broker")
    p.add_argument("action", choices=BROKER_ACTIONS,
                   help="start (or say it runs), stop, restart (clean stop, then start), crash "
                        "(SIGKILL, then start), status (JSON; exit 1 when down), url (the "
                        "AMQP URL, password included, for scripts)")

    p = command("cluster")
    p.add_argument("action", choices=CLUSTER_ACTIONS,
                   help="start, stop, status (JSON), kill NODE, start-node NODE, leader QUEUE "
                        "(the node leading a quorum queue), urls (every node's AMQP URL)")
    p.add_argument("target", nargs="?", metavar="NODE",
                   help="kill, start-node: the node (2, rabbit2 or rabbit2@localhost); "
                        "leader: a queue's name (default: none)")
    p.add_argument("--nodes", type=int, metavar="N",
                   help=f"start: how many nodes, 1 to {settings.CLUSTER_MAX_NODES} (default: "
                        f"as recorded, else {settings.CLUSTER_NODES})")
    p.add_argument("--reset", action="store_true",
                   help="stop: also delete the cluster's data, ports and cookie (default: kept)")

    command("worker", parents=[worker_parser(add_help=False)])

    p = command("new-task")
    p.add_argument("message", nargs="*", help="the task's words; each dot is a second of work "
                   "(default: 'Hello World!')")
    p.add_argument("--queue", default=settings.DEFAULT_QUEUE,
                   help=f"the queue to publish to (default: {settings.DEFAULT_QUEUE})")
    _queue_type(p, "the queue's type, if it is declared now")

    p = command("run")
    p.add_argument("--workers", type=int, required=True, metavar="K",
                   help="how many worker processes (required)")
    p.add_argument("--prefetch", type=int, required=True, metavar="P",
                   help="unacknowledged tasks each worker may hold; 0 = unlimited, pure round "
                        "robin (required). With --framework celery it is "
                        "worker_prefetch_multiplier (one task at a time per worker, "
                        "--concurrency 1; 0 = no limit, as in Celery); with --framework dramatiq "
                        "it is dramatiq_queue_prefetch (--threads 1; 0 asks 65535, since "
                        "Dramatiq's own 0 means 2 x threads)")
    p.add_argument("--framework", choices=("pika", "celery", "dramatiq"), default="pika",
                   help="who runs the tasks: the project's pika workers, or real Celery or "
                        "Dramatiq workers (pip install -e '.[frameworks]'); same table, same "
                        "--json keys (default: pika)")
    p.add_argument("--tasks", type=int, metavar="N",
                   help="how many tasks, odd ones heavy, even ones light (required unless "
                        "--workload)")
    p.add_argument("--heavy", type=float, default=0.2, metavar="S",
                   help="seconds of work per odd task (default: 0.2 s; 0 = no work)")
    p.add_argument("--light", type=float, default=0.02, metavar="S",
                   help="seconds of work per even task (default: 0.02 s; 0 = no work)")
    p.add_argument("--kind", choices=settings.TASK_KINDS, default="sleep",
                   help="how a task spends its seconds: sleep (waits, like I/O) or cpu (burns "
                        "CPU time) (default: sleep)")
    p.add_argument("--workload", metavar="CSV",
                   help="a CSV with a 'duration' column (seconds), published in order, instead "
                        "of --tasks (default: none)")
    p.add_argument("--kill-every", type=float, metavar="S",
                   help="SIGKILL a random worker every S seconds and start a replacement "
                        "(default: never)")
    # "never" is left out: a run whose workers never ack could not finish.
    p.add_argument("--ack", choices=[m for m in settings.ACK_MODES if m != "never"],
                   default="manual", help="manual: ack after the work (celery: "
                   "task_acks_late=True); auto: the broker forgets a task once sent (celery: "
                   "its default, acks as the task starts; dramatiq always acks after the "
                   "work) (default: manual)")
    p.add_argument("--mode", choices=settings.WORK_MODES, default="thread", help=MODE_HELP)
    p.add_argument("--heartbeat", type=int, metavar="S",
                   help="heartbeat interval the workers ask for, in seconds; 0 = off "
                        "(default: the broker's, 60 s on RabbitMQ)")
    p.add_argument("--latency", type=float, default=0, metavar="MS",
                   help="round trip added between each worker and the broker, in ms "
                        "(default: 0 = none)")
    p.add_argument("--reserve", action="store_true",
                   help="reserve mode (needs --prefetch 2): hold a second task, hand it back "
                        "when the first runs long (default: off)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the random choice of the worker --kill-every kills (default: 0)")
    _queue_type(p)
    _json(p)
    p.add_argument("--plot", metavar="PNG",
                   help="save the timeline and load figure to this PNG (default: none)")

    p = command("fault")
    p.add_argument("how", choices=list(FAULTS), metavar="NAME",
                   help=f"one of {', '.join(FAULTS)} (restart: clean stop then start; crash: "
                        "SIGKILL the node then start; leader-kill, majority-loss: nodes of the "
                        "private cluster die, notebook 07; the others: notebook 06)")
    d = DEFAULTS
    p.add_argument("--workers", type=int, metavar="K",
                   help=f"how many workers (default: the scenario's; {d['workers']} for "
                        "restart and crash)")
    p.add_argument("--prefetch", type=int, metavar="P",
                   help=f"unacknowledged tasks per worker; 0 = unlimited (default: "
                        f"{d['prefetch']})")
    p.add_argument("--tasks", type=int, metavar="N",
                   help=f"how many tasks (default: the scenario's; {d['tasks']} for restart "
                        "and crash)")
    p.add_argument("--duration", type=float, metavar="S",
                   help=f"seconds of work per task (default: the scenario's; {d['duration']} s "
                        "for restart and crash)")
    p.add_argument("--after", type=float, metavar="S",
                   help="seconds after the first publish at which the fault strikes: restart, "
                        f"crash, leader-kill, majority-loss (default: {d['after']} s)")
    _queue_type(p, "the work queue's type: restart, crash, leader-kill, majority-loss (the "
                   "notebook-06 scenarios pick their own queues)")
    _json(p)

    p = command("notebooks")
    p.add_argument("paths", nargs="*", default=["notebooks"], metavar="PATH",
                   help="notebooks, or folders of them (default: notebooks)")
    p.add_argument("--out", default="build", metavar="DIR",
                   help="where the HTML of each notebook goes (default: build)")
    p.add_argument("--timeout", type=int, default=600, metavar="S",
                   help="seconds a single cell may run before the notebook fails (default: "
                        "600 s)")
    return parser
