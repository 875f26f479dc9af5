"""Columns of a table: headers with units, finding a column by name, cells to numbers or times.

Used by :func:`sysid.data.load_csv` and :func:`sysid.data.from_dataframe`; the helpers raise
:class:`~sysid.errors.DataError` with the column and rows as the user sees them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sysid.errors import ConfigError, DataError

# "x [m]" always carries units; "x (m)" only with a space before the parenthesis, so that a
# column named "f(x)" keeps its name.
_BRACKET = re.compile(r"^(?P<name>.*?)\s*\[(?P<units>[^\[\]]*)\]$")
_PAREN = re.compile(r"^(?P<name>.*?\S)\s+\((?P<units>[^()]*)\)$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_DECIMAL_COMMA = re.compile(r"^[+-]?(\d+,\d*|\d*,\d+)([eE][+-]?\d+)?$")

#: Cells read as missing (NaN) unless the user declares more with ``missing_values``.
DEFAULT_MISSING = ("", "NA", "N/A", "NaN", "nan", "null", "NULL")

#: Durations that datetime time columns may be expressed in (Julian year = 365.25 days).
TIME_UNITS = {
    "seconds": 1.0, "second": 1.0, "s": 1.0,
    "minutes": 60.0, "minute": 60.0, "min": 60.0,
    "hours": 3600.0, "hour": 3600.0, "h": 3600.0,
    "days": 86400.0, "day": 86400.0, "d": 86400.0,
    "years": 365.25 * 86400.0, "year": 365.25 * 86400.0,
}


@dataclass(frozen=True, kw_only=True)
class Column:
    """One column of a table: header as written, bare name, units parsed from the header."""

    header: str
    name: str
    units: str
    position: int


def parse_header(header: object, position: int) -> Column:
    """Split a header into a bare name and units: ``"x [m]"`` and ``"x (m)"`` give ``("x", "m")``.

    Examples
    --------
    >>> parse_header(" x [m] ", 0).name, parse_header("x (m)", 0).units
    ('x', 'm')
    """
    text = str(header).replace("\ufeff", "").strip()
    for pattern in (_BRACKET, _PAREN):
        m = pattern.match(text)
        if m and m.group("name").strip():
            return Column(header=text, name=m.group("name").strip(), units=m.group("units").strip(),
                          position=position)
    return Column(header=text, name=text, units="", position=position)


def parse_headers(headers: Sequence[object], *, context: str) -> list[Column]:
    """Parse all headers; duplicates are an error (pandas would rename them ``x.1`` silently)."""
    cols = [parse_header(h, i) for i, h in enumerate(headers)]
    seen: dict[str, int] = {}
    for c in cols:
        if c.header and c.header in seen:
            raise DataError(
                f"{context}: column {c.header!r} appears twice (columns {seen[c.header] + 1} and "
                f"{c.position + 1}); rename one so each column has its own header."
            )
        seen[c.header] = c.position
    return cols


def find_column(cols: Sequence[Column], wanted: str, *, role: str, context: str) -> Column:
    """The column the user means by ``wanted``: its full header, or its name without units.

    Raises
    ------
    DataError
        When no column matches (listing the columns and the closest names) or the bare name is
        ambiguous.
    """
    wanted = str(wanted).strip()
    exact = [c for c in cols if c.header == wanted]
    if exact:
        return exact[0]
    bare = parse_header(wanted, 0).name
    hits = [c for c in cols if c.header and (c.name == wanted or c.name == bare)]
    if len(hits) == 1:
        return hits[0]
    headers = [c.header for c in cols]
    if len(hits) > 1:
        raise DataError(
            f"{context}: {wanted!r} (in {role}=) matches several columns {[c.header for c in hits]}; "
            "give the full header with its units."
        )
    names = headers + [c.name for c in cols if c.name != c.header]
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    if not close:  # 'hare' for 'hare_kpelts': a header that starts with (or contains) the name
        low = wanted.strip().lower()
        close = [n for n in names if low and n.lower().startswith(low)] or \
                [n for n in names if low and low in n.lower()]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    one = [c for c in cols if c.header]
    if len(one) == 1:
        for d in (";", "\t", ",", "|"):
            if d in one[0].header:
                hint += (f" The file has a single column {one[0].header!r}: it looks {d!r}-delimited; "
                         f"pass sep={d!r} (or sep=None to detect it).")
                break
    raise DataError(f"{context}: column {wanted!r} (in {role}=) not found; columns are {headers}.{hint}")


#: Magnitudes float64 arithmetic handles safely: squares (variances, losses) of larger values
#: overflow to inf and of smaller ones underflow to 0, which turned fits into NaN.
SAFE_MAGNITUDE = (1e-150, 1e150)


def check_magnitudes(ds: Any, *, context: str) -> None:
    """Refuse data whose values lie beyond :data:`SAFE_MAGNITUDE`, naming the variable.

    Not a rule of the schema (any finite float64 loads and round-trips): a check for
    computations that square the data (scaling, losses), called before a fit. Zeros and missing
    values are ignored; a variable of zeros is fine.

    Raises
    ------
    DataError
        When a variable's (or time's) largest magnitude exceeds 1e150, or every non-zero
        magnitude is below 1e-150.
    """
    lo, hi = SAFE_MAGNITUDE
    for name in ["time", *map(str, ds.data_vars)]:
        values = np.asarray(ds[name].values, dtype=float).ravel()
        mag = np.abs(values[np.isfinite(values)])
        mag = mag[mag > 0]
        if mag.size == 0:
            continue
        what = "time" if name == "time" else f"variable {name!r}"
        fix = "express it in other units (rescale it) before fitting"
        big = float(mag.max())
        if big > hi:
            raise DataError(f"{context}: {what} holds values as large as {big:.3g}; sysid computes "
                            f"in float64, whose squares overflow beyond about {hi:.0e}. Please {fix}.")
        if big < lo:
            raise DataError(f"{context}: {what} holds only values as small as {big:.3g}; float64 "
                            f"squares of values below about {lo:.0e} underflow to zero. Please {fix}.")


_FORBIDDEN_NAME = re.compile(r"[/\x00-\x1f\x7f]")


def check_variable_name(name: str, *, context: str) -> None:
    """Refuse a variable name that the files sysid writes cannot store.

    netCDF and zarr (the data copy of every fit, ``sysid.save``) refuse ``/`` in a name (it
    separates groups) and control characters; checked when the data are loaded, so that a fit
    never fails at its end, after training, for a name.

    Raises
    ------
    DataError
        Naming the column and the character.
    """
    m = _FORBIDDEN_NAME.search(name)
    if m:
        ch = m.group(0)
        shown = repr(ch) if ch != "/" else "'/'"
        raise DataError(f"{context}: a variable name may not contain {shown} (netCDF and zarr files, "
                        f"where sysid stores data and results, cannot hold it); rename the column, "
                        f"e.g. {re.sub(_FORBIDDEN_NAME, '_', name)!r}.")


def _show(labels: Sequence[str], cells: Sequence[str], limit: int = 3) -> str:
    parts = [f"{lab} {cell!r}" for lab, cell in zip(labels[:limit], cells[:limit], strict=False)]
    more = f" (and {len(labels) - limit} more)" if len(labels) > limit else ""
    return ", ".join(parts) + more


def as_text(cells: pd.Series | np.ndarray) -> np.ndarray:
    """Cells as a NumPy unicode array with surrounding whitespace removed (None/NaN -> "").

    A unicode array is taken as already stripped (the CSV reader strips every cell once).
    """
    if isinstance(cells, np.ndarray) and cells.dtype.kind == "U":
        return cells
    obj = pd.Series(cells).astype(object)
    absent = obj.isna().to_numpy()
    if absent.any():
        obj = obj.where(~absent, "")
    return np.char.strip(obj.to_numpy().astype(str))


def to_float(
    cells: pd.Series | np.ndarray,
    *,
    column: str,
    context: str,
    label: Callable[[np.ndarray], list[str]],
    decimal: str = ".",
    missing: Sequence[str] = DEFAULT_MISSING,
) -> np.ndarray:
    """Cells (strings or numbers) to float64; missing markers become NaN; anything else is an error.

    Parameters
    ----------
    cells : pandas.Series or numpy.ndarray
        One column's cells.
    column : str
        The column's header, for messages.
    context : str
        Message prefix (function and file).
    label : callable
        Maps an integer array of 0-based positions to the user's row names.
    decimal : str
        Decimal mark of the file ("." or ",").
    missing : sequence of str
        Cell texts that mean "no measurement".
    """
    if pd.api.types.is_bool_dtype(cells.dtype):
        raise DataError(f"{context}: column {column!r} holds booleans; expected numbers.")
    if pd.api.types.is_numeric_dtype(cells.dtype):
        if isinstance(cells, pd.Series):
            return cells.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(cells, dtype=np.float64)
    if pd.api.types.is_datetime64_any_dtype(cells.dtype):
        raise DataError(f"{context}: column {column!r} holds dates; only the time column may.")
    text = as_text(cells)
    is_missing = np.isin(text, list(missing))
    norm = np.where(is_missing, "nan", text)
    if decimal != ".":
        norm = np.char.replace(norm, decimal, ".")
    try:
        return norm.astype(np.float64)
    except ValueError:
        pass
    bad = []
    for i, cell in enumerate(norm.tolist()):
        try:
            float(cell)
        except ValueError:
            bad.append(i)
    bad_idx = np.asarray(bad, dtype=int)
    raw = [str(text[i]) for i in bad_idx]
    labels = label(bad_idx)
    if decimal == "." and _DECIMAL_COMMA.match(raw[0]):
        raise DataError(
            f"{context}: column {column!r} has {raw[0]!r} at {labels[0]}, which looks like a decimal "
            "comma; pass decimal=',' (and a delimiter other than ',', e.g. sep=';')."
        )
    markers = sorted(set(raw))[:4]
    raise DataError(
        f"{context}: column {column!r} must hold numbers; it has {_show(labels, raw)}. Fix these cells, "
        f"or declare them as missing with missing_values={markers!r}."
    )


def is_datetime_like(cells: pd.Series | np.ndarray, missing: Sequence[str]) -> bool:
    """True when every non-missing cell is a date or date-time (ISO 8601) or the dtype is datetime."""
    if pd.api.types.is_datetime64_any_dtype(cells.dtype):
        return True
    if pd.api.types.is_numeric_dtype(cells.dtype) or pd.api.types.is_bool_dtype(cells.dtype):
        return False
    text = as_text(cells)
    text = text[~np.isin(text, list(missing))]
    if text.size == 0 or not _ISO_DATE.match(str(text[0])):
        return False
    return bool(_parse_dates(pd.Series(text, dtype=object))[0].notna().all())


def _parse_dates(text: pd.Series) -> tuple[pd.Series, bool]:
    """ISO 8601 text to naive timestamps (UTC when zone-aware); also whether a zone was given."""
    try:
        out = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        out = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    aware = getattr(out.dt, "tz", None) is not None
    if aware:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out, aware


def dates_to_ns(
    cells: pd.Series | np.ndarray, *, column: str, context: str, label: Callable[[np.ndarray], list[str]],
    missing: Sequence[str],
) -> tuple[np.ndarray, bool]:
    """Dates/datetimes to int64 nanoseconds since the epoch, and whether the input had a time zone.

    Zone-aware input is converted to UTC; naive input is taken as given.
    """
    if pd.api.types.is_datetime64_any_dtype(cells.dtype):
        ts = pd.Series(cells)
        aware = getattr(ts.dt, "tz", None) is not None
        if aware:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    else:
        text = as_text(cells).astype(object)
        absent = np.isin(text.astype(str), list(missing))
        _check_zones(text.astype(str), absent, column=column, context=context, label=label)
        text[absent] = None
        ts, aware = _parse_dates(pd.Series(text, dtype=object))
    bad = ts.isna().to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)
        raise DataError(
            f"{context}: time must be a finite number; column {column!r} has no time at "
            f"{label(idx)[0]}. Fill in the time or remove the row."
        )
    return ts.to_numpy(dtype="datetime64[ns]").astype(np.int64), aware


_ZONE = re.compile(r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$")


def _check_zones(text: np.ndarray, absent: np.ndarray, *, column: str, context: str,
                 label: Callable[[np.ndarray], list[str]]) -> None:
    """Refuse timestamps that mix local (naive) times with times carrying a zone.

    Taking the naive ones as UTC (what pandas does with ``utc=True``) shifts them silently by
    the local offset; the user must say which zone they are in.
    """
    zoned = np.array([bool(_ZONE.search(t)) for t in text]) & ~absent
    naive = ~zoned & ~absent
    if zoned.any() and naive.any():
        i, j = int(np.flatnonzero(naive)[0]), int(np.flatnonzero(zoned)[0])
        raise DataError(
            f"{context}: time column {column!r} mixes timestamps without a time zone "
            f"({str(text[i])!r} at {label(np.array([i]))[0]}) and with one ({str(text[j])!r} at "
            f"{label(np.array([j]))[0]}); sysid will not guess the zone of the first. Give every "
            "timestamp a zone (e.g. append 'Z' or '+01:00') or none."
        )


def time_unit_seconds(units: str, *, context: str) -> float:
    """Seconds per unit for the durations datetimes may be expressed in."""
    key = units.strip().lower()
    if key not in TIME_UNITS:
        raise ConfigError(
            f"{context}: time units {units!r} for a date column must be one of "
            f"{sorted(set(TIME_UNITS))}."
        )
    return TIME_UNITS[key]


def canonical_time_unit(units: str) -> str:
    """The plural long form of a duration unit ("d" -> "days")."""
    key = units.strip().lower()
    for long in ("seconds", "minutes", "hours", "days", "years"):
        if TIME_UNITS[key] == TIME_UNITS[long]:
            return long
    return key


__all__ = [
    "SAFE_MAGNITUDE",
    "check_magnitudes",
    "check_variable_name",
    "Column",
    "DEFAULT_MISSING",
    "TIME_UNITS",
    "parse_header",
    "parse_headers",
    "find_column",
    "as_text",
    "to_float",
    "is_datetime_like",
    "dates_to_ns",
    "time_unit_seconds",
    "canonical_time_unit",
]
