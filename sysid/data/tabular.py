"""Tables into the trajectory schema: :func:`load_csv` and :func:`from_dataframe`.

Both read the table's cells themselves (pandas reads every cell as text) so that nothing is
guessed silently: non-numeric cells, infinities, decimal commas, unsorted or repeated times and
duplicate headers are errors naming the file, column, run and row (1-based as a spreadsheet
counts: the header is row 1, the first data row is row 2).

Time: a numeric time column is kept exactly as given (a ``year`` column reads 1900 ... 1920).
A column of ISO 8601 dates or date-times becomes float64 time since the earliest timestamp of
the whole table (one origin for all runs, so runs keep their relative timing); the time
coordinate then carries ``origin`` (ISO text) and ``units`` ("days" when every timestamp is a
midnight, else "seconds"; choose others with ``units={<time column>: "hours"}``).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sysid.data.columns import (
    DEFAULT_MISSING,
    TIME_UNITS,
    as_text,
    canonical_time_unit,
    check_variable_name,
    dates_to_ns,
    find_column,
    is_datetime_like,
    parse_headers,
    time_unit_seconds,
    to_float,
)
from sysid.data.schema import OBS, TIME, TRAJ, from_arrays
from sysid.data.validate import (
    check_run_length,
    check_run_time,
    sampling_attrs,
    validate,
    warn_constant,
)
from sysid.errors import ConfigError, DataError

_RESERVED = (TIME, TRAJ, OBS)
_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True, kw_only=True)
class _Options:
    func: str
    time: str
    states: tuple[str, ...]
    inputs: tuple[str, ...]
    trajectory: tuple[str, ...]
    units: dict[str, str]
    decimal: str
    missing: tuple[str, ...]
    sort: bool
    drop_duplicates: bool
    min_samples: int


@dataclass(kw_only=True)
class _Part:
    """One table (a file or a DataFrame) with its cells, headers and row labels."""

    label: str
    headers: list[str]
    columns: list[pd.Series | np.ndarray]  # cells by column position
    rows: np.ndarray  # user-facing row labels, one per data row
    row_word: str = "row"
    run_id: str = "run0"
    sha256: str | None = None
    extracted: dict[str, object] = field(default_factory=dict)
    # numeric fast path: the file's text and delimiter, and the body records kept (for re-reading
    # a column that was parsed as numbers as text, e.g. a numeric run id such as "01")
    source: tuple[str, str] | None = None
    kept: np.ndarray | None = None

    def labels(self, idx: np.ndarray) -> list[str]:
        return [f"{self.row_word} {self.rows[i]}" for i in np.asarray(idx, dtype=int)]

    def text(self, j: int) -> np.ndarray:
        """Column ``j``'s cells as stripped text, exactly as the file spells them."""
        col = self.columns[j]
        if self.source is None or (isinstance(col, np.ndarray) and col.dtype.kind == "U"):
            return as_text(col)
        cells = _read_column_text(*self.source, j)
        return cells if self.kept is None else cells[self.kept]


def _sniff(text: str) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of fields."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    best, best_n = None, 1
    for d in _DELIMITERS:
        counts = [len(next(csv.reader([ln], delimiter=d))) for ln in lines]
        if counts[0] > best_n and all(c == counts[0] for c in counts):
            best, best_n = d, counts[0]
    if best is not None:
        return best
    head = {d: len(next(csv.reader([lines[0]], delimiter=d))) for d in _DELIMITERS}
    d = max(_DELIMITERS, key=lambda k: head[k])
    if head[d] > 1:
        return d
    words = [len(ln.split()) for ln in lines]
    if words[0] > 1 and all(w == words[0] for w in words):
        return r"\s+"
    return ","


# byte-order marks, longest first (UTF-32 LE starts like UTF-16 LE)
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
         (b"\xfe\xff", "utf-16"), (b"\xef\xbb\xbf", "utf-8-sig"))
# what a file that is not text is, by its first bytes
_MAGIC = ((b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one); unzip it, or save the "
           "sheet as CSV"),
          (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or other OLE document; save the sheet as CSV"),
          (b"\x89HDF", "a netCDF4/HDF5 file; read it with load_netcdf"),
          (b"CDF\x01", "a netCDF file; read it with load_netcdf"),
          (b"CDF\x02", "a netCDF file; read it with load_netcdf"),
          (b"PAR1", "a Parquet file; read it with pandas.read_parquet and from_dataframe"),
          (b"BZh", "a bzip2 archive; decompress it first"),
          (b"\xfd7zXZ", "an xz archive; decompress it first"),
          (b"\x28\xb5\x2f\xfd", "a zstd archive; decompress it first"),
          (b"7z\xbc\xaf", "a 7-Zip archive; extract it first"),
          (b"%PDF", "a PDF document, not a table"))
_GZIP = b"\x1f\x8b"


def _unpack(data: bytes, *, path: str) -> bytes:
    """Decompress a gzip file (size-limited); refuse other binary formats, saying what they are."""
    if data[:2] == _GZIP:
        import gzip
        import zlib

        from sysid.budget import current_limits, format_bytes

        limit = int(current_limits().memory_bytes / 8)  # the text, then its cells, must fit
        try:
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            out = d.decompress(data, limit + 1)
            if len(out) > limit or d.unconsumed_tail:
                raise DataError(f"load_csv: {path} is gzip-compressed and expands beyond "
                                f"{format_bytes(limit)}; decompress it and load the CSV in parts.")
            if d.unused_data[:2] == _GZIP:  # several gzip members, as `cat a.gz b.gz` makes
                out += gzip.decompress(d.unused_data)
        except (zlib.error, EOFError, OSError) as exc:
            raise DataError(f"load_csv: {path} starts like a gzip file but cannot be decompressed "
                            f"({exc}); the file is damaged or truncated.") from None
        return out
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DataError(f"load_csv: {path} is not a text table: it is {what}.")
    return data


def _decode(data: bytes, *, path: str, encoding: str | None) -> str:
    enc = encoding
    if enc is None:
        enc = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8-sig")
    try:
        text = data.decode(enc)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"load_csv: {path} is not valid {enc} text (byte 0x{data[exc.start]:02x} on line {line}); "
            f"{_utf16_hint(data) if encoding is None else ''}"
            f"{'' if encoding is None and _utf16_hint(data) else _ENCODING_HINT}."
        ) from None
    except LookupError:
        raise ConfigError(f"load_csv: unknown encoding {encoding!r}.") from None
    if "\x00" in text[:4096]:
        hint = _utf16_hint(data) if encoding is None else ""
        raise DataError(f"load_csv: {path} holds NUL characters, which a text table never has; "
                        f"{hint or 'it is binary, or text in another encoding: ' + _ENCODING_HINT}.")
    return text.lstrip("\ufeff")


_ENCODING_HINT = "pass the file's encoding, e.g. encoding='latin-1' or encoding='cp1252'"


def _utf16_hint(data: bytes) -> str:
    """A hint for UTF-16 text without a byte-order mark (every other byte of ASCII text is 0)."""
    head = data[:4096]
    even, odd = head[0::2].count(b"\x00"), head[1::2].count(b"\x00")
    if max(even, odd) < len(head) // 4:
        return ""
    return (f"it looks like UTF-16 text without a byte-order mark; pass "
            f"encoding='utf-16-{'le' if odd > even else 'be'}'")


_READ_OPTIONS = {"header": None, "keep_default_na": False, "na_filter": False, "skip_blank_lines": False}


def _read_column_text(text: str, delim: str, j: int) -> np.ndarray:
    """Body column ``j`` (header row skipped) as stripped text (the careful path's cells)."""
    col = pd.read_csv(io.StringIO(text), sep=delim, skiprows=1, usecols=[j], dtype=str, engine="c",
                      **_READ_OPTIONS)[j]
    return np.char.strip(col.fillna("").to_numpy(dtype=object).astype(str))


def _read_fast(text: str, delim: str, headers: list[str]) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Columns of plain finite numbers parsed by pandas, the others as the careful path's text.

    Returns the columns and the 0-based body records kept, or None when the fast path does not
    apply (a parser error, a field-count mismatch, no column of finite numbers; a blank line makes
    every column non-numeric); the careful path then reads the file and gives its usual messages.
    """
    try:
        body = pd.read_csv(io.StringIO(text), sep=delim, skiprows=1, engine="c", low_memory=False,
                           **_READ_OPTIONS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OverflowError):
        return None
    if body.shape[1] != len(headers) or body.shape[0] == 0:
        return None
    columns: list[np.ndarray | None] = []
    for j in range(body.shape[1]):
        c = body[j]
        values = c.to_numpy(dtype=np.float64) if c.dtype.kind in "iuf" else None
        columns.append(values if values is not None and np.isfinite(values).all() else None)
    if all(c is None for c in columns):
        return None
    del body
    # a record with a number is never blank, so every record is kept (as the careful path does)
    kept = np.arange(len(next(c for c in columns if c is not None)))
    out = [c if c is not None else _read_column_text(text, delim, j) for j, c in enumerate(columns)]
    return out, kept


def _read_file(path: Path, shown: str, *, sep: str | None, decimal: str, encoding: str | None,
               missing: tuple[str, ...] = ()) -> _Part:
    ctx = f"load_csv: {shown}"
    if not path.exists():
        raise DataError(f"load_csv: file not found: {shown}. Check the path and the working folder.")
    if path.is_dir():
        raise DataError(f"load_csv: {shown} is a folder; pass a file, a list of files or a glob like "
                        f"'{shown}/*.csv'.")
    _check_readable(path, shown)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()  # of the file as stored (compressed or not)
    data = _unpack(data, path=shown)
    if not data.strip():
        raise DataError(f"{ctx}: the file is empty; expected a header row and data rows.")
    text = _decode(data, path=shown, encoding=encoding)
    # a delimiter of several characters is taken literally (pandas would read it as a regex)
    delim = _sniff(text) if sep is None else (re.escape(sep) if len(sep) > 1 else sep)
    if delim == decimal:
        raise ConfigError(f"{ctx}: sep and decimal are both {decimal!r}; a decimal-comma file needs "
                          "another delimiter such as sep=';'.")
    fast = _fast_part(text, delim, decimal, missing, ctx)
    if fast is not None:
        headers, columns, kept = fast
        return _Part(label=shown, headers=headers, columns=columns, rows=kept + 2, run_id=_stem(path),
                     sha256=sha, source=(text, delim), kept=kept)
    try:
        raw = pd.read_csv(io.StringIO(text), sep=delim, header=None, dtype=str, keep_default_na=False,
                          na_filter=False, skip_blank_lines=False,
                          engine="python" if len(delim) > 1 else "c")
    except pd.errors.ParserError as exc:
        hint = (" If the numbers use decimal commas, the delimiter must be another character, "
                "e.g. sep=';' with decimal=','." if delim == "," else "")
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        what = (f"row {m.group(2)} has {m.group(3)} fields but the header has {m.group(1)}" if m
                else str(exc).strip())
        raise DataError(f"{ctx}: rows do not all have the header's number of fields: {what}.{hint}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{ctx}: the file is empty; expected a header row and data rows.") from None
    cells = np.char.strip(raw.fillna("").to_numpy(dtype=object).astype(str))
    lines = np.arange(1, len(cells) + 1)
    headers = [str(h) for h in cells[0]]
    if not any(headers):
        raise DataError(f"{ctx}: the first line is empty; the file must start with a header row.")
    body = cells[1:]
    filled = (body != "").any(axis=1)
    body, rows = body[filled], lines[1:][filled]
    if body.shape[0] == 0:
        raise DataError(f"{ctx}: the file has a header row ({headers}) but no data rows.")
    numeric = 0
    for h in headers:
        try:
            float(h.replace(decimal, "."))
            numeric += 1
        except ValueError:
            pass
    if numeric == len(headers):
        raise DataError(f"{ctx}: the first row {headers} looks like data; the file needs a header row "
                        "naming the columns.")
    return _Part(label=shown, headers=headers, columns=[body[:, j] for j in range(body.shape[1])], rows=rows,
                 run_id=_stem(path), sha256=sha)


def _fast_part(text: str, delim: str, decimal: str, missing: tuple[str, ...], ctx: str
               ) -> tuple[list[str], list[np.ndarray], np.ndarray] | None:
    """Headers, columns and kept records by the numeric fast path, or None where it does not apply.

    It applies to single-character delimiters, decimal points, missing-value markers that are not
    numbers (a marker such as "-999" must be seen as text) and headers that do not look like data.
    """
    if len(delim) != 1 or decimal != ".":
        return None
    if any(_is_number(m) and math.isfinite(float(m)) for m in missing):
        return None
    try:
        head = pd.read_csv(io.StringIO(text), sep=delim, nrows=1, dtype=str, engine="c", **_READ_OPTIONS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return None
    headers = [str(h).strip() for h in head.fillna("").iloc[0]]
    if not any(headers):
        return None
    if all(_is_number(h) for h in headers):
        return None
    read = _read_fast(text, delim, headers)
    return None if read is None else (headers, *read)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _check_readable(path: Path, shown: str) -> None:
    """A regular file that fits in memory (``/dev/zero`` or a fifo would be read forever)."""
    import stat

    from sysid.budget import current_limits, format_bytes

    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"load_csv: {shown} is not a regular file (a device, pipe or socket); "
                        "pass a CSV file.")
    limit = current_limits().memory_bytes / 8  # cells as text and as numbers take several copies
    if st.st_size > limit:
        raise DataError(f"load_csv: {shown} is {format_bytes(st.st_size)}; reading it would need "
                        f"more memory than the limit allows ({format_bytes(limit)} of file). Split "
                        "it into files of one run each, or raise the limit with "
                        "sysid.budget.limits(memory_gb=...).")


def _stem(path: Path) -> str:
    """The run id of a file: its name without extension (``run1.csv.gz`` -> ``run1``)."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return Path(name).stem


def _expand(path_or_paths: object) -> list[tuple[Path, str]]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        shown = os.fspath(path_or_paths)
        p = Path(shown)
        if not p.exists() and any(ch in shown for ch in "*?["):
            found = sorted(glob.glob(shown))
            if not found:
                raise DataError(f"load_csv: no files match {shown!r}.")
            return [(Path(f), f) for f in found]
        return [(p, shown)]
    if isinstance(path_or_paths, Sequence) and not isinstance(path_or_paths, bytes):
        items = list(path_or_paths)
        if not items:
            raise DataError("load_csv: the list of files is empty.")
        return [(Path(os.fspath(x)), os.fspath(x)) for x in items]
    raise ConfigError(f"load_csv: expected a path, a glob or a list of paths; got {type(path_or_paths).__name__}.")


def _unquote(ids: np.ndarray) -> np.ndarray:
    """Run ids as written before :func:`~sysid.data.files.safe_cell` put a ``'`` in front."""
    from sysid.data.files import FORMULA_STARTS

    codes, uniques = pd.factorize(np.asarray(ids, dtype=object))  # few distinct ids: work on those
    series = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
    quoted = (series.str.len() > 1) & series.str.startswith("'") & series.str[1].isin(FORMULA_STARTS)
    if quoted.any():
        series[quoted] = series[quoted].str[1:]
    return series.to_numpy(dtype=str)[codes] if len(codes) else np.asarray(ids, dtype=str)


def _unit_for(opts: _Options, keys: Sequence[str], header_units: str, *, ctx: str, header: str) -> str:
    given = next((opts.units[k] for k in keys if k in opts.units), None)
    if given is not None and header_units and str(given) != header_units:
        raise DataError(
            f"{ctx}: units={{{keys[0]!r}: {given!r}}} contradicts the header {header!r}, which says "
            f"{header_units!r}. Drop one of them or make them agree."
        )
    return str(given) if given is not None else header_units


def _extract(part: _Part, opts: _Options) -> None:
    """Find the wanted columns of one table and convert them; results go to ``part.extracted``."""
    ctx = f"{opts.func}: {part.label}"
    cols = parse_headers(part.headers, context=ctx)
    tcol = find_column(cols, opts.time, role="time", context=ctx)
    chosen = {}
    for role, names in (("states", opts.states), ("inputs", opts.inputs)):
        for wanted in names:
            c = find_column(cols, wanted, role=role, context=ctx)
            if c.name in chosen or c.position == tcol.position:
                raise DataError(f"{ctx}: column {c.header!r} is named twice in time/states/inputs.")
            if c.name in _RESERVED:
                raise DataError(f"{ctx}: a variable may not be named {c.name!r} (reserved by the schema); "
                                "rename the column.")
            check_variable_name(c.name, context=f"{ctx}: column {c.header!r}")
            chosen[c.name] = (wanted, c, role)
    units = {}
    values = {}
    for name, (wanted, c, _role) in chosen.items():
        units[name] = _unit_for(opts, (wanted, c.name, c.header), c.units, ctx=ctx, header=c.header)
        values[name] = to_float(part.columns[c.position], column=c.header, context=ctx,
                                label=part.labels, decimal=opts.decimal, missing=opts.missing)
    tcells = part.columns[tcol.position]
    keys = (opts.time, tcol.name, tcol.header, TIME)
    aware = False
    if is_datetime_like(tcells, opts.missing):
        # units of a date column are the duration to express time in; a header label that is not a
        # duration (a zone such as "date [UTC]") describes the timestamps and is not used
        kind = "datetime"
        t, aware = dates_to_ns(tcells, column=tcol.header, context=ctx, label=part.labels,
                               missing=opts.missing)
        given = next((opts.units[k] for k in keys if k in opts.units), None)
        head = tcol.units if tcol.units.strip().lower() in TIME_UNITS else ""
        t_units = str(given) if given is not None else head
        if t_units:
            time_unit_seconds(t_units, context=ctx)
    else:
        t_units = _unit_for(opts, keys, tcol.units, ctx=ctx, header=tcol.header)
        kind = "numeric"
        t = to_float(tcells, column=tcol.header, context=ctx, label=part.labels, decimal=opts.decimal,
                     missing=opts.missing)
    runs = None
    for wanted in opts.trajectory:
        rcol = find_column(cols, wanted, role="trajectory", context=ctx)
        text = part.text(rcol.position)
        empty = text == ""
        if empty.any():
            raise DataError(f"{ctx}: the run column {rcol.header!r} is empty at "
                            f"{part.labels(np.flatnonzero(empty))[0]}; every row needs a run id.")
        ids = _unquote(text).astype(object)
        runs = ids if runs is None else runs + "/" + ids
    part.extracted = {"time": t, "kind": kind, "time_units": t_units, "time_name": tcol.name, "aware": aware,
                      "values": values, "units": units, "runs": runs,
                      "roles": {n: r for n, (_w, _c, r) in chosen.items()}}


def _merge_units(parts: list[_Part], names: list[str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for part in parts:
        pu = dict(part.extracted["units"])
        pu[TIME] = part.extracted["time_units"]
        for name in [*names, TIME]:
            u = pu[name]
            if not u:
                continue
            if name in merged and merged[name] != u:
                raise DataError(
                    f"load_csv: inconsistent units for {name!r}: {merged[name]!r} in {origin[name]} but "
                    f"{u!r} in {part.label}. Convert the files to the same units."
                )
            merged.setdefault(name, u)
            origin.setdefault(name, part.label)
    return merged


def _assemble(parts: list[_Part], opts: _Options, *, source: str) -> xr.Dataset:
    for part in parts:
        _extract(part, opts)
    names = list(parts[0].extracted["roles"])
    states = [n for n in names if parts[0].extracted["roles"][n] == "states"]
    inputs = [n for n in names if parts[0].extracted["roles"][n] == "inputs"]
    for part in parts[1:]:
        if list(part.extracted["roles"]) != names:
            raise DataError(f"{opts.func}: {part.label} names its columns {list(part.extracted['roles'])} "
                            f"but {parts[0].label} gives {names}.")
    units = _merge_units(parts, names)
    time_attrs = _unify_time_kind(parts, opts, units)
    runs = _group_runs(parts, opts)
    times, values, n_sorted, n_dropped = _run_arrays(runs, names, opts)
    where = ", ".join(p.label for p in parts)
    for n in names:
        flat = np.concatenate(values[n])
        role = "state" if n in states else "input"
        if np.isnan(flat).all():
            raise DataError(f"{opts.func}: {where}: {role} {n!r} has no values (every cell is empty or "
                            "missing). Remove it from the "
                            f"{role}s or check the column.")
        warn_constant(n, flat, context=f"{opts.func}: {where}")
    attrs: dict[str, object] = {"source": source}
    shas = [p.sha256 for p in parts if p.sha256]
    if shas:
        attrs["source_sha256"] = ", ".join(shas)
    attrs.update(sampling_attrs(times))
    done = []
    if opts.sort:
        done.append(f"sort=True: {n_sorted} run(s) reordered by time")
    if opts.drop_duplicates:
        done.append(f"drop_duplicates=True: {n_dropped} row(s) with a repeated time dropped (first kept)")
    if done:
        attrs["processing"] = "; ".join(done)
    time_name = parts[0].extracted["time_name"]
    ds = from_arrays(times, values, states=states, inputs=inputs, runs=[r for r, _p, _i in runs],
                     units=units, long_names={TIME: time_name}, attrs=attrs)
    ds[TIME].attrs.update(time_attrs)
    return validate(ds, min_samples=opts.min_samples, where=f"{opts.func}: {where}")


def _unify_time_kind(parts: list[_Part], opts: _Options, units: dict[str, str]) -> dict[str, str]:
    """One time form across files; dates become float time from the earliest date (updates ``units``).

    Returns the time coordinate's extra attributes (the date ``origin``).
    """
    kinds = {p.extracted["kind"] for p in parts}
    if len(kinds) > 1:
        dates = [p.label for p in parts if p.extracted["kind"] == "datetime"]
        numbers = [p.label for p in parts if p.extracted["kind"] == "numeric"]
        raise DataError(f"{opts.func}: time is given as dates in {dates} but as numbers in {numbers}; "
                        "use one form in every file.")
    if kinds != {"datetime"}:
        return {}
    t0 = min(int(p.extracted["time"].min()) for p in parts)
    all_ns = np.concatenate([p.extracted["time"] - t0 for p in parts])
    t_units = units.get(TIME) or ("days" if np.all(all_ns % (86400 * 10**9) == 0) else "seconds")
    sec = time_unit_seconds(t_units, context=opts.func)
    units[TIME] = canonical_time_unit(t_units)
    for p in parts:
        p.extracted["time"] = (p.extracted["time"] - t0).astype(np.float64) / (sec * 1e9)
    origin = pd.Timestamp(t0, unit="ns")
    if any(p.extracted["aware"] for p in parts):
        origin = origin.tz_localize("UTC")
    return {"origin": origin.isoformat()}


def _group_runs(parts: list[_Part], opts: _Options) -> list[tuple[str, _Part, np.ndarray]]:
    """(run id, part, row indices) of every run, in file order; run ids unique across files."""
    runs: list[tuple[str, _Part, np.ndarray]] = []
    seen: dict[str, str] = {}
    for part in parts:
        ids = part.extracted["runs"]
        if ids is None:
            groups = [(part.run_id, np.arange(len(part.rows)))]
        else:
            index = pd.Series(ids).groupby(ids, sort=False).indices
            groups = [(str(r), np.asarray(index[r])) for r in pd.unique(ids)]
        for rid, idx in groups:
            if rid in seen:
                raise DataError(f"{opts.func}: run id {rid!r} appears in both {seen[rid]} and {part.label}; "
                                "run ids must be unique across files.")
            seen[rid] = part.label
            runs.append((rid, part, idx))
    return runs


def _run_arrays(runs: list[tuple[str, _Part, np.ndarray]], names: list[str], opts: _Options
                ) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], int, int]:
    """Each run's checked times and values (sorted / de-duplicated when asked).

    Returns the times, the values per variable, and how many runs were sorted and rows dropped.
    """
    times: list[np.ndarray] = []
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    n_sorted = n_dropped = 0
    for rid, part, idx in runs:
        ctx = f"{opts.func}: {part.label}"
        t = np.asarray(part.extracted["time"], dtype=float)[idx]
        finite = np.isfinite(t)
        if not finite.all():
            check_run_time(t, run=rid, context=ctx, label=lambda i, idx=idx, part=part:
                           part.labels(idx[[i]])[0])
        if opts.sort and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            idx, t = idx[order], t[order]
            n_sorted += 1
        if opts.drop_duplicates:
            keep = np.concatenate([[True], np.diff(t) != 0])
            n_dropped += int((~keep).sum())
            idx, t = idx[keep], t[keep]
        check_run_time(
            t, run=rid, context=ctx, label=lambda i, idx=idx, part=part: part.labels(idx[[i]])[0],
            order_hint=" Sort the rows by time, or pass sort=True.",
            duplicate_hint=" Remove one of the rows, or pass drop_duplicates=True to keep the first.",
        )
        check_run_length(len(t), run=rid, context=ctx, min_samples=opts.min_samples)
        times.append(t)
        for n in names:
            v = part.extracted["values"][n][idx]
            if np.isinf(v).any():
                i = int(np.argmax(np.isinf(v)))
                raise DataError(
                    f"{ctx}: column {n!r} is {v[i]} at {part.labels(idx[[i]])[0]} (run {rid!r}); "
                    "±inf is not a measurement. Use an empty cell for a missing value, or a finite number."
                )
            values[n].append(v)
    return times, values, n_sorted, n_dropped


def _run_columns(func: str, trajectory: str | Sequence[str] | None) -> tuple[str, ...]:
    if trajectory is None:
        return ()
    if isinstance(trajectory, str):
        return (trajectory,)
    cols = tuple(str(c) for c in trajectory)
    if not cols:
        raise ConfigError(f"{func}: trajectory=[] names no run column; pass None for a single run.")
    return cols


def _options(func: str, time: str, states: Sequence[str], inputs: Sequence[str],
             trajectory: str | Sequence[str] | None,
             units: Mapping[str, str] | None, decimal: str, missing_values: Sequence[str], sort: bool,
             drop_duplicates: bool, min_samples: int) -> _Options:
    if isinstance(states, str) or isinstance(inputs, str):
        raise ConfigError(f"{func}: states and inputs are lists of column names; got a single string "
                          f"(write states=[{states!r}]).")
    for arg, value in (("states", states), ("inputs", inputs)):
        if not hasattr(value, "__iter__"):
            raise ConfigError(f"{func}: {arg} must be a list of column names; got "
                              f"{type(value).__name__}.")
    if not list(states):
        raise ConfigError(f"{func}: states is empty; name at least one measured column.")
    if decimal not in (".", ","):
        raise ConfigError(f"{func}: decimal must be '.' or ','; got {decimal!r}.")
    if isinstance(missing_values, str):
        missing_values = [missing_values]
    if int(min_samples) < 1:
        raise ConfigError(f"{func}: min_samples must be at least 1; got {min_samples}.")
    return _Options(func=func, time=str(time), states=tuple(map(str, states)), inputs=tuple(map(str, inputs)),
                    trajectory=_run_columns(func, trajectory),
                    units={str(k): str(v) for k, v in (units or {}).items()}, decimal=decimal,
                    missing=tuple(DEFAULT_MISSING) + tuple(str(m).strip() for m in missing_values),
                    sort=bool(sort), drop_duplicates=bool(drop_duplicates), min_samples=int(min_samples))


def load_csv(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    time: str,
    states: Sequence[str],
    inputs: Sequence[str] = (),
    trajectory: str | Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    sep: str | None = None,
    decimal: str = ".",
    encoding: str | None = None,
    missing_values: Sequence[str] = (),
    sort: bool = False,
    drop_duplicates: bool = False,
    min_samples: int = 2,
    where: str | None = None,
) -> xr.Dataset:
    """Load measured trajectories from CSV into the trajectory schema.

    Two layouts: long format (one file, a run-id column named by ``trajectory``; without it the
    file is one run) or one file per run (a list of paths or a glob such as ``"runs/*.csv"``; run
    ids are the file names without extension). A list of files with a ``trajectory`` column is
    also accepted; run ids must then be unique across files.

    Parameters
    ----------
    path_or_paths : path, glob or list of paths
        The CSV file(s).
    time : str
        The time column: numbers (kept as given) or ISO 8601 dates/date-times (float time since
        the earliest timestamp, ``origin`` and ``units`` in the time coordinate's attrs).
    states, inputs : sequence of str
        Measured state columns and input (forcing) columns. A column may be named with or without
        the units part of its header (``"x"`` or ``"x [m]"``); the variable is called ``x``.
    trajectory : str or sequence of str, optional
        Column holding run ids (long format); several columns (e.g. ``["split", "traj"]``) when
        only together they identify a run: the run id is then their values joined by ``/``.
    units : mapping, optional
        Units per column (keys as in ``time``/``states``/``inputs``); a header unit that disagrees
        is an error.
    sep : str, optional
        Delimiter; ``None`` detects ``,`` ``;`` tab ``|`` or whitespace.
    decimal : {".", ","}
        Decimal mark.
    encoding : str, optional
        Text encoding; default UTF-8 (a byte-order mark is removed).
    missing_values : sequence of str
        Extra cell texts meaning "no measurement" (besides empty, NA, N/A, NaN, nan, null, NULL).
        Missing values stay NaN: never dropped or interpolated.
    sort, drop_duplicates : bool
        Sort each run by time / drop rows repeating a time within a run (first kept) instead of
        raising; recorded in the ``processing`` attribute.
    min_samples : int
        Fewest samples a run may have.
    where : str, optional
        Keep only the rows for which this condition holds, e.g. ``"condition == 'mixture'"`` or
        ``"dose > 2 and site != 'B'"``: comparisons of any columns (named as in ``states``) with
        numbers or text, joined by ``and``/``or``/``not`` (parsed by :mod:`sysid.expressions`,
        never evaluated as Python). Rows keep their numbers in error messages; a file with no
        row left is dropped (the condition is recorded in ``processing``).

    Returns
    -------
    xarray.Dataset
        The trajectory schema, validated; attrs ``source``, ``source_sha256`` and sampling
        statistics ``dt_min``, ``dt_median``, ``dt_max``, ``sampling``.

    Raises
    ------
    DataError
        For every problem of RELIABILITY.md's data checklist, naming file, column, run and row.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "cell.csv"
    >>> _ = f.write_text("t [s],x [m]\\n0,1.0\\n1,0.5\\n")
    >>> ds = load_csv(f, time="t", states=["x"])
    >>> ds["x"].attrs["units"], ds["time"].attrs["units"]
    ('m', 's')
    """
    opts = _options("load_csv", time, states, inputs, trajectory, units, decimal, missing_values, sort,
                    drop_duplicates, min_samples)
    if sep is not None and (not isinstance(sep, str) or not sep or any(c in sep for c in "\"\r\n")):
        raise ConfigError(f"load_csv: sep must be the column delimiter, such as ',' or ';' (or None to "
                          f"detect it); got {sep!r}.")
    files = _expand(path_or_paths)
    parts = [_read_file(p, shown, sep=sep, decimal=decimal, encoding=encoding, missing=opts.missing)
             for p, shown in files]
    if where is not None:
        parts = _keep_rows(parts, where, opts)
    stems = [p.run_id for p in parts]
    if len(set(stems)) != len(stems):
        for p in parts:
            p.run_id = p.label
    ds = _assemble(parts, opts, source=", ".join(shown for _p, shown in files))
    if where is not None:
        done = ds.attrs.get("processing", "")
        ds.attrs["processing"] = (f"{done}; " if done else "") + f"rows where {where}"
    return ds


def _keep_rows(parts: list[_Part], where: str, opts: _Options) -> list[_Part]:
    """The parts with only the rows where the condition ``where`` holds (empty parts dropped)."""
    from sysid.backend import NUMPY
    from sysid.expressions import parse

    expr = parse(where, where=f"{opts.func}: where", strings=True)
    missing = set(DEFAULT_MISSING) | set(opts.missing)
    kept = []
    for part in parts:
        ctx = f"{opts.func}: {part.label}"
        cols = parse_headers(part.headers, context=ctx)
        env = {}
        for name in expr.names:
            cells = np.asarray(part.columns[find_column(cols, name, role="where", context=ctx).position],
                               dtype=object)
            absent = np.array([c in missing for c in cells], dtype=bool)
            try:
                numbers = np.array([float(str(c).replace(opts.decimal, ".")) if not a else np.nan
                                    for c, a in zip(cells, absent)], dtype=float)
                env[name] = numbers
            except ValueError:  # a text column: compared as text
                env[name] = np.where(absent, "", cells).astype(object)
        value = np.asarray(expr.evaluate(env, NUMPY)) if expr.names else np.asarray(expr.evaluate({}, NUMPY))
        if value.dtype != bool:
            raise ConfigError(f"{opts.func}: where {where!r} must be a condition (a comparison such as "
                              f"condition == 'mixture'); it gives {value.dtype} values.")
        keep = np.broadcast_to(value, (len(part.rows),))
        if keep.any():
            part.columns = [np.asarray(c)[keep] for c in part.columns]
            part.rows = part.rows[keep]
            if part.kept is not None:
                part.kept = part.kept[keep]
            kept.append(part)
    if not kept:
        raise DataError(f"{opts.func}: no row of {', '.join(p.label for p in parts)} satisfies "
                        f"where {where!r}; check the column values (text is compared exactly, "
                        "with its case).")
    return kept


def from_dataframe(
    df: pd.DataFrame,
    *,
    time: str,
    states: Sequence[str],
    inputs: Sequence[str] = (),
    trajectory: str | Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    missing_values: Sequence[str] = (),
    sort: bool = False,
    drop_duplicates: bool = False,
    min_samples: int = 2,
) -> xr.Dataset:
    """Build the trajectory schema from a pandas DataFrame (long format).

    Same rules and errors as :func:`load_csv`; rows are named by their index label. A time or
    run column may also be the (named) index. Datetime64 time columns are converted as dates are
    in :func:`load_csv`.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"t": [0.0, 1.0, 0.0, 2.0], "x": [1.0, 2.0, 3.0, 4.0], "run": list("aabb")})
    >>> from_dataframe(df, time="t", states=["x"], trajectory="run")["trajectory"].values.tolist()
    ['a', 'b']
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"from_dataframe: expected a pandas DataFrame; got {type(df).__name__}.")
    opts = _options("from_dataframe", time, states, inputs, trajectory, units, ".", missing_values, sort,
                    drop_duplicates, min_samples)
    wanted = {opts.time, *opts.states, *opts.inputs, *opts.trajectory}
    labels = df.index.to_numpy()
    if any(n in wanted and n not in map(str, df.columns) for n in map(str, df.index.names) if n != "None"):
        df = df.reset_index()
    if df.empty:
        raise DataError("from_dataframe: the DataFrame has no rows.")
    part = _Part(label="DataFrame", headers=[str(c) for c in df.columns],
                 columns=[df.iloc[:, j] for j in range(df.shape[1])], rows=labels, row_word="index")
    return _assemble([part], opts, source="DataFrame")


__all__ = ["load_csv", "from_dataframe"]
