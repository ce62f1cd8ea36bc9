"""ipywidgets control panels for the notebooks: controls, a Run button, progress, results.

Pressing Run starts the experiment in a background thread, so the kernel stays free while
the workers run (a Kill button, for one, keeps working); a progress bar follows the run and
the figures and tables land in the panel's output area. A notebook's first run, on the
default values, calls ``panel.run()`` in a cell instead, so the notebook also runs headless.

Each ``*_panel`` function below builds the panel of one notebook section; the experiments
themselves live in ``helpers.experiments``, ``helpers.acks`` and ``helpers.durability``.
"""
from __future__ import annotations

import html
import threading
import time

import ipywidgets as w

from . import acks, durability, experiments
from .errors import HelpersError

#: Width of the controls' labels, so the sliders line up.
LABEL_STYLE = {"description_width": "170px"}
CONTROL_LAYOUT = {"width": "460px"}


def int_slider(description: str, value: int, low: int, high: int, step: int = 1):
    """An integer slider with the panels' label width."""
    return w.IntSlider(value=value, min=low, max=high, step=step, description=description,
                       style=LABEL_STYLE, layout=CONTROL_LAYOUT, continuous_update=False)


def float_slider(description: str, value: float, low: float, high: float, step: float):
    """A float slider with the panels' label width."""
    return w.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                         style=LABEL_STYLE, layout=CONTROL_LAYOUT, continuous_update=False,
                         readout_format=".2f")


def dropdown(description: str, options, value):
    """A dropdown with the panels' label width; ``options`` as ``(label, value)`` pairs."""
    return w.Dropdown(options=options, value=value, description=description,
                      style=LABEL_STYLE, layout=CONTROL_LAYOUT)


def text(description: str, value: str):
    """A one-line text box with the panels' label width."""
    return w.Text(value=value, description=description, style=LABEL_STYLE,
                  layout=CONTROL_LAYOUT, continuous_update=False)


class Panel:
    """Controls, a Run button, a progress bar, a status line and an output area.

    Parameters
    ----------
    title: shown above the controls.
    experiment: called as ``experiment(**values, progress=callback, **fixed)``.
    report: turns the experiment's result into a list of things to display.
    controls: name -> widget; each name is a keyword argument of ``experiment``.
    fixed: keyword arguments passed on every run (e.g. ``broker``).
    """

    def __init__(self, title: str, experiment, report, controls: dict, *,
                 fixed: dict | None = None):
        self.title, self.experiment, self.report = title, experiment, report
        self.controls, self.fixed = controls, dict(fixed or {})
        self.button = w.Button(description="Run", button_style="primary", icon="play")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout={"width": "260px"})
        self.count = w.Label("")
        self.status = w.HTML("")
        self.output = w.Output()
        self.result = None
        self.error: str | None = None
        self.notes: list[str] = []  # things that happened during the run, for the status
        self._thread: threading.Thread | None = None
        self.button.on_click(self._clicked)

    # -- layout ----------------------------------------------------------------------------
    def buttons(self) -> list:
        """The row under the controls (subclasses add their own buttons)."""
        return [self.button, self.progress, self.count]

    @property
    def widget(self) -> w.VBox:
        """The whole panel, as one widget."""
        if not hasattr(self, "_box"):
            self._box = w.VBox([w.HTML(f"<b>{html.escape(self.title)}</b>"),
                                *self.controls.values(), w.HBox(self.buttons()),
                                self.status, self.output])
        return self._box

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    # -- running ---------------------------------------------------------------------------
    def values(self) -> dict:
        """The controls' current values, by keyword."""
        return {name: control.value for name, control in self.controls.items()}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _progress(self, done: int, total: int) -> None:
        self.progress.max = max(int(total), 1)
        self.progress.value = min(int(done), self.progress.max)
        self.count.value = f"{done}/{total}"

    def _call(self, values: dict):
        return self.experiment(**values, progress=self._progress, **self.fixed)

    def run(self, **overrides):
        """Run the experiment now, in this thread, on the controls' values (or overrides)."""
        values = {**self.values(), **overrides}
        self.button.disabled = True
        self.notes = []
        self.status.value = "running ..."
        self.progress.value = 0
        started = time.monotonic()
        try:
            self.result = self._call(values)
        except HelpersError as exc:
            self.status.value = f"<span style='color:#b00020'>{html.escape(str(exc))}</span>"
            raise
        finally:
            self.button.disabled = False
        self.status.value = "; ".join([f"done in {time.monotonic() - started:.1f} s",
                                       *self.notes])
        return self.result

    def show(self, result=None) -> None:
        """Display the report of ``result`` (default: the last one) in the cell's output."""
        from IPython.display import display
        display(*self.report(self.result if result is None else result))

    def _clicked(self, _button=None) -> None:
        if self.running:
            return
        self._thread = threading.Thread(target=self._background, name="panel-run",
                                        daemon=True)
        self._thread.start()

    def _background(self) -> None:
        """The Run button's work: run, then replace the output area with the report."""
        self.error = None
        try:
            result = self.run()
            items = self.report(result)
        except HelpersError as exc:  # run() has already put the sentence in the status
            self.error = str(exc)
            return
        except Exception as exc:  # a bug: say so in one line rather than die silently
            self.error = f"{type(exc).__name__}: {exc}"
            self.status.value = ("<span style='color:#b00020'>unexpected error: "
                                 f"{html.escape(self.error)}</span>")
            return
        self.output.outputs = ()
        for item in items:
            self.output.append_display_data(item)

    def wait(self, timeout: float = 300) -> None:
        """Block until a run started by the button has finished (for tests and scripts)."""
        if self._thread is not None:
            self._thread.join(timeout)


class KillPanel(Panel):
    """A panel whose runs expose their worker pool, with a button to kill a chosen worker."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool = None
        self.kill_button = w.Button(description="Kill", button_style="danger", icon="times",
                                    disabled=True, layout={"width": "90px"})
        self.kill_button.on_click(self._kill)
        workers = self.controls["workers"]
        self.controls["victim"].options = self._names(workers.value)
        workers.observe(lambda change: self._renumber(change["new"]), names="value")

    @staticmethod
    def _names(n: int) -> list[str]:
        return [f"w{i}" for i in range(1, n + 1)]

    def _renumber(self, n: int) -> None:
        victim = self.controls["victim"]
        keep = victim.value if victim.value in self._names(n) else "w1"
        victim.options = self._names(n)
        victim.value = keep

    def buttons(self) -> list:
        return [self.button, self.kill_button, self.progress, self.count]

    def _attach(self, pool) -> None:
        self.pool = pool
        self.kill_button.disabled = False

    def _call(self, values: dict):
        try:
            return self.experiment(**values, progress=self._progress, on_pool=self._attach,
                                   **self.fixed)
        finally:
            self.pool = None
            self.kill_button.disabled = True

    def _kill(self, _button=None) -> None:
        pool, name = self.pool, self.controls["victim"].value
        if pool is None:
            return
        handle = pool.kill(name)
        if handle is not None:
            self.notes.append(f"killed {html.escape(name)} (pid {handle.pid}) during the run")
            self.status.value = self.notes[-1]


# -- 01 round robin ------------------------------------------------------------------------

def round_robin_panel(broker=None) -> Panel:
    """Notebook 01: workers, tasks, task duration."""
    return Panel("Round robin: K workers, N equal tasks, no prefetch limit",
                 experiments.round_robin, experiments.round_robin_report, {
                     "workers": int_slider("workers (K)", 3, 1, 8),
                     "tasks": int_slider("tasks (N)", 12, 1, 60),
                     "duration": float_slider("seconds per task", 0.3, 0.05, 2.0, 0.05)},
                 fixed={"broker": broker})


# -- 02 acknowledgements -------------------------------------------------------------------

def kill_panel(broker=None) -> KillPanel:
    """Notebook 02: kill a worker mid-task, by timer or with the Kill button."""
    return KillPanel("Kill a worker mid-task", acks.kill_run, acks.kill_report, {
        "workers": int_slider("workers", 3, 2, 6),
        "tasks": int_slider("tasks", 12, 1, 40),
        "duration": float_slider("seconds per task", 0.5, 0.1, 3.0, 0.1),
        "ack": dropdown("acknowledgements", [("manual ack", "manual"), ("auto_ack", "auto")],
                        "manual"),
        "prefetch": int_slider("prefetch (0 = no limit)", 1, 0, 10),
        "kill_after_s": float_slider("kill after s (0 = by hand)", 0.75, 0.0, 5.0, 0.05),
        "victim": dropdown("worker to kill", ["w1", "w2", "w3"], "w1")},
        fixed={"broker": broker})


def forgotten_ack_panel(broker=None) -> Panel:
    """Notebook 02: a worker that never acks."""
    return Panel("A forgotten ack", acks.forgotten_ack, acks.forgotten_ack_report, {
        "backlog": int_slider("tasks waiting at start", 20, 0, 100),
        "more": int_slider("tasks arriving later", 15, 0, 60),
        "rate": float_slider("arriving per second", 5.0, 1.0, 20.0, 1.0),
        "prefetch": int_slider("prefetch (0 = no limit)", 0, 0, 20)},
        fixed={"broker": broker})


# -- 03 durability -------------------------------------------------------------------------

HOW_OPTIONS = [("clean restart", "restart"), ("crash (SIGKILL), then start", "crash")]


def survival_panel(broker=None) -> Panel:
    """Notebook 03: four queues, one restart."""
    return Panel("What survives a restart", durability.survival, durability.survival_report, {
        "messages": int_slider("messages per queue", 100, 1, 5000, 1),
        "how": dropdown("how the broker goes down", HOW_OPTIONS, "restart")},
        fixed={"broker": broker})


def confirms_panel(broker=None) -> Panel:
    """Notebook 03: publish with confirms while the broker goes down."""
    return Panel("Publisher confirms through a restart", durability.publish_through_restart,
                 durability.confirms_report, {
                     "lead_s": float_slider("publish for s before", 1.0, 0.2, 5.0, 0.1),
                     "how": dropdown("how the broker goes down", HOW_OPTIONS, "crash"),
                     "chunk": int_slider("messages per connection", 5000, 10, 20000, 10)},
                 fixed={"broker": broker})


# -- 04 fair dispatch ----------------------------------------------------------------------

def _odd_heavy_controls(workers: int = 2) -> dict:
    return {"workers": int_slider("workers", workers, 1, 8),
            "tasks": int_slider("tasks (odd heavy, even light)", 20, 2, 100),
            "heavy": float_slider("heavy task, s", 0.2, 0.02, 2.0, 0.02),
            "light": float_slider("light task, s", 0.02, 0.0, 1.0, 0.01)}


def fair_dispatch_panel(broker=None) -> Panel:
    """Notebook 04: round robin against a prefetch limit."""
    controls = _odd_heavy_controls()
    controls["prefetch"] = int_slider("prefetch to compare", 1, 1, 20)
    return Panel("Round robin (prefetch 0) against a prefetch limit",
                 experiments.compare_prefetch, experiments.fair_dispatch_report, controls,
                 fixed={"broker": broker})


def sweep_panel(broker=None) -> Panel:
    """Notebook 04: makespan and imbalance for prefetch 1, 2, 5, 10 and unlimited."""
    return Panel("Prefetch sweep: 1, 2, 5, 10, unlimited", experiments.prefetch_sweep,
                 experiments.sweep_report, _odd_heavy_controls(), fixed={"broker": broker})


def speeds_panel(broker=None) -> Panel:
    """Notebook 04: workers of unequal speed."""
    return Panel("Workers of unequal speed", experiments.unequal_speeds,
                 experiments.speeds_report, {
                     "speeds": text("speed of each worker", "1, 3"),
                     "tasks": int_slider("tasks (all equal)", 20, 1, 100),
                     "duration": float_slider("seconds per task at speed 1", 0.2, 0.02, 2.0,
                                              0.02)},
                 fixed={"broker": broker})


def backlog_panel(broker=None) -> Panel:
    """Notebook 04: tasks arriving faster than the workers take them; then more workers."""
    return Panel("When every worker is busy, the queue fills up", experiments.backlog,
                 experiments.backlog_report, {
                     "workers": int_slider("workers at first", 2, 1, 8),
                     "add_workers": int_slider("workers added", 4, 0, 8),
                     "add_after_s": float_slider("added after s", 2.5, 0.0, 10.0, 0.5),
                     "rate": float_slider("tasks arriving per second", 8.0, 1.0, 30.0, 1.0),
                     "seconds": float_slider("arriving for s", 5.0, 1.0, 20.0, 0.5),
                     "duration": float_slider("seconds per task", 0.5, 0.05, 2.0, 0.05)},
                 fixed={"broker": broker})
