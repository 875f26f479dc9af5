"""Small helpers to turn analysis results into Markdown tables and JSON-able dicts.

pandas' ``DataFrame.to_markdown`` needs the optional ``tabulate`` package; sysid writes its own
GitHub-flavoured Markdown tables instead so reports need nothing beyond the core dependencies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr


def format_value(value: Any, floatfmt: str = ".4g") -> str:
    """One table cell: floats with ``floatfmt``, NaN as ``nan``, complex as ``a±bj``, rest ``str``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (complex, np.complexfloating)):
        re, im = float(np.real(value)), float(np.imag(value))
        sign = "+" if im >= 0 else "-"
        return f"{re:{floatfmt}}{sign}{abs(im):{floatfmt}}j"
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):{floatfmt}}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, *, floatfmt: str = ".4g", index: bool = True) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (numbers right-aligned).

    Examples
    --------
    >>> import pandas as pd
    >>> print(markdown_table(pd.DataFrame({"a": [1.23456, 2.0]}, index=["x", "y"])))
    |  | a |
    |---|--:|
    | x | 1.235 |
    | y | 2 |
    """
    cols = [str(c) for c in df.columns]
    if isinstance(df.index, pd.MultiIndex):
        index_label = " / ".join(str(n) for n in df.index.names if n is not None)
    else:
        index_label = str(df.index.name or "")
    header = ([index_label] if index else []) + cols
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    align = (["---"] if index else []) + ["--:" if n else "---" for n in numeric]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for idx, row in df.iterrows():
        cells = [format_value(v, floatfmt) for v in row.tolist()]
        if index:
            label = " / ".join(map(str, idx)) if isinstance(idx, tuple) else str(idx)
            cells = [label, *cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """Convert NumPy/pandas/xarray values into plain JSON types (NaN and inf become None)."""
    if isinstance(value, xr.Dataset):
        return {
            "dims": {str(k): int(v) for k, v in value.sizes.items()},
            "coords": {str(k): jsonable(v.values) for k, v in value.coords.items()},
            "data_vars": {str(k): jsonable(v.values) for k, v in value.data_vars.items()},
            "attrs": jsonable(dict(value.attrs)),
        }
    if isinstance(value, xr.DataArray):
        return jsonable(value.values)
    if isinstance(value, pd.DataFrame):
        return [
            {str(k): jsonable(v) for k, v in rec.items()}
            for rec in value.reset_index().to_dict(orient="records")
        ]
    if isinstance(value, pd.Series):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (complex, np.complexfloating)):
        return {"real": jsonable(float(np.real(value))), "imag": jsonable(float(np.imag(value)))}
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


__all__ = ["format_value", "markdown_table", "jsonable"]
