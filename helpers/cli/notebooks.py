"""Execute notebooks headless (as ``make run`` and the tests do) and write them as HTML.

Cells tagged ``skip-headless`` are left out: they wait for a person (a button to press).

The kernels talk to this process over IPC (Unix sockets in a private temporary folder),
not TCP: nothing listens on a port, and ipykernel has no reason to warn that "the kernel
is running over TCP without encryption" after every notebook. When stderr is a terminal,
a progress bar counts the code cells done (``helpers.cli.progress``); each notebook
done prints one line.
"""
from __future__ import annotations

import contextlib
import re
import sys
import tempfile
import time
from pathlib import Path

#: Cells with this tag need a person and are not executed headless.
SKIP_TAG = "skip-headless"


def notebook_paths(paths) -> list[Path]:
    """Expand folders into their ``*.ipynb`` files, sorted by name."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        out += sorted(path.glob("[0-9]*.ipynb")) if path.is_dir() else [path]
    return out


@contextlib.contextmanager
def ipc_kernels():
    """The kernel manager's configuration for a kernel reached over IPC: its sockets in a
    private temporary folder (absolute, so the kernel, run in the notebook's folder, and
    this process find the same files), removed afterwards."""
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="nb-kernel-") as folder:
        yield Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "k")}})


def code_cells(path: Path) -> int:
    """How many code cells notebook ``path`` has (what its progress counts)."""
    import nbformat

    return sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)


def execute(path: Path, timeout: int = 600, on_cell=None):
    """Execute one notebook in its own folder; return the executed notebook node.

    ``on_cell()`` is called as each code cell finishes.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    skipped = [c for c in nb.cells if SKIP_TAG in c.get("metadata", {}).get("tags", [])]
    for cell in skipped:
        cell["metadata"]["tags"] = cell["metadata"]["tags"] + ["raises-exception"]
        cell["source"] = "# (skipped when run headless: this cell waits for a person)\n"
    hook = None if on_cell is None else (lambda **_: on_cell())
    with ipc_kernels() as config:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", config=config,
                                on_cell_executed=hook,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    return nb


def plain(exc: Exception) -> str:
    """An error's text without the terminal colours a kernel's traceback carries."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(exc))


def to_html(nb, target: Path) -> Path:
    """Write an executed notebook as standalone HTML (widgets kept as their state)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def execute_all(paths, out: str | Path = "build", timeout: int = 600) -> bool:
    """Execute every notebook, write ``out/<name>.html``; one line per notebook with the
    time it took (and a bar of the cells done, on a terminal)."""
    from helpers.cli.progress import Bar

    notebooks = notebook_paths(paths)
    sizes = [code_cells(path) for path in notebooks]
    ok, done = True, 0
    with Bar("cells", total=sum(sizes), leave=False) as bar:
        for number, (path, size) in enumerate(zip(notebooks, sizes), 1):
            bar.describe(f"notebook {number}/{len(notebooks)} {path.stem}")
            started, cells = time.monotonic(), iter(range(done + 1, done + size + 1))
            try:
                nb = execute(path, timeout, on_cell=lambda: bar(next(cells, done + size)))
            except Exception as exc:  # report every notebook, then fail
                ok = False
                bar.write(f"FAILED {path.name}: {type(exc).__name__}: {plain(exc)[-800:]}",
                          sys.stderr)
                continue
            finally:
                done += size  # a failed notebook's cells count as done
                bar(done)
            html = to_html(nb, Path(out) / (path.stem + ".html"))
            bar.write(f"{path.name}: {time.monotonic() - started:.1f} s -> {html}")
    return ok
