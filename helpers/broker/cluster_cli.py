"""``python -m helpers cluster ...`` (and ``python -m helpers.broker.cluster_cli``): the
private cluster's command line, over ``helpers.broker.cluster.PrivateCluster``."""
from __future__ import annotations

import json

from helpers import settings
from helpers.broker.cluster import PrivateCluster
from helpers.errors import HelpersError


def build_parser():
    """The options of ``python -m helpers.broker.cluster_cli``, each described."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.broker.cluster_cli",
                                     description="A private RabbitMQ cluster: N private "
                                     "nodes of the installed rabbitmq-server, joined.")
    parser.add_argument("action", choices=["start", "stop", "status", "kill", "start-node",
                                           "leader", "urls"],
                        help="start, stop, status (JSON), kill NODE, start-node NODE, leader "
                             "QUEUE (the node leading it), urls (every node's AMQP URL)")
    parser.add_argument("target", nargs="?", help="NODE (kill, start-node: 2, rabbit2 or "
                        "rabbit2@localhost) or QUEUE (leader) (default: none)")
    parser.add_argument("--nodes", type=int, default=None, metavar="N",
                        help=f"start: how many nodes, 1 to {settings.CLUSTER_MAX_NODES} "
                             f"(default: as recorded, else {settings.CLUSTER_NODES})")
    parser.add_argument("--reset", action="store_true",
                        help="stop: also delete the data, ports and cookie (default: kept)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.broker.cluster_cli start|stop|status|kill NODE|start-node NODE|leader QUEUE``."""
    import sys

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action in ("kill", "start-node", "leader") and not args.target:
        parser.error(f"{args.action} needs a {'QUEUE' if args.action == 'leader' else 'NODE'}")
    try:
        cluster = PrivateCluster(args.nodes if args.action == "start" else None)
        if args.action == "start":
            started = cluster.start(progress=lambda m: print(m, file=sys.stderr))
            status = cluster.status()
            print((f"started in {status['boot_s']} s: " if started else "already running: ")
                  + ", ".join(status["running_nodes"]))
        elif args.action == "stop":
            print("stopped" if cluster.stop(reset=args.reset) else "was not running")
        elif args.action == "status":
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if status["running"] else 1
        elif args.action == "kill":
            print(f"killed {cluster.member(args.target).nodename} "
                  f"(pid {cluster.kill(args.target)})")
        elif args.action == "start-node":
            seconds = cluster.start_node(args.target)
            print(f"started {cluster.member(args.target).nodename} in {seconds} s")
        elif args.action == "leader":
            print(cluster.leader_of(args.target) or f"no queue {args.target!r}")
        elif args.action == "urls":
            print("\n".join(cluster.urls()))
    except HelpersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
