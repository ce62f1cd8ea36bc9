"""Execute notebooks headless (as ``make run`` and the tests do) and write them as HTML.

Cells tagged ``skip-headless`` are left out: they wait for a person (a button to press).
"""
from __future__ import annotations

import sys
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


def execute(path: Path, timeout: int = 600):
    """Execute one notebook in its own folder; return the executed notebook node."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    skipped = [c for c in nb.cells if SKIP_TAG in c.get("metadata", {}).get("tags", [])]
    for cell in skipped:
        cell["metadata"]["tags"] = cell["metadata"]["tags"] + ["raises-exception"]
        cell["source"] = "# (skipped when run headless: this cell waits for a person)\n"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def to_html(nb, target: Path) -> Path:
    """Write an executed notebook as standalone HTML (widgets kept as their state)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def execute_all(paths, out: str | Path = "build", timeout: int = 600) -> bool:
    """Execute every notebook, write ``out/<name>.html``; report time each took."""
    ok = True
    for path in notebook_paths(paths):
        started = time.monotonic()
        try:
            nb = execute(path, timeout)
        except Exception as exc:  # report every notebook, then fail
            ok = False
            print(f"FAILED {path.name}: {type(exc).__name__}: {str(exc)[-800:]}",
                  file=sys.stderr)
            continue
        html = to_html(nb, Path(out) / (path.stem + ".html"))
        print(f"{path.name}: {time.monotonic() - started:.1f} s -> {html}")
    return ok
