"""A clean shutdown on SIGTERM, what a deploy sends (``docker stop``, ``systemctl stop``,
Kubernetes): ``--on-sigterm graceful|die``.

``graceful`` (the default): the signal handler starts a thread that asks pika's I/O loop
(``add_callback_threadsafe``) to cancel the consumer (``basic_cancel``): the broker sends
this worker nothing more, and pika requeues what was prefetched but not yet handed to the
work. ``start_consuming`` then returns; the worker finishes the task in hand, acks it,
closes the connection and exits 0: within the task's time and about a second, with nothing
redelivered and nothing done twice.

``die``: Python's default for SIGTERM, as the tutorial's ``worker.py`` has it: the process
ends at once, mid-task; the broker requeues the unacknowledged task (``redelivered=True``)
and another worker does it again from the start, side effects included.
"""
from __future__ import annotations

import os
import signal
import threading
import time


class GracefulStop:
    """The SIGTERM handling of one ``Worker``."""

    def __init__(self, worker):
        self.worker = worker
        #: when SIGTERM arrived (``time.time()``), None until then
        self.requested_t: float | None = None

    def install(self) -> None:
        """Handle SIGTERM (from the main thread only, as Python requires) unless ``die``."""
        if (self.worker.config.on_sigterm == "graceful"
                and threading.current_thread() is threading.main_thread()):
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, _signum, _frame) -> None:
        # A signal handler runs between two bytecodes of the main thread, which may hold a
        # lock of pika's: hand the request to a thread of its own.
        if self.requested_t is None:
            self.requested_t = time.time()
            threading.Thread(target=self._request, name="sigterm", daemon=True).start()

    def _request(self) -> None:
        worker = self.worker
        worker.emit("stopping", signal="SIGTERM")
        conn = worker._conn
        try:
            conn.add_callback_threadsafe(self._cancel)
        except Exception:  # noqa: BLE001 - no connection (yet, or any more): nothing in hand
            os._exit(0)

    def _cancel(self) -> None:
        channel = self.worker._channel
        if channel is not None and channel.is_open:
            channel.stop_consuming()  # basic_cancel; start_consuming returns once it is done

    @property
    def requested(self) -> bool:
        return self.requested_t is not None

    def finish(self, conn) -> None:
        """Let the work thread finish what it holds, send its acks, close, report."""
        worker = self.worker
        while worker._jobs.unfinished_tasks:
            conn.process_data_events(time_limit=0.05)
        conn.process_data_events(time_limit=0)  # the last ack, handed over by the work thread
        conn.close()
        worker.emit("stopped", after_s=round(time.time() - self.requested_t, 3))
