"""Notebook display of results: the pieces every ``_repr_html_`` is built from.

Jupyter shows an object's ``_repr_html_()`` when it is the last expression of a cell. sysid's result
objects (:class:`~sysid.training.FitResult`, :class:`~sysid.parallel.Ensemble`,
:class:`~sysid.analysis.Comparison`, profile and bootstrap results) build theirs from the three
helpers here: a table of facts (label -> text), a pandas table, and a small Matplotlib figure
embedded as a PNG. Everything user-supplied (names, messages) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import pandas as pd


def facts_html(facts: Sequence[tuple[str, str]]) -> str:
    """A two-column table of (label, text) pairs, both escaped."""
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                   f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                   for k, v in facts)
    return f"<table>{rows}</table>"


def table_html(table: pd.DataFrame, *, index: bool = False, max_rows: int = 30) -> str:
    """A DataFrame as HTML with 4 significant digits, "—" for missing values and at most
    ``max_rows`` rows (the rest counted below the table). Cell text is escaped by pandas."""
    shown = table.head(max_rows)
    out = shown.to_html(index=index, border=0, float_format=lambda v: f"{v:.4g}", na_rep="—",
                        escape=True)
    if len(table) > max_rows:
        out += f"<p>… {len(table) - max_rows} more rows</p>"
    return out


def figure_png(fig: Any, *, dpi: int = 72) -> str:
    """A Matplotlib figure as an ``<img>`` tag holding a base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt='figure' src='data:image/png;base64,{data}'>"


def block(title: str, parts: Sequence[str], css_class: str) -> str:
    """Wrap the parts in a ``<div>`` headed by the (escaped) title."""
    return (f"<div class='{css_class}'><strong>{html.escape(title)}</strong>" + "".join(parts)
            + "</div>")


def text_block(title: str, facts: Sequence[tuple[str, str]], table: pd.DataFrame | None = None,
               *, index: bool = False) -> str:
    """Plain-text counterpart of :func:`block` for ``summary()``: title, facts, then the table."""
    lines = [title] + [f"{k}: {v}" for k, v in facts]
    if table is not None and len(table):
        lines.append(table.to_string(index=index, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(lines)
