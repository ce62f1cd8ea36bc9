"""The package's shape: families in layers, no module importing from a higher layer.

``helpers/`` is the library (usable without notebooks), in families (folders). Each family
has a layer; a module imports only from its own or a lower layer, at module level and inside
functions alike, so the core can be used, tested and changed without the lessons, and no
two modules import each other. CONTRIBUTING.md has the same table in words.
"""
import ast
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
#: No module of ``helpers/`` over this many lines: one concept per module.
MAX_LINES = 300

#: family (a module's name inside ``helpers``, up to its folder) -> layer
LAYERS = {
    "settings": 0, "errors": 0, "procs": 0, "checks": 0,
    "core": 1,
    "broker": 2,
    "net": 3, "worker": 3, "publish": 3, "tutorial": 3,
    "pool": 4,
    "measure": 5, "frameworks": 5,
    "experiment": 6,
    "faults": 7,
    "lessons": 8,
    "cli": 9, "__main__": 9,
}


def _modules() -> list[Path]:
    return sorted(HELPERS.rglob("*.py"))


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


def _name(path: Path) -> str:
    """``helpers/broker/resolve.py`` -> ``helpers.broker.resolve`` (a package: its folder)."""
    parts = ["helpers", *path.relative_to(HELPERS).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    """The layer of ``helpers.FAMILY...`` (None: ``helpers`` itself or not ours)."""
    parts = module.split(".")
    if parts[0] != "helpers" or len(parts) < 2:
        return None
    return LAYERS[parts[1]]


def upward(source: str, module: str, package: list[str]) -> list[str]:
    """The modules ``source`` (the module ``module``) imports from a higher layer than its own."""
    own = layer_of(module)
    return sorted(n for n in _imported(source, package)
                  if (layer_of(n) is not None and own is not None and layer_of(n) > own))


def _own_modules(names: set[str], known: set[str]) -> set[str]:
    """The modules of ``helpers`` among imported names (``from a.b import c``: ``a.b.c`` or ``a.b``)."""
    return {n if n in known else n.rsplit(".", 1)[0] for n in names
            if n in known or n.rsplit(".", 1)[0] in known}


def test_every_family_has_a_layer():
    families = {p.relative_to(HELPERS).parts[0].removesuffix(".py") for p in _modules()}
    assert families - {"__init__"} == set(LAYERS), "give each new family (folder) a layer"
    assert (HELPERS / "lessons" / "common.py").exists()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(HELPERS).as_posix())
def test_no_module_imports_from_a_higher_layer(path):
    found = upward(path.read_text(), _name(path), _package(path))
    assert not found, f"{path.relative_to(HELPERS)} (layer {layer_of(_name(path))}) imports " \
        f"{found} from a higher layer: move what both need down, or the importer up"


def test_no_two_modules_import_each_other():
    """No import cycle between modules of the package, function-level imports included."""
    paths = {_name(p): p for p in _modules()}
    graph = {name: _own_modules(_imported(p.read_text(), _package(p)), set(paths)) - {name}
             for name, p in paths.items()}
    packages = {name for name, p in paths.items() if p.name == "__init__.py"}
    graph = {n: deps - packages for n, deps in graph.items()}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("source, module, package, found", [
    ("from helpers.lessons import acks", "helpers.faults.poison", ["helpers", "faults"],
     ["helpers.lessons", "helpers.lessons.acks"]),
    ("    from helpers.experiment import skeleton", "helpers.pool.pool", ["helpers", "pool"],
     ["helpers.experiment", "helpers.experiment.skeleton"]),
    ("from ..experiment.steps import Step", "helpers.pool.pool", ["helpers", "pool"],
     ["helpers.experiment.steps", "helpers.experiment.steps.Step"]),
    ("import helpers.broker.resolve", "helpers.core.topology", ["helpers", "core"],
     ["helpers.broker.resolve"]),
    ("from helpers.core import topology", "helpers.worker.consumer", ["helpers", "worker"], []),
])
def test_the_layer_check_sees_every_form_of_upward_import(source, module, package, found):
    """The check above can fail: each way of importing from a higher layer is seen."""
    import textwrap
    assert upward(textwrap.dedent(source) if not source.startswith(" ") else
                  "def f():\n" + source, module, package) == found


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
