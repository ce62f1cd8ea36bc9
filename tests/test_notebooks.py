"""The notebooks: committed clean, and executed top to bottom against real brokers.

The executions are slow (notebook 03 restarts the broker twice) and share the session's
broker: a kernel inherits this process's environment, so it resolves the same broker
(``AMQP_URL`` for an external one, ``HELPERS_STATE_DIR`` for the private node). Every
notebook runs a second time against a broker like many users' own: a second node, started
here with the private-node code in a state folder of its own and no plugin at all (no
management API), reached through ``AMQP_URL``. The time each notebook took is printed in a
"notebooks" section at the end of the test run.

Where this run's browser test has run a notebook successfully, the headless run of it
against the session's broker is skipped: the browser test ran every cell on the same broker
and fails on any error output, so the second run would only add minutes to CI. A browser
test that failed, was skipped (no Chromium) or has not run (deselected; pytest runs
``test_browser.py`` first) leaves its notebook to the headless run.
"""
import json
import re
import time
from pathlib import Path

import pytest

from helpers.cli import notebooks as nbrun
from helpers.broker.model import find_rabbitmq_server

from support import IN_CI, PHASES, kernel_environment, skip_without_frameworks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = nbrun.notebook_paths([ROOT / "notebooks"])
EXPECTED = ["01_round_robin", "02_acknowledgements", "03_durability", "04_fair_dispatch",
            "05_scaling", "06_pitfalls", "07_cluster", "08_retries_and_order",
            "09_frameworks"]
WIDGET = "application/vnd.jupyter.widget-view+json"
#: Code cells stay short; anything longer belongs in helpers/.
MAX_CELL_LINES = 9


class _Timings:
    """A plugin registered while the tests run, so the timings print at the very end."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def pytest_terminal_summary(self, terminalreporter):
        if not self.seconds:
            return
        terminalreporter.section("notebooks")
        for name, seconds in self.seconds.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
        terminalreporter.write_line(f"all notebooks: {sum(self.seconds.values()):.1f} s")


@pytest.fixture(scope="session")
def timings(request):
    manager = request.config.pluginmanager
    plugin = manager.get_plugin("notebook-timings")
    if plugin is None:
        plugin = _Timings()
        manager.register(plugin, "notebook-timings")
    return plugin


@pytest.fixture
def kernel_env(broker, monkeypatch):
    """Point the kernels this test starts at the session's broker."""
    if broker.kind == "private":
        monkeypatch.delenv("AMQP_URL", raising=False)
    for name, value in kernel_environment(broker).items():
        monkeypatch.setenv(name, value)
    return broker


@pytest.fixture
def bare_env(bare_node, monkeypatch):
    """Point the kernels at the second node as an external broker, with no management URL."""
    monkeypatch.setenv("AMQP_URL", bare_node.url)
    monkeypatch.delenv("HELPERS_MANAGEMENT_URL", raising=False)
    return bare_node


def test_the_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_and_short(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "a notebook without code"
    for cell in code:
        source = "".join(cell["source"])
        assert cell["outputs"] == [] and cell["execution_count"] is None, \
            f"{path.name}: commit notebooks without outputs ({source[:40]!r})"
        assert source.count("\n") + 1 <= MAX_CELL_LINES, \
            f"{path.name}: a code cell of more than {MAX_CELL_LINES} lines: {source[:60]!r}"
        assert not re.search(r"amqp://|localhost:\d|127\.0\.0\.1", source), \
            f"{path.name}: a hard-coded broker address"
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for heading in ("## What you will see", "## Summary", "## Try this"):
        assert heading in markdown, f"{path.name}: no '{heading}' section"


#: How many main runs each notebook asks about first (a one-line "**Predict:**" question).
PREDICTIONS = {"01_round_robin": 1, "02_acknowledgements": 2, "03_durability": 2}


@pytest.mark.parametrize("name", sorted(PREDICTIONS))
def test_each_main_run_is_preceded_by_a_one_line_prediction(name):
    """A "Predict:" cell is one line ending in a question mark, and the next cell runs code."""
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    asks = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
            and "".join(c["source"]).startswith("**Predict:**")]
    assert len(asks) == PREDICTIONS[name], f"{name}: {len(asks)} predictions"
    for i in asks:
        text = "".join(cells[i]["source"]).strip()
        assert "\n" not in text and text.endswith("?"), f"{name}: {text!r}"
        assert cells[i + 1]["cell_type"] == "code", f"{name}: {text!r} is not followed by a run"


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(path, kernel_env, timings, record_property, request):
    if path.stem == "07_cluster" and find_rabbitmq_server() is None:
        if IN_CI:
            pytest.fail("CI needs rabbitmq-server for notebook 07's private cluster")
        pytest.skip("notebook 07 runs a private cluster: no rabbitmq-server here")
    skip_without_frameworks(path.stem)
    reason = skip_reason(path.stem, _browser_phases(request, path.stem))
    if reason:
        pytest.skip(reason)
    _outputs, took = _run_checked(path, timings, path.name)
    record_property("seconds", round(took, 1))


def _browser_phases(request, stem: str) -> dict[str, str] | None:
    """The outcome of each phase of this session's browser test of notebook ``stem`` so
    far (empty: not run yet); None when that test is not in the session."""
    for item in request.session.items:
        if (item.nodeid.startswith("tests/test_browser.py::")
                and item.nodeid.endswith(f"[{stem}]")):
            return dict(item.stash.get(PHASES, {}))
    return None


def skip_reason(stem: str, browser_phases: dict[str, str] | None) -> str | None:
    """Why the headless run of notebook ``stem`` is left out, or None to run it: only a
    browser test of it that ran and passed (set-up and call passed, no phase failed) stands
    in for it; one that failed, was skipped or has not run does not."""
    phases = browser_phases or {}
    if phases.get("call") != "passed" or "failed" in phases.values():
        return None
    return (f"{stem} ran top to bottom, and passed, in this run's browser test, on the same "
            "broker, which fails on any error output (CI's time: one run, not two)")


@pytest.mark.parametrize("phases", [
    None,                                                 # the browser test not selected
    {},                                                   # selected, not run yet
    {"setup": "skipped", "teardown": "passed"},           # no Chromium
    {"setup": "failed", "teardown": "passed"},            # JupyterLab did not start
    {"setup": "passed", "call": "failed", "teardown": "passed"},
    {"setup": "passed", "call": "skipped", "teardown": "passed"},
    {"setup": "passed", "call": "passed", "teardown": "failed"},
])
def test_the_headless_run_is_kept_unless_the_browser_test_passed(phases):
    assert skip_reason("06_pitfalls", phases) is None


def test_the_headless_run_is_left_out_after_a_browser_test_that_passed():
    reason = skip_reason("06_pitfalls", {"setup": "passed", "call": "passed"})
    assert reason.startswith("06_pitfalls ran top to bottom, and passed, in this run's browser")
    assert skip_reason("06_pitfalls", {"setup": "passed", "call": "passed",
                                       "teardown": "passed"}) == reason


def _run_checked(path: Path, timings, label: str):
    """Execute ``path``; check it ran clean and showed a plot and a widget; return it."""
    started = time.monotonic()
    nb = nbrun.execute(path, timeout=300)
    took = time.monotonic() - started
    timings.seconds[label] = took
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{label}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{label}: no plot"
    assert any(WIDGET in o.get("data", {}) for o in outputs), f"{label}: no widget"
    assert took < 120, f"{label} took {took:.0f} s (the defaults should take under a minute)"
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    empty = EMPTY_CELL.findall(html)
    assert not empty, f"{label}: a table shows {empty} where it should say why the cell is empty"
    return outputs, took


#: a table cell that shows a missing figure as pandas prints it, not as a reason
EMPTY_CELL = re.compile(r"<td>\s*(NaN|None|nan|-?inf|&lt;NA&gt;)\s*</td>")


#: Without a management API a run differs in one place, the same code for every notebook:
#: the queue gets its dead-letter settings as arguments, not from a policy
#: (``helpers.broker.dead_letter``). These notebooks read nothing else from the API, so this
#: pass runs them for nothing the others do not check (CI's time: it is the 40-minute budget's
#: largest share): 02, 03, 04, 06 and 08 read the API or set policies, and run below.
SAME_WITHOUT_MANAGEMENT = ("01_round_robin", "05_scaling", "09_frameworks")

#: Notebooks this pass does not apply to, and why (skipped before the bare node is started).
NO_MANAGEMENT_SKIP = {name: "its lessons read nothing from the management API: without one "
                            "it differs only in how the queue gets its dead-letter settings, "
                            "which the other notebooks of this pass check"
                      for name in SAME_WITHOUT_MANAGEMENT} | {
    "07_cluster": "notebook 07 kills and starts nodes, so it runs on its own private cluster "
                  "(management API included: it asks which node leads the queue), never on a "
                  "broker named by AMQP_URL; the headless pass (or the browser test) covers it"}


#: Where a notebook's code calls one of these, its run against the node without a management
#: plugin must print the sentence that says where the figures came from instead.
WORD_ON_SOURCES = {
    "forgotten_ack.": "No management API answered",  # 02: the queue's figures over time
    "backlog.": "No management API answered",        # 04: the same
    "pitfalls.POISON": "no policy could be set",      # 06: who dead-lettered the poison
}


def _visible_text(outputs) -> str:
    """What a reader sees as text: streams, errors and plain-text data (not the HTML, whose
    highlighted source carries pygments' CSS, "Generic.Traceback" included)."""
    return json.dumps([[out.get("text", ""), out.get("ename", ""), out.get("evalue", ""),
                        out.get("traceback", []), out.get("data", {}).get("text/plain", "")]
                       for out in outputs])


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.no_management
@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.skip(reason=NO_MANAGEMENT_SKIP[p.stem]))
    if p.stem in NO_MANAGEMENT_SKIP else p for p in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_runs_without_a_management_api(path, bare_env, timings, record_property):
    """Top to bottom against a broker with no management plugin, through AMQP_URL."""
    skip_without_frameworks(path.stem)
    outputs, took = _run_checked(path, timings, f"{path.name} (no management API)")
    record_property("seconds", round(took, 1))
    text = _visible_text(outputs)
    for word in ("did not answer", "Traceback"):
        at = text.find(word)
        assert at < 0, f"{path.name} showed {word!r}: ...{text[max(0, at - 800):at + 400]}..."
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                   if c["cell_type"] == "code")
    for call, sentence in WORD_ON_SOURCES.items():
        if call in code:
            assert sentence in text, f"{path.name}: no word on where the figures came from"


def test_a_headless_kernel_runs_over_ipc_without_the_tcp_warning(tmp_path, capfd):
    """``make run`` and these tests start kernels over IPC: ipykernel's "Kernel is running
    over TCP without encryption" warning (once per notebook over TCP) does not appear."""
    import nbformat

    path = tmp_path / "01_tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("6 * 7")]), path)
    cells = []
    nb = nbrun.execute(path, timeout=60, on_cell=lambda: cells.append(1))
    assert nb.cells[0].outputs[0]["data"]["text/plain"] == "42" and cells == [1]
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out


@pytest.mark.parametrize("name", SAME_WITHOUT_MANAGEMENT)
def test_a_notebook_left_out_of_the_bare_node_pass_reads_nothing_from_the_api(name):
    """The reason given for leaving it out stays true: none of its lessons' calls that read
    the management API or set a policy appears in its code."""
    path = next(p for p in NOTEBOOKS if p.stem == name)
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                   if c["cell_type"] == "code")
    assert not [call for call in WORD_ON_SOURCES if call in code]
    assert "monitor=True" not in code and "management" not in code
