"""Every setting of the package in one place: paths, ``HELPERS_*`` variables, mode names.

Each ``HELPERS_*`` variable is read once, when this module is imported; the variables that
name a broker (``AMQP_URL``, ``HELPERS_MANAGEMENT_URL``, ``RABBITMQ_SERVER``) are read each
time a broker is resolved, through the functions at the end, so a process can switch
brokers. Only the standard library is imported here: a worker process imports this module.
"""
from __future__ import annotations

import os
from pathlib import Path

# -- paths ------------------------------------------------------------------------------

#: The checkout: the parent of the ``helpers`` package, when helpers is used from a clone.
CHECKOUT = Path(__file__).resolve().parent.parent
#: Where the private node keeps its data, logs and state file (``HELPERS_STATE_DIR``).
STATE_DIR = Path(os.environ.get("HELPERS_STATE_DIR") or CHECKOUT / ".broker")
#: Where the private cluster keeps its members' folders and its own state
#: (``HELPERS_CLUSTER_DIR``; the cluster's nodes are apart from the single private node's).
CLUSTER_DIR = Path(os.environ.get("HELPERS_CLUSTER_DIR") or STATE_DIR / "cluster")
#: Where recorded runs go (gitignored): ``<time>-<label>/deliveries.csv`` and ``summary.json``.
RUNS_DIR = CHECKOUT / "data" / "runs"
#: The compose file whose ``rabbitmq`` service ``docker compose`` starts and stops.
COMPOSE_FILE = CHECKOUT / "docker-compose.yml"

# -- HELPERS_* variables -----------------------------------------------------------------

#: How long a broker may take to boot before we give up, seconds (``HELPERS_BOOT_TIMEOUT``).
BOOT_TIMEOUT_S = float(os.environ.get("HELPERS_BOOT_TIMEOUT", "90"))
#: How long a producer keeps trying to reach a broker that went away, seconds
#: (``HELPERS_RECONNECT_FOR``). A private node takes 7-15 s to stop and boot on 2 cores.
RECONNECT_FOR_S = float(os.environ.get("HELPERS_RECONNECT_FOR", "90"))
#: How long a publisher waits while the broker blocks it (a disk or memory alarm) before it
#: gives up with one sentence, seconds (``HELPERS_BLOCKED_TIMEOUT``).
BLOCKED_TIMEOUT_S = float(os.environ.get("HELPERS_BLOCKED_TIMEOUT", "60"))
#: Longest task (seconds, after the speed factor) a thread-mode worker runs in its I/O thread
#: (``HELPERS_INLINE_MAX_S``); capped at a quarter of the heartbeat interval. 0 turns it off.
INLINE_MAX_S = float(os.environ.get("HELPERS_INLINE_MAX_S", "0.25"))
#: Most bytes the latency proxy holds per direction of a connection before it stops reading,
#: as a full TCP window would (``HELPERS_PROXY_MAX_HELD_BYTES``): far above what any prefetch
#: here puts in flight, low enough that a stuck reader cannot eat the memory.
PROXY_MAX_HELD_BYTES = int(os.environ.get("HELPERS_PROXY_MAX_HELD_BYTES", str(8 << 20)))

#: The queue of the tutorial's scripts, ``helpers/tutorial/`` (``HELPERS_TUTORIAL_QUEUE``): the
#: tutorial's own name, so they share it with the tutorial's ``worker.py`` and ``new_task.py``.
TUTORIAL_QUEUE = os.environ.get("HELPERS_TUTORIAL_QUEUE") or "task_queue"

#: Whether a pool forks its workers from a warm fork server (``helpers.pool.forkserver``) rather
#: than starting a fresh interpreter for each (``HELPERS_FORK_SERVER``, 1 or 0; default 0:
#: opt-in until the whole suite has run green with it three times in a row on every broker
#: version CI covers; see docs/configuration.md for the runs so far).
FORK_SERVER = os.environ.get("HELPERS_FORK_SERVER", "0").strip().lower() in ("1", "yes", "true")

# -- the private node --------------------------------------------------------------------

#: The largest message body the private node accepts (bytes); small, so the limit can be shown.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: How long a restart waits for the old node's ports to be released before it picks new
#: ones (clients reconnect to the same URL only when the ports are kept), seconds.
PORT_RELEASE_S = 15.0
#: How often the private node refreshes the statistics the management API serves (ms).
STATS_INTERVAL_MS = 250
#: How often each quorum queue of the private node publishes its counts (ready,
#: unacknowledged: what the management API and rabbitmqctl show), ms. RabbitMQ's default is
#: 5000 (``rabbit.quorum_tick_interval``, read when a queue is declared); RabbitMQ's own test
#: suites shorten it to 1000 as well. The AMQP counts (a passive declare) are exact either way.
QUORUM_TICK_MS = 1000

#: Seconds between the last queue declaration and a crash (SIGKILL) of the node, wherever a
#: crash is done on purpose (notebook 03's survival table, the ``crash`` fault). RabbitMQ
#: writes a new queue's registration to disk about 1 s after confirming the declaration
#: (measured 0.9-1.1 s for quorum queues on 3.10.8 and 4.0.5; a durable classic queue declared
#: ~1 s before a crash was seen to vanish 1 run in 3): a node SIGKILLed before then comes back
#: without the queue, or with a quorum queue empty and its confirmed messages orphaned on disk
#: (4.x logs "Starting member as a new one. Context: name_not_registered"). Real queues are
#: declared long before a crash, so the experiments let the declarations reach the disk first.
#: A clean stop writes them down itself.
SETTLE_S = 3.0
#: How long a count after a start waits for a quorum queue's member to finish recovering:
#: until then a passive declare answers 0 messages (seen on 4.0.5 right after a fast boot,
#: with all 100 there a moment later). A queue that really lost them reads 0 throughout.
RECOVERY_WAIT_S = 10.0

# -- the private cluster ----------------------------------------------------------------

#: Members of a cluster when nobody says otherwise: the smallest that survives a node loss.
CLUSTER_NODES = 3
#: The most members a private cluster may have (each is a node of its own on this machine).
CLUSTER_MAX_NODES = 9
#: Peer discovery retries and their interval (ms) on RabbitMQ 3.x: there the node holding the
#: discovery lock retries peers that have no tables yet (10 x 500 ms by default: time lost on
#: every first boot), and no peer can have any while it holds the lock. 4.x keeps its own
#: (longer) defaults: a node that runs out of retries boots alone, and two lonely nodes make
#: two clusters.
CLUSTER_DISCOVERY_RETRIES_3X, CLUSTER_DISCOVERY_INTERVAL_MS_3X = 3, 300
#: A private cluster's ``consumer_disconnected_timeout`` (ms), where RabbitMQ has it (4.3):
#: how long a quorum queue keeps the unacked messages of a consumer whose node is lost
#: before it delivers them to another (60 s by default there: the node may only be cut off).
#: Notebook 07's leader kill would wait that long for the tasks the dead node's workers held;
#: 3.10 and 4.0 return them at once (docs/versions.md, tests/test_cluster_facts.py).
CLUSTER_DISCONNECTED_TIMEOUT_MS = 5000

# -- the compose broker ------------------------------------------------------------------

#: Where ``docker compose up -d`` publishes the broker (127.0.0.1 only).
COMPOSE_URL = "amqp://guest:guest@localhost:5672/%2F"
#: The compose broker's management API.
COMPOSE_MANAGEMENT_URL = "http://localhost:15672"
#: How long one management API request may take before the API counts as not answering (s).
MANAGEMENT_TIMEOUT_S = 5.0

# -- names and modes ---------------------------------------------------------------------

#: The tutorial's queue name; experiments use unique names so runs never share a queue.
DEFAULT_QUEUE = "task_queue"
#: Queue types a ``QueueSpec`` may name.
QUEUE_KINDS = ("classic", "quorum")
#: The queue type everything starts from: the official tutorial declares ``task_queue`` as a
#: quorum queue (``--queue-type classic`` on the command line, or a panel control, switches).
DEFAULT_QUEUE_KIND = "quorum"

# -- dead-lettering ----------------------------------------------------------------------

#: The policy that dead-letters rejected messages of the project's queues (no queue
#: arguments, so ``task_queue`` stays declared exactly as the tutorial declares it).
DEAD_LETTER_POLICY = "helpers-dead-letter"
#: The queues it applies to: ``task_queue`` and the names the project gives its own queues
#: (``wq-...`` runs, ``test-...`` tests, ``bench-...`` benchmarks), not the ``.dead`` queues.
DEAD_LETTER_PATTERN = r"^(task_queue|(wq|test|bench)-.+)(?<!\.dead)$"
#: Its priority: a policy of higher priority on the same queue replaces it (one per queue).
DEAD_LETTER_PRIORITY = 1
#: The exchange the policy dead-letters to; each ``<queue>.dead`` is bound to it with the
#: queue's name, the routing key a message published to the queue keeps.
DEAD_LETTER_EXCHANGE = "helpers.dead-letter"
#: How a worker acknowledges: after the work, as the broker sends (auto_ack), or never.
ACK_MODES = ("manual", "auto", "never")
#: Where a worker does the work: a work thread (heartbeat-safe) or in the delivery callback.
WORK_MODES = ("thread", "blocking")
#: What a task does for its duration.
TASK_KINDS = ("sleep", "cpu")
#: The kind of a poison task: the worker that runs it dies half-way (notebook 06).
POISON_KIND = "crash"
#: The kind of a failing task: it raises after its duration, every time (notebook 08).
FAIL_KIND = "fail"
#: What a worker does with a task that failed: dead-letter it, requeue it at once (the hot
#: loop), or send it to the retry queue of its attempt (``helpers.worker.failure``).
FAILURE_MODES = ("reject", "requeue", "retry")
#: What a worker does on SIGTERM: finish the task in hand, ack, close and exit 0
#: (``helpers.worker.shutdown``), or die at once, mid-task, as Python's default does.
SIGTERM_MODES = ("graceful", "die")
#: Queue overflow behaviours this project declares (``x-overflow``) with ``x-max-length``.
OVERFLOW_MODES = ("reject-publish", "drop-head")
#: How the producer waits for publisher confirms: pipelined, one by one, or not at all.
CONFIRM_MODES = ("pipelined", "each", "none")
#: AMQP carries the prefetch count in 16 bits (0 means no limit).
MAX_PREFETCH = 65535


# -- variables read at each resolution ---------------------------------------------------

def amqp_url() -> str | None:
    """``AMQP_URL``: an external broker to use instead of a private node."""
    return os.environ.get("AMQP_URL") or None


def management_url() -> str | None:
    """``HELPERS_MANAGEMENT_URL``: the management API of the broker ``AMQP_URL`` names.

    It may carry its own credentials (``http://user:password@host:15672``); without them
    the AMQP URL's are used. Unset: no management API (figures come over AMQP instead).
    """
    return os.environ.get("HELPERS_MANAGEMENT_URL") or None


def rabbitmq_server() -> str | None:
    """``RABBITMQ_SERVER``: the ``rabbitmq-server`` script to run the private node from."""
    return os.environ.get("RABBITMQ_SERVER") or None
