"""The pika lines the notebooks teach are shown from the code that runs (no broker)."""
import json
import re
from pathlib import Path

import pytest

from helpers.publish import confirms, outcome, producer
from helpers.measure import prefetch
from helpers.core import topology
from helpers.lessons import common, queue_types
from helpers.worker.consumer import Worker

ROOT = Path(__file__).resolve().parent.parent
#: What each notebook must show, as the source of the package: the lines it teaches.
TAUGHT = {
    "01_round_robin": ["basic_consume("],
    "02_acknowledgements": ["auto_ack=", "basic_ack(delivery_tag="],
    "03_durability": ["durable", "delivery_mode=", "confirm_delivery("],
    "04_fair_dispatch": ["basic_qos(prefetch_count="],
    "05_scaling": ["basic_qos(prefetch_count=", "(round_trip_s + task_s) / task_s",
                   "channel.basic_consume(spec.name"],
}


def test_source_names_file_and_lines_and_is_the_running_code():
    shown = common.source(Worker._ack, expect=["basic_ack(delivery_tag=tag)"])
    header, body = shown.split("\n", 1)
    assert re.fullmatch(r"# helpers/worker/consumer\.py, lines \d+-\d+: Worker\._ack", header)
    assert body.startswith("def _ack(self")  # dedented, as a reader expects
    assert "<pre" in shown._repr_html_() or "highlight" in shown._repr_html_()


def test_source_refuses_when_a_taught_line_is_gone():
    with pytest.raises(AssertionError, match="no longer hold"):
        common.source(outcome.message_properties, expect=["basic_qos("])


@pytest.mark.parametrize("name", sorted(TAUGHT))
def test_each_notebook_shows_the_lines_it_teaches(name):
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    calls = [("".join(c["source"])) for c in nb["cells"]
             if c["cell_type"] == "code"
             and re.search(r"common\.source(_line)?\(", "".join(c["source"]))]
    assert calls, f"{name} shows no source"
    scope = {"common": common, "Worker": Worker, "confirms": confirms,
             "producer": producer, "outcome": outcome, "topology": topology, "prefetch": prefetch,
             "queue_types": queue_types}
    shown = "\n".join(str(eval(call.strip(), scope)) for call in calls)  # noqa: S307
    for line in TAUGHT[name]:
        assert line in shown, f"{name} does not show {line!r}"


def test_a_decorated_function_is_shown_from_its_own_file():
    """``DedupStore.once`` is a context manager: its header names dedup.py, not contextlib."""
    from helpers.worker.dedup import DedupStore

    header = common.source(DedupStore.once).splitlines()[0]
    assert header.startswith("# helpers/worker/dedup.py, lines "), header
    assert header.endswith(": DedupStore.once"), header


def test_source_line_shows_the_one_line_that_runs():
    """A lesson's line out of a long method: its file, line number and method, then the line;
    a line that is gone from the code raises instead of showing something stale."""
    import inspect

    shown = common.source_line(Worker._consume_once, "basic_qos(prefetch_count=self.prefetch)")
    header, line, *rest = shown.split("\n")
    assert not any(rest) and "basic_qos(prefetch_count=self.prefetch)" in line
    match = re.fullmatch(r"# helpers/worker/consumer\.py, line (\d+), in Worker\._consume_once",
                         header)
    assert match, header
    lines = inspect.getsource(inspect.getmodule(Worker)).splitlines()
    assert lines[int(match[1]) - 1].strip() == line  # the number is the file's own
    with pytest.raises(AssertionError, match="no longer holds"):
        common.source_line(Worker._consume_once, "basic_qos(prefetch_count=999)")
