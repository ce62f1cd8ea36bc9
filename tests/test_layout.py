"""The package's shape: the core never imports a lesson, and no module grows past the limit.

``helpers/`` is the library (usable without notebooks); ``helpers/lessons/`` holds one
module per notebook section. Lessons import the core, never the other way round, so the
core can be used, tested and changed without the notebooks.
"""
import ast
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
#: No module of ``helpers/`` over this many lines: one concept per module.
MAX_LINES = 300


def _modules() -> list[Path]:
    return sorted(HELPERS.rglob("*.py"))


def _core() -> list[Path]:
    return [p for p in _modules() if "lessons" not in p.relative_to(HELPERS).parts]


def _imported(source: str, package: list[str]) -> set[str]:
    """Absolute names of every module ``source`` imports, as a module of ``package``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def _package(path: Path) -> list[str]:
    return ["helpers", *path.relative_to(HELPERS).parent.parts]


def test_the_layout_is_there():
    core = {p.relative_to(HELPERS).as_posix() for p in _core()}
    assert {"settings.py", "broker.py", "private_node.py", "topology.py", "runner.py",
            "faults/__init__.py"} <= core
    assert (HELPERS / "lessons" / "common.py").exists()


@pytest.mark.parametrize("path", _core(), ids=lambda p: p.relative_to(HELPERS).as_posix())
def test_the_core_never_imports_a_lesson(path):
    lessons = sorted(n for n in _imported(path.read_text(), _package(path))
                     if n == "helpers.lessons" or n.startswith("helpers.lessons."))
    assert not lessons, f"{path.relative_to(HELPERS)} imports {lessons}: the core must not " \
                        "depend on a lesson (move what both need into the core)"


@pytest.mark.parametrize("source, package, lesson", [
    ("from ..lessons import acks", ["helpers", "faults"], "helpers.lessons.acks"),
    ("from .lessons.common import Text", ["helpers"], "helpers.lessons.common.Text"),
    ("from . import lessons", ["helpers"], "helpers.lessons"),
    ("import helpers.lessons.round_robin", ["helpers"], "helpers.lessons.round_robin"),
])
def test_the_import_check_sees_every_form_of_import(source, package, lesson):
    """The check above can fail: each way of importing a lesson is seen."""
    assert lesson in _imported(source, package)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(HELPERS).as_posix())
def test_no_module_is_over_the_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(HELPERS)} has {lines} lines (limit " \
                               f"{MAX_LINES}): split it along one of its seams"


def test_importing_the_package_and_the_worker_stays_light():
    """``python -m helpers.worker`` must start fast: no pandas, no matplotlib, no widgets."""
    import subprocess
    import sys

    code = ("import sys, helpers, helpers.worker, helpers.__main__ as cli; cli.build_parser(); "
            "heavy = {'pandas', 'matplotlib', 'ipywidgets'} & set(sys.modules); "
            "assert not heavy, heavy; helpers.QueueSpec; helpers.Task")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
