"""What the lessons share: plain text, finished figures, progress over several runs, tables.

Lesson modules (one per notebook) import from here and from the core (``helpers.*``);
nothing in the core imports a lesson.
"""
from __future__ import annotations

import dataclasses
import inspect
import textwrap
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

#: The folder that holds the ``helpers`` package: shown paths start from here.
_ROOT = Path(__file__).resolve().parent.parent.parent


#: when this kernel first imported the lessons (a notebook's first cell): where its run time
#: starts (``run_time``)
STARTED = time.monotonic()

class Declared:
    """A lesson's run declared once as a frozen dataclass (``KILL = KillPlan()``): its panel's
    defaults read from it, and ``replace`` gives a changed copy."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


class Text(str):
    """A string that notebooks and widget outputs show as plain text, without quotes."""

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(str(self))}</pre>"


class Skipped(Text):
    """A part of a lesson that did not run on this broker: the sentence saying why."""


def finish(fig):
    """Lay out ``fig`` and detach it from pyplot, so it is shown once, where it is displayed."""
    fig.tight_layout()
    plt.close(fig)
    return fig


def prefetch_name(prefetch: int) -> str:
    """``0`` is RabbitMQ's "no limit"; say so."""
    return "unlimited" if prefetch == 0 else str(prefetch)


def chain_progress(progress, offset: int, grand_total: int):
    """A ``progress(done, total)`` for one run out of several, counting towards the total."""
    if progress is None:
        return None
    return lambda done, _total: progress(offset + done, grand_total)


class FullTextFrame(pd.DataFrame):
    """A table whose text cells are shown in full: pandas cuts a cell longer than
    ``display.max_colwidth`` (50 characters) with "...", which makes a sentence unreadable.
    The limit is lifted for this table only, not for every table of the kernel; whatever is
    derived from it (a column, a filter) is an ordinary ``DataFrame`` again."""

    @property
    def _constructor(self):
        return pd.DataFrame

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.max_colwidth", None):
            return super()._repr_html_()

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None):
            return super().__repr__()


def full_text(frame: pd.DataFrame) -> FullTextFrame:
    """``frame``, shown with every text cell in full (see ``FullTextFrame``)."""
    return FullTextFrame(frame)


def value_table(summary: dict, column: str = "value") -> pd.DataFrame:
    """A run's figures as a one-column table, one row per key."""
    return pd.DataFrame({column: pd.Series(summary, dtype=object)})


class Source(str):
    """Source code that notebooks show highlighted, with the file and lines it comes from."""

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        from IPython.display import Code
        return Code(str(self), language="python")._repr_html_()


def source(*objs, expect: tuple[str, ...] | list[str] = ()) -> Source:
    """The source of functions or methods of ``helpers`` as they run, each headed by its
    file and lines; raises if one of the ``expect`` strings (the lines a lesson teaches) is
    in none of them, so what a notebook shows cannot drift from what runs.
    """
    parts = []
    for obj in objs:
        # A decorated function (``contextlib.contextmanager``): the source is the wrapped one's.
        obj = inspect.unwrap(getattr(obj, "__func__", obj))
        lines, first = inspect.getsourcelines(obj)
        path = Path(inspect.getsourcefile(obj)).resolve()
        where = path.relative_to(_ROOT) if path.is_relative_to(_ROOT) else path.name
        parts.append(f"# {where}, lines {first}-{first + len(lines) - 1}: {obj.__qualname__}\n"
                     + textwrap.dedent("".join(lines)).rstrip() + "\n")
    text = "\n".join(parts)
    missing = [line for line in expect if line not in text]
    if missing:
        names = ", ".join(obj.__qualname__ for obj in objs)
        raise AssertionError(f"{names} no longer hold {missing}: the lesson that shows them "
                             "needs updating to the code that runs.")
    return Source(text)


def source_lines(obj, *needles: str) -> Source:
    """Only the lines of ``obj``'s source (a function or method of ``helpers``, as it runs)
    that hold one of ``needles``, each with its line number, headed by the file: the one
    line a lesson changes, without the whole function around it. Raises if a needle is in
    no line, so what a notebook shows cannot drift from what runs."""
    obj = inspect.unwrap(getattr(obj, "__func__", obj))
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    where = path.relative_to(_ROOT) if path.is_relative_to(_ROOT) else path.name
    missing = [n for n in needles if not any(n in line for line in lines)]
    if missing:
        raise AssertionError(f"{obj.__qualname__} no longer holds {missing}: the lesson that "
                             "shows it needs updating to the code that runs.")
    width = len(str(first + len(lines)))
    picked = [(first + i, line.rstrip()) for i, line in enumerate(lines)
              if any(n in line for n in needles)]
    text = textwrap.dedent("\n".join(line for _, line in picked)).splitlines()
    kept = [f"{number:>{width}}  {line}" for (number, _), line in zip(picked, text)]
    return Source(f"# {where}, in {obj.__qualname__} (line numbers of the file)\n"
                  + "\n".join(kept) + "\n")


def run_time(version: str | None = None) -> Text:
    """A notebook's last line: how long it took here, from its first cell to its last (and
    on which RabbitMQ ``version``, when given)."""
    on = f" on RabbitMQ {version}" if version else ""
    return Text(f"This notebook ran in {time.monotonic() - STARTED:.1f} s{on}, from its first "
                "cell to this one.")
