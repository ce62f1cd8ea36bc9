"""The command line: ``python -m helpers broker|cluster|worker|new-task|run|fault|notebooks``.

Errors a user can cause print one sentence on stderr and exit with status 2, never a
traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers import settings
from helpers.errors import BadInputError, HelpersError

#: What ``broker`` can do (each kind of broker answers every one, or says why it cannot).
BROKER_ACTIONS = ("start", "stop", "restart", "crash", "status", "url")
#: What ``cluster`` can do (``leader QUEUE`` names the node leading a quorum queue; ``urls``
#: prints every node's AMQP URL, password included, for scripts).
CLUSTER_ACTIONS = ("start", "stop", "status", "kill", "start-node", "leader", "urls")


def _broker(args) -> int:
    from helpers.broker import resolve as broker
    from helpers.broker import version_facts

    if args.action == "url":
        print(broker.get().url)
        return 0
    resolved = broker.resolve()
    if args.action == "start":
        started = resolved.start(progress=lambda m: print(m, file=sys.stderr))
        print(("started " if started else "already running: ") + resolved.describe())
    elif args.action == "stop":
        stopped = resolved.stop()
        print("stopped" if stopped else "was not running")
    elif args.action == "restart":
        resolved.restart()
        print("restarted: " + resolved.describe())
    elif args.action == "crash":
        resolved.crash()
        print("killed the node and started it again: " + resolved.describe())
    elif args.action == "status":
        status = resolved.status()
        if status["running"]:
            status["version"] = resolved.version()
            status["metadata_store"] = version_facts.metadata_store(resolved)
        print(json.dumps(status, indent=2))
        return 0 if status["running"] else 1
    return 0


def _cluster(args) -> int:
    from helpers.broker.cluster import main as cluster_main

    argv = [args.action, *([args.target] if args.target else []),
            *(["--nodes", str(args.nodes)] if args.nodes else []),
            *(["--reset"] if args.reset else [])]
    return cluster_main(argv)  # one implementation: ``python -m helpers.broker.cluster``


def _worker(args) -> int:
    from helpers.worker.options import worker_from_args

    return worker_from_args(args).run()


def _new_task(args) -> int:
    import uuid

    from helpers.broker import resolve as broker, dead_letter
    from helpers.publish import producer
    from helpers.core import topology

    message = " ".join(args.message) or "Hello World!"
    resolved = broker.get()
    # Its own id, so two runs of new-task never look like one task delivered twice.
    task_id = f"new-task-{uuid.uuid4().hex[:12]}"
    spec = dead_letter.prepare(resolved, topology.QueueSpec(args.queue, kind=args.queue_type))
    result = producer.publish(resolved.url, spec, [(task_id, message.encode())])
    if result.confirmed:
        print(f" [x] Sent {message!r} to {spec.name} ({spec.kind} queue; confirmed by the "
              "broker)")
        return 0
    print(f"error: the broker did not confirm {message!r}: {result.error}", file=sys.stderr)
    return 1


def _run(args) -> int:
    from helpers import frameworks
    from helpers.core import tasks
    from helpers.experiment import skeleton as runner
    from helpers.experiment.value import Experiment
    from helpers.measure import timing
    from helpers.worker.config import WorkerConfig

    if args.workload:
        work = tasks.from_csv(args.workload)
    else:
        if args.tasks is None:
            raise BadInputError("Give --tasks N (with --heavy and --light) or --workload CSV.")
        work = tasks.odd_heavy(args.tasks, args.heavy, args.light, kind=args.kind)
    framework = frameworks.from_run_options(args.framework, args.prefetch, args.ack,
                                            pika_only=args.reserve or args.mode != "thread"
                                            or args.heartbeat is not None)
    # Every value is checked once, here, before the broker is asked for anything.
    experiment = Experiment(
        args.workers, work, WorkerConfig(prefetch=args.prefetch, ack=args.ack, mode=args.mode,
                                         heartbeat=args.heartbeat, reserve=args.reserve),
        queue_type=args.queue_type, latency_ms=args.latency, kill_every=args.kill_every,
        seed=args.seed, label=f"{args.framework}-k{args.workers}-p{args.prefetch}",
        framework=framework)

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total} tasks done", end="", file=sys.stderr, flush=True)

    far = f", workers {args.latency:g} ms round trip away" if args.latency else ""
    who = f"{framework.label}: " if framework else ""
    print(f"{who}{args.workers} workers, prefetch {args.prefetch or 'unlimited'}, "
          f"{len(work)} tasks{far} ...", file=sys.stderr)
    result = runner.run(experiment, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(timing.table(result.summary))
    print(runner.queue_line(result.summary))
    print(f"throughput {result.summary['throughput_tps']:.1f} tasks/s, "
          f"round trip added {args.latency:g} ms")
    if result.summary["kills"]:
        print(f"kills {result.summary['kills']}")
    print(f"saved to {result.folder}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.summary, indent=2, default=str))
    if args.plot:
        from helpers.measure import plots
        plots.run_figure(result, title=f"{who}{args.workers} workers, prefetch "
                                       f"{args.prefetch or 'unlimited'}").savefig(args.plot,
                                                                                 dpi=110)
    return 0 if result.summary["tasks_lost"] == 0 else 1


def _fault(args) -> int:
    from helpers import faults
    from helpers.experiment import skeleton as runner
    from helpers.core import tasks
    from helpers.measure import timing

    size = {key: value if value is not None else default
            for key, default in faults.defaults(args.how).items()
            for value in [getattr(args, key)]}
    work = tasks.equal(size["tasks"], size["duration"])
    print(f"fault {args.how}: {size['workers']} worker{'s' * (size['workers'] != 1)}, prefetch "
          f"{size['prefetch'] or 'unlimited'}, {len(work)} tasks of {size['duration']} s ...",
          file=sys.stderr)
    options = faults.command_line_options(
        args.how, {"fault_after_s": size["after"], "queue_type": args.queue_type})
    result = faults.run_fault(args.how, size["workers"], size["prefetch"], work, **options)
    print(timing.table(result.summary))
    if result.summary.get("queue"):  # `poison` combines three runs, each on its own queue
        print(runner.queue_line(result.summary))
    print(faults.line(result.summary))
    if result.folder:  # `poison` and `consumer-timeout` keep no folder of their own
        print(f"saved to {result.folder}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.summary, indent=2, default=str))
    return 0 if result.summary["tasks_lost"] == 0 else 1


def _notebooks(args) -> int:
    from helpers.cli.notebooks import execute_all

    return 0 if execute_all(args.paths, args.out, timeout=args.timeout) else 1


def _queue_type(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue-type", choices=settings.QUEUE_KINDS,
                        default=settings.DEFAULT_QUEUE_KIND,
                        help=f"the work queue's type (default {settings.DEFAULT_QUEUE_KIND}, "
                             "as in the tutorial)")


def build_parser() -> argparse.ArgumentParser:
    from helpers.faults import FAULTS  # a name list only: scenarios are imported when run
    from helpers.worker.options import build_parser as worker_parser

    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="start, stop, restart, crash or inspect the broker")
    p.add_argument("action", choices=BROKER_ACTIONS)
    p.set_defaults(func=_broker)

    p = sub.add_parser("cluster", help="a private cluster of N nodes on 127.0.0.1: start, "
                                       "stop, status, kill or start one node")
    p.add_argument("action", choices=CLUSTER_ACTIONS)
    p.add_argument("target", nargs="?", metavar="NODE",
                   help="kill, start-node: the node (2, rabbit2 or rabbit2@localhost); "
                        "leader: a queue's name")
    p.add_argument("--nodes", type=int, help="start: how many nodes (default 3)")
    p.add_argument("--reset", action="store_true",
                   help="stop: also delete the cluster's data, ports and cookie")
    p.set_defaults(func=_cluster)

    p = sub.add_parser("worker", help="run one worker in the foreground",
                       parents=[worker_parser(add_help=False)])
    p.set_defaults(func=_worker)

    p = sub.add_parser("new-task", help="publish one tutorial-style task ('Hello...')")
    p.add_argument("message", nargs="*")
    p.add_argument("--queue", default=settings.DEFAULT_QUEUE)
    _queue_type(p)
    p.set_defaults(func=_new_task)

    p = sub.add_parser("run", help="K workers, N tasks: measure how they were spread")
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--prefetch", type=int, required=True,
                   help="0 = unlimited (round robin). With --framework celery it is "
                        "worker_prefetch_multiplier (each worker runs one task at a time, "
                        "--concurrency 1, so P unacknowledged tasks; 0 = no limit, as in "
                        "Celery); with --framework dramatiq it is dramatiq_queue_prefetch "
                        "(--threads 1; 0 asks 65535, since Dramatiq's own 0 means 2 x threads)")
    p.add_argument("--framework", choices=("pika", "celery", "dramatiq"), default="pika",
                   help="who runs the tasks: the project's pika workers (default), or real "
                        "Celery or Dramatiq workers (pip install -e '.[frameworks]'); "
                        "same table, same --json keys")
    p.add_argument("--tasks", type=int, help="number of tasks (odd heavy, even light)")
    p.add_argument("--heavy", type=float, default=0.2, help="seconds per odd task")
    p.add_argument("--light", type=float, default=0.02, help="seconds per even task")
    p.add_argument("--kind", choices=settings.TASK_KINDS, default="sleep")
    p.add_argument("--workload", help="CSV with a 'duration' column, published in order")
    p.add_argument("--kill-every", type=float, help="SIGKILL a random worker every S seconds")
    # "never" is left out: a run whose workers never ack could not finish.
    p.add_argument("--ack", choices=[m for m in settings.ACK_MODES if m != "never"],
                   default="manual",
                   help="manual: ack after the work (celery: task_acks_late=True); auto: "
                        "ack on delivery (celery: its default, ack as the task starts; "
                        "dramatiq always acks after the work)")
    p.add_argument("--mode", choices=settings.WORK_MODES, default="thread")
    p.add_argument("--heartbeat", type=int)
    p.add_argument("--latency", type=float, default=0, metavar="MS",
                   help="round trip (ms) added between each worker and the broker; 0 = none")
    p.add_argument("--reserve", action="store_true",
                   help="reserve mode (needs --prefetch 2): hold a second task, hand it back "
                        "when the first runs long (helpers.worker.reserve)")
    p.add_argument("--seed", type=int, default=0)
    _queue_type(p)
    p.add_argument("--json", help="write the summary as JSON here")
    p.add_argument("--plot", help="save the timeline and load figure here (PNG)")
    p.set_defaults(func=_run)

    p = sub.add_parser("fault", help="run a named fault scenario: count what survived")
    p.add_argument("how", choices=list(FAULTS), metavar="NAME",
                   help=f"one of {', '.join(FAULTS)} (restart: clean stop then start; crash: "
                        "SIGKILL the node then start; leader-kill, majority-loss: nodes of the "
                        "private cluster die, notebook 07; the others: notebook 06)")
    p.add_argument("--workers", type=int, help="default: the scenario's (restart/crash: 4)")
    p.add_argument("--prefetch", type=int, help="0 = unlimited (default 1)")
    p.add_argument("--tasks", type=int, help="default: the scenario's (restart/crash: 300)")
    p.add_argument("--duration", type=float, help="seconds per task (restart/crash: 0.05)")
    p.add_argument("--after", type=float,
                   help="seconds after the first publish at which the fault strikes "
                        "(restart, crash, alarm)")
    _queue_type(p)  # restart and crash; the notebook-06 scenarios pick their own queues
    p.add_argument("--json", help="write the summary as JSON here")
    p.set_defaults(func=_fault)

    p = sub.add_parser("notebooks", help="execute notebooks headless, write HTML")
    p.add_argument("paths", nargs="*", default=["notebooks"])
    p.add_argument("--out", default="build")
    p.add_argument("--timeout", type=int, default=600)
    p.set_defaults(func=_notebooks)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HelpersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
