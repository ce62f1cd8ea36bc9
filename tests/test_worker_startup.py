"""What a pool's worker costs to start: the fork server's preloads cover all it imports."""
from __future__ import annotations

import json
import subprocess
import sys

from helpers.pool.forked import worker_environment

# In a fresh interpreter: import what the fork server preloads, then start a pool's worker
# (options as the pool passes them, URL in the environment) and, once it consumes, print the
# modules it imported after the preload: each one a forked worker would import on its own.
_PROBE = r"""
import json, os, sys, threading
from helpers.pool.forkserver import PRELOAD
for name in PRELOAD:
    __import__(name)
before = set(sys.modules)
from helpers.worker import options as worker_options
from helpers.core.topology import QueueSpec
ready = threading.Event()
argv = ["--events", "--queue-spec", sys.argv[1], "--name", "probe", "--no-reconnect"]
worker = worker_options.worker_from_args(worker_options.build_parser().parse_args(argv))
emit = worker.emit
def spy(event, **fields):
    emit(event, **fields)
    if event == "ready":
        ready.set()
worker.emit = spy
threading.Thread(target=worker.run, daemon=True).start()
ok = ready.wait(30)
print(json.dumps({"ready": ok, "imported": sorted(set(sys.modules) - before)}), file=sys.stderr)
os._exit(0)
"""


def test_a_pool_worker_imports_nothing_the_fork_server_did_not_preload(broker, queue):
    env = worker_environment() | {"AMQP_URL": broker.url}
    done = subprocess.run([sys.executable, "-c", _PROBE, queue.to_json()], env=env,
                          capture_output=True, text=True, timeout=60)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["ready"], done.stderr[-2000:]
    # Private modules (C parts of a preloaded module) would come with their module anyway.
    assert [m for m in report["imported"] if not m.startswith("_")] == []


def test_a_pool_worker_with_its_url_given_does_not_resolve_a_broker(broker, queue):
    """The pool passes AMQP_URL: its workers skip broker resolution and its imports."""
    probe = ("import sys; from helpers.worker import options as w; "
             "a = w.build_parser().parse_args(['--events', '--queue-spec', sys.argv[1]]); "
             "w.worker_from_args(a); print('helpers.broker.resolve' in sys.modules, "
             "'helpers.broker.private_node' in sys.modules)")
    env = worker_environment() | {"AMQP_URL": broker.url}
    done = subprocess.run([sys.executable, "-c", probe, queue.to_json()], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["False", "False"]
