"""The notebooks in a real browser: JupyterLab in headless Chromium, driven by Playwright.

For every notebook in ``notebooks/``: open it, run all cells, check that no cell printed an
error and no widget failed to display, then do what ``CLICKS`` says in one panel (move a
slider, press Run, in 02 press Kill during the run), wait for the run to finish and its new
figure to appear, and check the text the run must show. The browser's console errors fail
the test. A screenshot per notebook lands in ``build/browser/<notebook>.png`` (the panel
that was clicked), and one per output area in ``build/browser/<notebook>/``, to look at.

It needs Chromium (``.ci/ensure-chromium`` installs Debian's package); without one it skips
with a sentence, except under ``CI=true``, where it fails.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser_lab import Lab, find_chromium, launch_chromium
from support import IN_CI, eventually, kernel_environment, skip_without_frameworks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
SHOTS = ROOT / "build" / "browser"


@dataclass(frozen=True)
class Clicks:
    """What the test does in one panel of a notebook."""

    panel: str          #: the start of the panel's bold title
    slider: str         #: the label of the slider to move, exactly as shown
    value: float        #: where to move it (with the arrow keys)
    expect: str         #: text the panel's output must show after the run
    kill: bool = False  #: press Kill once the run has finished its first task


#: One entry per notebook: adding a notebook is adding its line here.
CLICKS = {
    "01_round_robin": Clicks("Round robin", "workers (K)", 4, expect="w4"),
    "02_acknowledgements": Clicks("Kill a worker", "kill after s (0 = by hand)", 0,
                                  expect="redelivered=True", kill=True),
    "03_durability": Clicks("What survives", "messages per queue", 90, expect="90/90"),
    "04_fair_dispatch": Clicks("Round robin (prefetch 0)", "workers", 3, expect="w3"),
    "05_scaling": Clicks("Workers on a far host", "round trip added, ms", 23, expect="23.0"),
    "06_pitfalls": Clicks("Try a pitfall", "workers", 2, expect="then dead-lettered"),
    "07_cluster": Clicks("Kill a node of the cluster", "workers", 4, expect="leader-kill"),
    "08_retries_and_order": Clicks("Back-pressure", "max length", 30, expect="reject-publish"),
    "09_frameworks": Clicks("Pika, Celery and Dramatiq", "workers", 3,
                            expect="Celery acks_late, prefetch 1"),
}


#: Run in a notebook's kernel once all its cells have run: the titles of each figure its
#: cells returned (IPython's ``Out``: what a cell's last line showed) and the tables returned
#: after it, up to the next figure (the tables that go with it), as JSON: a list of groups.
TITLES_AND_TABLES = """
import json as _json
import matplotlib.figure as _figure
import pandas as _pd
_groups = []
for _key in sorted(Out):
    _value = Out[_key]
    if isinstance(_value, _figure.Figure):
        _titles = [a.get_title() for a in _value.axes if a.get_title()]
        if _value._suptitle is not None:
            _titles.append(_value._suptitle.get_text())
        _groups.append({"titles": _titles, "tables": []})
    elif isinstance(_value, _pd.DataFrame) and _groups:
        _groups[-1]["tables"].append(_value.reset_index().astype(str).to_dict("list"))
print(_json.dumps(_groups))
"""

#: ``12 lost``, ``0.75 s``, ``3 redelivered``: a number and the word after it, in a title.
NUMBER_WORD = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?) ([A-Za-z_]{3,})")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def title_table_disagreements(titles: list[str], tables: list[dict]) -> list[str]:
    """Where a figure's title states a number of something a table has a numeric column for
    (``3 lost`` and a column ``lost``; ``1 redelivered`` and ``redeliveries``: the first five
    letters agree), the title's number must be in that column, in the rows whose text is in
    the title (a table with a row per run, labelled as the figure's panel) or else in any
    row. Each disagreement, in one sentence."""
    problems = []
    for title in titles:
        for number, word in NUMBER_WORD.findall(title):
            stem = word.lower()[:5]
            for table in tables:
                rows = range(len(next(iter(table.values()), [])))
                # The row a panel's title is about: its label opens the title ("too long: ..."),
                # else its text is somewhere in it, else any row.
                named = [i for i in rows if any(title.startswith(f"{col[i]}:".replace("-", " "))
                                                for col in table.values())] \
                    or [i for i in rows if any(len(str(col[i])) >= 6 and str(col[i]) in title
                                               for col in table.values())] or list(rows)
                for column, values in table.items():
                    if not str(column).lower().startswith(stem) or not _counts(column):
                        continue
                    numbers = [_number(values[i]) for i in named]
                    if all(v is None for v in numbers):
                        continue  # not a column of numbers
                    if float(number) not in numbers:
                        problems.append(f"the title {title!r} says {number} {word}; the "
                                        f"table's {column!r} says {values}")
    return problems


#: words in a column's name that make it a rate, a duration or a ratio, not a count
NOT_A_COUNT = {"per", "s", "ms", "tps", "ratio", "pct", "over"}


def _counts(column) -> bool:
    """Whether ``column`` holds counts (``lost``, ``tasks``), not ``tasks_per_s`` or ``busy_s``."""
    return not NOT_A_COUNT & set(str(column).lower().replace(" ", "_").split("_")[1:])


def test_a_title_that_disagrees_with_its_table_is_found():
    table = {"run": ["auto_ack", "manual acks, prefetch 1"], "lost": ["3", "0"],
             "redeliveries": ["0", "1"], "worker": ["w1", "w2"]}
    agree = ["manual acks, prefetch 1: w1 killed at 0.64 s; 0 lost, 1 redelivered",
             "3 workers, 12 equal tasks"]
    assert title_table_disagreements(agree, [table]) == []
    wrong = ["manual acks, prefetch 1: w1 killed at 0.64 s; 1 lost, 1 redelivered"]
    found = title_table_disagreements(wrong, [table])
    assert len(found) == 1 and "1 lost" in found[0], found
    rates = {"workers": ["2", "8"], "tasks_per_s": ["182.79", "163.85"], "tasks": ["240", "240"]}
    assert title_table_disagreements(["A backlog of 240 tasks: 2 workers, then 8"], [rates]) == []
    assert title_table_disagreements(["A backlog of 250 tasks"], [rates])
    runs = {"run": ["too-long", "split", "longer"], "deliveries": ["5", "5", "1"]}
    assert title_table_disagreements(["too long: one task longer than the timeout: 5 deliveries",
                                      "longer: the task given a longer timeout: 1 deliveries"],
                                     [runs]) == []  # the row its label opens, not "longer"


class _Timings:
    """Prints the seconds each notebook took in the browser, at the end of the run."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def pytest_terminal_summary(self, terminalreporter):
        if self.seconds:
            terminalreporter.section("browser")
            for name, seconds in self.seconds.items():
                terminalreporter.write_line(f"{name}: {seconds:.1f} s")
            terminalreporter.write_line(f"all notebooks in the browser: "
                                        f"{sum(self.seconds.values()):.1f} s")


@pytest.fixture(scope="module")
def timings(request):
    manager = request.config.pluginmanager
    plugin = manager.get_plugin("browser-timings")
    if plugin is None:
        plugin = _Timings()
        manager.register(plugin, "browser-timings")
    return plugin


@pytest.fixture(scope="module")
def chromium():
    found = find_chromium()
    if found is None:
        message = ("No Chromium found (set CHROMIUM, or run .ci/ensure-chromium to install "
                   "Debian's chromium), so the notebooks were not tried in a browser.")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def lab(broker, chromium, tmp_path_factory):
    """A JupyterLab server and a browser page factory, both ended when the module ends."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    workdir = tmp_path_factory.mktemp("lab")
    env = kernel_environment(broker)
    server = Lab(NOTEBOOKS, workdir, env)
    if "AMQP_URL" not in env:  # a private node: found through its state folder only
        server.env.pop("AMQP_URL", None)
    playwright = context = None
    try:
        server.start()
        playwright = playwright_api.sync_playwright().start()
        context = launch_chromium(playwright, chromium, workdir / "chromium-profile")
        yield server, context
    finally:
        if context is not None:
            context.close()
        if playwright is not None:
            playwright.stop()
        server.stop()


# -- what the test does on a page -----------------------------------------------------------

PROMPTS_JS = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt'),
    e => e.textContent.trim())"""


def run_all_cells(page, code_cells: int, idle, timeout: float = 240) -> None:
    """Run > Run All Cells, then wait until every code cell has its execution number, or
    until the kernel is idle with cells left unrun (an error stopped the run)."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    time.sleep(1)

    def done():
        prompts = page.evaluate(PROMPTS_JS)
        if len(prompts) == code_cells and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            return True
        if error_outputs(page) and idle():
            raise AssertionError(f"a cell failed: {error_outputs(page)[0][-1500:]}")
        return False
    try:
        eventually(done, timeout, "every cell to run")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the prompts read {page.evaluate(PROMPTS_JS)}") from None


def error_outputs(page) -> list[str]:
    """The text of every error or stderr output shown in the notebook."""
    return page.locator(".jp-OutputArea-output[data-mime-type="
                        "'application/vnd.jupyter.stderr']").all_inner_texts()


CUT_LABELS_JS = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .widget-label'))
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.textContent)"""


def cut_labels(page) -> list[str]:
    """Widget labels too long for their box (the browser shows them cut, with an ellipsis)."""
    return page.evaluate(CUT_LABELS_JS)


def move_slider(panel, label: str, value: float) -> None:
    """Focus the slider named ``label`` and press arrow keys until it shows ``value``."""
    slider = panel.locator(".widget-slider").filter(
        has=panel.page.locator(".widget-label", has_text=re.compile(f"^{re.escape(label)}$")))
    handle = slider.locator(".noUi-handle")
    handle.focus()
    for _ in range(200):
        now = float(handle.get_attribute("aria-valuenow"))
        if abs(now - value) < 1e-6:
            return
        handle.press("ArrowRight" if now < value else "ArrowLeft")
    raise AssertionError(f"the slider {label!r} did not reach {value}")


def counter(panel) -> tuple[int, int] | None:
    """The ``done/total`` figures beside the panel's progress bar."""
    found = re.search(r"(\d+)/(\d+)", panel.locator(".widget-hbox").first.inner_text())
    return (int(found[1]), int(found[2])) if found else None


def press_run(panel, clicks: Clicks, timeout: float = 240) -> str:
    """Press Run (and Kill, if asked), wait for the run to end; the status line's text."""
    status = panel.locator(":scope > .widget-html").last
    output = panel.locator(":scope > .widget-output")
    images_before = set(output.locator("img").evaluate_all("els => els.map(e => e.src)"))
    before = counter(panel)
    panel.get_by_role("button", name="Run").click()
    eventually(lambda: "running" in status.inner_text(), 30, "the run to start")
    assert before is None or counter(panel) != before, \
        f"the counter still shows the last run's {before[0]}/{before[1]} after Run"
    if clicks.kill:
        kill = panel.get_by_role("button", name="Kill")
        eventually(lambda: kill.is_enabled() and (counter(panel) or (0, 0))[0] >= 1, 60,
              "the first task to finish, to press Kill")
        kill.click()
        eventually(lambda: "killed" in status.inner_text(), 30, "the kill to be reported")
    eventually(lambda: "done in" in status.inner_text() or "error" in status.inner_text(),
          timeout, "the run to finish")
    text = status.inner_text()
    assert "done in" in text, f"the run ended with: {text}"
    images = eventually(lambda: set(output.locator("img").evaluate_all(
        "els => els.map(e => e.src)")) - images_before, 30, "a new figure")
    assert images, "no new figure after Run"
    return text


def save_output_shots(page, folder: Path) -> None:
    """One screenshot per output area that shows something, to look at."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    for i in range(cells.count()):
        area = cells.nth(i).locator(".jp-Cell-outputWrapper")
        if area.count() and area.inner_text().strip() or area.locator("img").count():
            area.screenshot(path=str(folder / f"cell-{i + 1:02d}.png"))


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.browser
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_in_the_browser(path, lab, timings, record_property):
    skip_without_frameworks(path.stem)
    server, context = lab
    clicks = CLICKS.get(path.stem)
    assert clicks is not None, f"add what to click in {path.name} to CLICKS in {__name__}"
    code_cells = sum(c["cell_type"] == "code" for c in json.loads(path.read_text())["cells"])
    console: list[str] = []
    started = time.monotonic()
    page = context.new_page()
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    try:
        page.goto(server.url(path.name))
        eventually(lambda: server.kernel_state(path.name) == "idle", 90, "the notebook's kernel")
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                               timeout=90_000)
        page.keyboard.press("Control+b")  # fold the file browser away: more room to look
        run_all_cells(page, code_cells, lambda: server.kernel_state(path.name) == "idle")
        assert not error_outputs(page), f"{path.name}: {error_outputs(page)[0][:500]}"
        body = page.locator("body").inner_text()
        assert "Error displaying widget" not in body, f"{path.name}: a widget failed"
        assert not cut_labels(page), f"{path.name}: labels cut off: {cut_labels(page)}"
        groups = json.loads(server.kernel_output(path.name, TITLES_AND_TABLES))
        disagree = [problem for group in groups
                    for problem in title_table_disagreements(group["titles"], group["tables"])]
        assert not disagree, f"{path.name}: {disagree[0]}"
        record_property("titles_checked", sum(len(group["titles"]) for group in groups))
        panel = page.locator(".widget-vbox").filter(
            has=page.locator(".widget-html-content b", has_text=clicks.panel)).first
        panel.scroll_into_view_if_needed()
        move_slider(panel, clicks.slider, clicks.value)
        status = press_run(panel, clicks)
        output = panel.locator(":scope > .widget-output")
        # The report's parts arrive one by one (a figure, then tables): wait for the text.
        eventually(lambda: clicks.expect in output.inner_text(), 30,
                   f"{path.name}: {clicks.expect!r} in the panel's output")
        done, total = counter(panel)
        assert done == total, f"{path.name}: the counter ended at {done}/{total}"
        panel.scroll_into_view_if_needed()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{path.stem}.png"))
        save_output_shots(page, SHOTS / path.stem)
        assert not error_outputs(page), f"{path.name}: {error_outputs(page)[0][:500]}"
        assert not console, f"{path.name}: console errors: {console[:3]}"
        record_property("status", status)
    except Exception:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{path.stem}-failed.png"))
        raise
    finally:
        took = time.monotonic() - started
        timings.seconds[path.name] = took
        try:
            server.shut_down_kernels()
        finally:
            page.close()
    if path.stem == "07_cluster":
        no_cluster_node_left(server.env)


def no_cluster_node_left(env: dict) -> None:
    """Notebook 07's kernel, ended, leaves no node of its cluster running: its panel run,
    after the last cell had stopped the cluster, started it again."""
    from helpers import settings
    from helpers.broker.cluster import PrivateCluster

    state_dir = env.get("HELPERS_STATE_DIR")
    cluster = PrivateCluster(state_dir=Path(state_dir) / "cluster" if state_dir else
                             settings.CLUSTER_DIR)
    eventually(lambda: not any(m.node_pid() for m in cluster.members()), 60,
               "notebook 07's cluster to stop once its kernel had ended")
