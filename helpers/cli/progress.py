"""Progress bars for the command line (``tqdm``), on stderr, only when stderr is a terminal.

A bar shows itself once its work has lasted ``DELAY_S`` (a short run prints nothing extra)
and is redrawn every ``TICK_S`` even when nothing completes: a broker that is down still
shows the time passing, and after ``STALL_S`` the bar says how long nothing was done. Piped or redirected, nothing is printed at all: logs and
``--json`` consumers see what they saw before. ``tqdm`` is imported only when a bar is drawn.
"""
from __future__ import annotations

import os
import sys
import threading
import time

#: a bar appears only once its work has lasted this long (seconds)
DELAY_S = 2.0
#: how often a bar is redrawn when nothing happens (seconds)
TICK_S = 0.5
#: after this long without a task done, the bar says for how long (the rate shown is old)
STALL_S = 3.0


def wanted(stream=None) -> bool:
    """True when ``stream`` (default: stderr) is a terminal, where bars belong."""
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _sized(stream) -> bool:
    """True when the terminal says how many columns and rows it has."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


class Bar:
    """``progress(done, total)`` drawn as a bar: ``with Bar("tasks") as progress: ...``.

    ``unit`` names what is counted (tasks, cells); ``total`` may be given now or by the
    first call. ``leave``: keep the final bar on screen (when it was shown at all).
    ``before``: the words before the bar until the first report (then ``desc``).
    ``write(line)`` prints a line (on stdout, or ``stream``) without tearing the bar.
    """

    def __init__(self, unit: str, total: int | None = None, desc: str | None = None,
                 leave: bool = True, stream=None, delay_s: float = DELAY_S,
                 before: str | None = None):
        self._bar = None
        self._desc = desc if before else None  # shown from the first report on
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if not wanted(stream):
            return
        from tqdm import tqdm

        stream = stream or sys.stderr
        # A terminal of unknown size (0 x 0: a pty nobody sized, as `script` makes) would
        # get no bar from tqdm at all: draw it 80 columns wide there.
        sized = _sized(stream)
        self._bar = tqdm(total=total, unit=f" {unit}", desc=before or desc, file=stream,
                         delay=delay_s, leave=leave, dynamic_ncols=sized,
                         ncols=None if sized else 80, nrows=None if sized else 24,
                         smoothing=0.1)
        self._shown_from = time.monotonic() + delay_s
        self._changed, self._stalled = time.monotonic(), False
        threading.Thread(target=self._tick, name="progress-bar", daemon=True).start()

    @property
    def shown(self) -> bool:
        """True when this bar draws (stderr is a terminal)."""
        return self._bar is not None

    def __call__(self, done: int, total: int | None = None) -> None:
        """Report ``done`` of ``total`` (the skeleton's ``progress`` callback)."""
        if self._bar is None:
            return
        with self._lock:
            if self._desc is not None:
                self._bar.set_description_str(self._desc, refresh=False)
                self._desc = None
            if total is not None and total != self._bar.total:
                self._bar.total = total
            if done != self._bar.n:
                self._changed = time.monotonic()
                if self._stalled:
                    self._stalled = False
                    self._bar.set_postfix_str("", refresh=False)
            self._bar.update(done - self._bar.n)

    def describe(self, desc: str) -> None:
        """Change the words before the bar (e.g. the notebook running now)."""
        if self._bar is not None:
            with self._lock:
                self._bar.set_description_str(desc, refresh=False)

    def write(self, line: str, stream=None) -> None:
        """Print ``line`` on ``stream`` (default: stdout); a bar on the terminal is cleared
        first and drawn again after, so the two do not run into each other."""
        stream = stream or sys.stdout
        if self._bar is None:
            print(line, file=stream, flush=True)
        else:
            from tqdm import tqdm
            with self._lock:
                tqdm.write(line, file=stream)
                stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            if now < self._shown_from:
                continue
            with self._lock:
                idle = now - self._changed
                if idle >= STALL_S and self._bar.n:  # say so: the rate shown is from before
                    self._stalled = True
                    self._bar.set_postfix_str(f"none done for {idle:.0f} s", refresh=False)
                self._bar.refresh()

    def close(self) -> None:
        """Draw the bar one last time (if shown) and stop redrawing it."""
        self._stop.set()
        if self._bar is not None:
            with self._lock:
                self._bar.close()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
