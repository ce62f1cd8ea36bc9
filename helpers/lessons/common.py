"""What the lessons share: plain text, finished figures, progress over several runs, tables.

Lesson modules (one per notebook) import from here and from the core (``helpers.*``);
nothing in the core imports a lesson.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


class Text(str):
    """A string that notebooks and widget outputs show as plain text, without quotes."""

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(str(self))}</pre>"


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


def value_table(summary: dict, column: str = "value") -> pd.DataFrame:
    """A run's figures as a one-column table, one row per key."""
    return pd.DataFrame({column: pd.Series(summary, dtype=object)})
