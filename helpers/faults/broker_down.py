"""Stop or crash the broker in the middle of a run, and count what survived.

Worker kills live in ``runner.run(kill_every=...)``; this module is the broker's turn. Tasks
are published in small batches with publisher confirms while K workers consume them; a
second thread restarts the broker cleanly (``restart``) or SIGKILLs its node and starts it
again (``crash``). Producer and workers are left to find their way back on their own: the
producer republishes what the broker had not confirmed (``producer.publish(retry_for=...)``)
and each worker reconnects in a loop. The run ends when every confirmed task has been done
and the queue has settled.

Used by ``python -m helpers fault restart|crash`` (through ``helpers.faults.run_fault``), by
tests/test_faults.py and by the README's "Guarantees" section, so the three report the same
figures the same way.
"""
from __future__ import annotations

import threading
import time
import uuid

from .. import broker as broker_mod
from .. import settings, timing, topology
from ..connection import connect, mask_url
from ..errors import BadInputError, BrokerControlError, HelpersError
from ..monitor import wait_settled
from ..pacing import PacedPublisher
from ..pool import WorkerPool
from ..runner import RunResult
from ..tasks import Task

#: What this scenario can do to the broker: the ``Broker`` method of each name.
HOW = ("restart", "crash")


def run(how: str, workers: int, prefetch: int, tasks: list[Task], *,
                          fault_after_s: float = 1.0, batch: int = 10, pace_s: float = 0.05,
                          broker: broker_mod.Broker | None = None, timeout: float | None = None,
                          save: bool = True, label: str | None = None,
                          progress=None) -> RunResult:
    """Run ``tasks`` on ``workers`` workers and restart or crash the broker mid-run.

    Parameters
    ----------
    how: ``restart`` (clean stop, then start) or ``crash`` (SIGKILL the node, then start).
    fault_after_s: seconds after the first confirmed publish at which the broker goes down;
        publishing and consuming are both still under way then.
    batch, pace_s: tasks per publish call, and the pause between calls (publishing takes
        ``len(tasks) / batch * pace_s`` seconds or more, so the fault lands in the middle).
    progress: ``progress(done, total)`` called as tasks complete.

    The summary holds the ``run`` keys plus: ``fault``, ``down_s`` (broker unreachable),
    ``held_at_fault`` (confirmed, not yet done when it went down), ``recovered`` (of those,
    done in the end), ``confirmed_after_fault`` (published once it was back),
    ``publisher_retries`` (connection attempts after a loss),
    ``republished``, ``worker_disconnects``, ``worker_reconnects``.
    """
    from .. import runner

    if how not in HOW:
        raise BadInputError(f"the fault must be one of {', '.join(HOW)} (got {how!r}).")
    runner.validate(workers, prefetch, tasks)
    if batch < 1 or pace_s < 0 or fault_after_s < 0:
        raise BadInputError("batch must be at least 1, pace_s and fault_after_s at least 0.")
    durations = {t.id: t.duration for t in tasks}
    if len(durations) != len(tasks):
        raise BadInputError("Task ids must be unique within a run.")
    found = broker or broker_mod.get()
    if not found.can_restart:
        raise BrokerControlError(
            f"Cannot {how} the {found.kind} broker at {mask_url(found.url)} from "
            "here, so this measurement needs a private node (unset AMQP_URL).")
    label = label or f"fault-{how}"
    spec = topology.QueueSpec(f"wq-{label}-{uuid.uuid4().hex[:8]}")
    with connect(found.url, name=f"runner {spec.name}") as conn:
        channel = conn.channel()
        topology.declare(channel, spec)
        channel.queue_purge(spec.name)

    pool = WorkerPool(found.url, spec, prefetch=prefetch)
    publisher = PacedPublisher(found.url, spec, tasks, batch=batch, every_s=pace_s,
                               retry_for=settings.RECONNECT_FOR_S)
    fault: dict = {}

    def inject() -> None:
        publisher.started.wait()
        time.sleep(fault_after_s)
        fault["finished_before"] = set(pool.finished)
        fault["confirmed_before"] = set(publisher.confirmed_t)
        fault["t_down"] = time.time()
        try:
            getattr(found, how)()
        except HelpersError as exc:
            fault["error"] = str(exc)
        fault["t_up"] = time.time()

    def all_done(p: WorkerPool) -> bool:
        return not publisher.is_alive() and all(p.finished[i] for i in
                                                publisher.result.confirmed)

    injector = threading.Thread(target=inject, name="broker-fault", daemon=True)
    ideal = timing.ideal_makespan(durations.values(), workers)
    budget = timeout or (3 * ideal + 2 * settings.BOOT_TIMEOUT_S + 30)
    try:
        t_spawn = time.time()
        handles = pool.start(workers)
        spawn_s = max(h.ready_t for h in handles) - t_spawn
        names = [h.name for h in handles]
        publisher.start()
        injector.start()
        deadline = time.monotonic() + budget
        done = False
        while not done and time.monotonic() < deadline:
            done = pool.wait_for(all_done, 0.5)
            if progress is not None:
                progress(len(pool.finished), len(tasks))
        injector.join(timeout=max(1.0, deadline - time.monotonic()))
        if "error" in fault:
            raise BrokerControlError(f"The broker {how} failed: {fault['error']}")
        settled = done and wait_settled(found, spec.name)
    finally:
        pool.stop()
        topology.discard(found.url, spec)

    events = pool.snapshot()
    published = publisher.result
    held = fault.get("confirmed_before", set()) - fault.get("finished_before", set())
    t_up = fault.get("t_up", float("inf"))
    completed = {e["task"] for e in events if e["event"] == "finished"}
    summary = timing.summarize(
        events, published.published, published.confirmed, durations, names, published.t_first,
        prefetch=prefetch, ack="manual", mode="thread", spawn_s=round(spawn_s, 4), kills=0,
        completed_in_time=done,
        settled=settled, queue=spec.name, broker_version=found.version(),
        publish=published.summary(), publish_error=publisher.error,
        fault=how, fault_at_s=round(fault.get("t_down", float("nan")) - published.t_first, 3),
        down_s=round(t_up - fault.get("t_down", float("nan")), 3),
        held_at_fault=len(held), recovered=len(held & completed),
        confirmed_after_fault=len(published.confirmed - fault.get("confirmed_before", set())),
        publisher_retries=published.reconnects,
        republished=len(published.published) - len(set(published.published)),
        worker_disconnects=sum(e["event"] == "disconnected" for e in events),
        worker_reconnects=sum(e["event"] == "ready" and e.get("generation", 0) > 0
                              for e in events))
    df = timing.deliveries(events, t0=published.t_first, durations=durations)
    folder = timing.save_run(summary, df, label) if save else None
    return RunResult(summary, df, events, published, None, folder, [])


def line(summary: dict) -> str:
    """The figures of a broker-fault run in one line, as the CLI prints them."""
    s = summary
    return (f"{s['fault']} {s['fault_at_s']:.1f} s into the run, broker away {s['down_s']:.1f} s: "
            f"confirmed {s['tasks_confirmed']}, completed {s['tasks_completed']}, "
            f"lost {s['tasks_lost']}; held by the broker at the fault {s['held_at_fault']}, "
            f"recovered {s['recovered']}; duplicates {s['duplicates']}, redeliveries "
            f"{s['redeliveries']}; producer retries {s['publisher_retries']} (republished "
            f"{s['republished']}), worker reconnects {s['worker_reconnects']}")
