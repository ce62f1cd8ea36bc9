"""The panel machinery of the notebooks: controls, a Run button, progress, results.

Pressing Run starts the experiment in a background thread, so the kernel stays free while
the workers run (a Kill button, for one, keeps working); a progress bar follows the run and
the figures and tables land in the panel's output area. A notebook's first run, on the
default values, calls ``panel.run()`` in a cell instead, so the notebook also runs headless.

Each lesson module builds its panels from these parts (``round_robin.round_robin_panel``,
``acks.kill_panel``, ...), beside the experiments they drive.
"""
from __future__ import annotations

import dataclasses
import html
import inspect
import threading
import time

import ipywidgets as w

from helpers.errors import HelpersError
from helpers.settings import DEFAULT_QUEUE_KIND

#: Width of the controls' labels, so the sliders line up; wide enough for ``LABEL_CHARS``
#: characters in JupyterLab's font (the browser test fails on any label it shows cut off).
LABEL_STYLE = {"description_width": "230px"}
CONTROL_LAYOUT = {"width": "520px"}
#: The longest control label a panel may have.
LABEL_CHARS = 30


def declared_run(run, declared):
    """A panel's experiment for ``run(value, **rest)``, ``declared`` being a lesson's run as a
    frozen dataclass: the controls named like its fields replace them, the other keywords
    (``progress``, ``broker``, a dropdown of the lesson's own) go to ``run`` as they are."""
    names = [f.name for f in dataclasses.fields(declared)]

    def experiment(**values):
        changes = {k: values.pop(k) for k in list(values) if k in names}
        return run(dataclasses.replace(declared, **changes), **values)
    # what it takes, as a signature: the declared fields with their values, then the rest
    keyword = inspect.Parameter.KEYWORD_ONLY
    fields = [inspect.Parameter(name, keyword, default=getattr(declared, name))
              for name in names]
    rest = [p.replace(kind=keyword) for p in list(inspect.signature(run).parameters.values())[1:]]
    experiment.__signature__ = inspect.Signature(fields + rest)
    return experiment


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


def queue_type(value: str = DEFAULT_QUEUE_KIND):
    """The queue type of a run: quorum (as in today's tutorial, the default) or classic."""
    return dropdown("queue type", [("quorum (as in the tutorial)", "quorum"),
                                   ("classic", "classic")], value)


def text(description: str, value: str):
    """A one-line text box with the panels' label width."""
    return w.Text(value=value, description=description, style=LABEL_STYLE,
                  layout=CONTROL_LAYOUT, continuous_update=False)


class Panel:
    """Controls, a Run button, a progress bar, a status line and an output area.

    Parameters
    ----------
    title: shown above the controls.
    experiment: called as ``experiment(**values, progress=callback, **fixed)``; it calls
        ``progress(done, total)`` as work completes, and ``progress(done, total, phase)``
        to say what it is doing meanwhile (shown in the status line).
    report: turns the experiment's result into a list of things to display.
    controls: name -> widget; each name is a keyword argument of ``experiment``.
    fixed: keyword arguments passed on every run (e.g. ``broker``).
    unit: what ``done`` and ``total`` count (``tasks``, ``messages``), shown beside the bar.
    """

    def __init__(self, title: str, experiment, report, controls: dict, *,
                 fixed: dict | None = None, unit: str = "tasks"):
        self.title, self.experiment, self.report = title, experiment, report
        self.controls, self.fixed, self.unit = controls, dict(fixed or {}), unit
        long = [c.description for c in controls.values() if len(c.description) > LABEL_CHARS]
        if long:
            raise ValueError(f"Control labels longer than {LABEL_CHARS} characters are cut "
                             f"off in the browser: {long}; shorten them.")
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

    def _progress(self, done: int, total: int, phase: str | None = None) -> None:
        self.progress.max = max(int(total), 1)
        self.progress.value = min(int(done), self.progress.max)
        self.count.value = f"{done}/{total} {self.unit}"
        if phase:
            self.status.value = f"running: {html.escape(phase)} ..."

    def _reset(self) -> None:
        """An empty bar and counter: nothing of the last run may show beside the new one."""
        self.progress.value = 0
        self.progress.bar_style = ""
        self.count.value = ""

    def _call(self, values: dict):
        return self.experiment(**values, progress=self._progress, **self.fixed)

    def run(self, **overrides):
        """Run the experiment now, in this thread, on the controls' values (or overrides)."""
        values = {**self.values(), **overrides}
        self.button.disabled = True
        self.notes = []
        self._reset()
        self.status.value = "running ..."
        started = time.monotonic()
        try:
            self.result = self._call(values)
        except HelpersError as exc:
            self._failed(str(exc))
            raise
        except Exception as exc:
            self._failed(f"unexpected error: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.button.disabled = False
        self.status.value = "; ".join([f"done in {time.monotonic() - started:.1f} s",
                                       *self.notes])
        return self.result

    def _failed(self, sentence: str) -> None:
        """The run stopped: say why; the bar turns red where it stopped, counter beside it."""
        self.progress.bar_style = "danger"
        self.status.value = f"<span style='color:#b00020'>{html.escape(sentence)}</span>"

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
        self.output.outputs = ()  # the last run's figures do not stay beside a new run
        try:
            result = self.run()
            items = self.report(result)
        except HelpersError as exc:  # run() has already put the sentence in the status
            self.error = str(exc)
            return
        except Exception as exc:  # a bug: say so in one line rather than die silently
            self.error = f"{type(exc).__name__}: {exc}"
            self._failed(f"unexpected error: {self.error}")
            return
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
        handle = getattr(pool, "kill_task", pool.kill)(name)  # a framework: the task's process
        if handle is not None:
            self.notes.append(f"killed {html.escape(name)} (pid {handle.pid}) during the run")
            self.status.value = self.notes[-1]
