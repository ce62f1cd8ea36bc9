"""The command line: ``python -m helpers broker|cluster|worker|new-task|run|fault|notebooks``
(installed as ``workqueues`` too).

Errors a user can cause print one sentence on stderr and exit with status 2, never a
traceback; anything else is a bug and keeps its traceback. The options are in
``helpers.cli.parser``; the progress bars (on stderr, when it is a terminal) in
``helpers.cli.progress``. Without a command it prints every command with an example and
exits 2: nothing was run, so a script whose command went missing still fails.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.cli.parser import BROKER_ACTIONS, CLUSTER_ACTIONS  # noqa: F401 (kept importable)
from helpers.errors import BadInputError, HelpersError

#: the exit status of ``python -m helpers`` without a command (argparse's, for a usage error)
NO_COMMAND = 2


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
    from helpers.broker.cluster_cli import main as cluster_main

    argv = [args.action, *([args.target] if args.target else []),
            *(["--nodes", str(args.nodes)] if args.nodes else []),
            *(["--reset"] if args.reset else [])]
    return cluster_main(argv)  # one implementation: ``python -m helpers.broker.cluster_cli``


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
    from helpers.cli.progress import Bar
    from helpers.core import tasks
    from helpers.experiment import skeleton as runner
    from helpers.experiment.value import Experiment
    from helpers.measure import figures, timing
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

    far = f", workers {args.latency:g} ms round trip away" if args.latency else ""
    who = f"{framework.label}: " if framework else ""
    print(f"{who}{args.workers} workers, prefetch {args.prefetch or 'unlimited'}, "
          f"{len(work)} tasks{far} ...", file=sys.stderr)
    with Bar("tasks", total=len(work), desc="done", before="starting workers") as progress:
        result = runner.run(experiment, progress=progress)
    print(timing.table(result.summary))
    print(runner.queue_line(result.summary))
    print(f"{figures.text(result.summary, 'throughput_tps', '.1f')}, "
          f"round trip added {args.latency:g} ms")
    if result.summary["kills"]:
        print(f"kills {result.summary['kills']}")
    print(f"saved to {result.folder}")
    if args.json:
        Path(args.json).write_text(figures.dumps(result.summary, indent=2))
    if args.plot:
        from helpers.measure import plots
        plots.run_figure(result, title=f"{who}{args.workers} workers, prefetch "
                                       f"{args.prefetch or 'unlimited'}").savefig(args.plot,
                                                                                 dpi=110)
    return 0 if result.summary["tasks_lost"] == 0 else 1


def _fault(args) -> int:
    from helpers import faults
    from helpers.cli.progress import Bar
    from helpers.experiment import skeleton as runner
    from helpers.core import tasks
    from helpers.measure import figures, timing

    size = {key: value if value is not None else default
            for key, default in faults.defaults(args.how).items()
            for value in [getattr(args, key)]}
    work = tasks.equal(size["tasks"], size["duration"])
    print(f"fault {args.how}: {size['workers']} worker{'s' * (size['workers'] != 1)}, prefetch "
          f"{size['prefetch'] or 'unlimited'}, {len(work)} tasks of {size['duration']} s ...",
          file=sys.stderr)
    options = faults.options_for(  # the scenario's options value, checked before any start
        args.how, {"fault_after_s": size["after"], "queue_type": args.queue_type})
    with Bar("tasks", total=len(work), desc="done", before="starting workers") as progress:
        result = faults.run_fault(args.how, size["workers"], size["prefetch"], work,
                                  options=options, progress=progress)
    print(timing.table(result.summary))
    if result.summary.get("queue"):  # `poison` combines three runs, each on its own queue
        print(runner.queue_line(result.summary))
    print(faults.line(result.summary))
    if result.folder:  # `poison` and `consumer-timeout` keep no folder of their own
        print(f"saved to {result.folder}")
    if args.json:
        Path(args.json).write_text(figures.dumps(result.summary, indent=2))
    return 0 if result.summary["tasks_lost"] == 0 else 1


def _notebooks(args) -> int:
    from helpers.cli.notebooks import execute_all

    return 0 if execute_all(args.paths, args.out, timeout=args.timeout) else 1


#: command -> the function that runs it
HANDLERS = {"broker": _broker, "cluster": _cluster, "worker": _worker, "new-task": _new_task,
            "run": _run, "fault": _fault, "notebooks": _notebooks}


def program_name() -> str:
    """How this command was called: ``workqueues`` (the installed script) or
    ``python -m helpers``."""
    return "workqueues" if Path(sys.argv[0]).name == "workqueues" else "python -m helpers"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The whole command line (``helpers.cli.parser``), each command run by ``HANDLERS``."""
    from helpers.cli.about import VersionAction
    from helpers.cli.parser import build_parser as build

    return build(HANDLERS, prog or program_name(), version=VersionAction)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # nothing to run: what could be run, and a failing status
        from helpers.cli.parser import overview
        print(overview(parser.prog))
        return NO_COMMAND
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
