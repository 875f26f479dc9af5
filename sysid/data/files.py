"""Trajectory datasets on disk: netCDF and zarr (through xarray) and long-format CSV export.

Writes are atomic (:mod:`sysid.atomic`): the data go to a temporary path in the target's folder,
are flushed to disk and then replace the target, so a crash never leaves a half-written file
under the final name. An existing target is replaced only with ``overwrite=True``.

Reads pass ``decode_times=False`` and ``decode_timedelta=False``: time is float64 in the units
of its ``units`` attribute (``"days"`` would otherwise decode to timedeltas an ODE cannot use).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from sysid import atomic
from sysid.data.schema import TIME, TRAJ, input_names, run_ids, state_names
from sysid.data.validate import validate
from sysid.errors import DataError

_NETCDF = (".nc", ".nc4", ".netcdf")
_ZARR = (".zarr",)


def _normalise(ds: xr.Dataset) -> xr.Dataset:
    """Run ids as Python str (object dtype, as from_arrays builds them); no backend encodings."""
    ds = ds.assign_coords({TRAJ: np.array([str(r) for r in ds[TRAJ].values], dtype=object)})
    return ds.drop_encoding()


def _open(path: str | os.PathLike, func: str, opener: Callable[[str], xr.Dataset], kind: str) -> xr.Dataset:
    shown = os.fspath(path)
    if not Path(shown).exists():
        raise DataError(f"{func}: file not found: {shown}. Check the path and the working folder.")
    try:
        with opener(shown) as ds:
            ds = ds.load()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{func}: {shown} could not be read as {kind} ({type(exc).__name__}: {exc}).") from None
    ds = _normalise(ds)
    return validate(ds, where=f"{func}: {shown}")


def load_netcdf(path: str | os.PathLike) -> xr.Dataset:
    """Load a trajectory dataset from netCDF (engine ``netcdf4``) and validate it.

    Raises
    ------
    DataError
        Missing file, a file that is not netCDF, or a dataset outside the schema (naming the file).
    """
    return _open(path, "load_netcdf", lambda p: xr.open_dataset(
        p, engine="netcdf4", decode_times=False, decode_timedelta=False), "netCDF")


def load_zarr(path: str | os.PathLike) -> xr.Dataset:
    """Load a trajectory dataset from a zarr store and validate it."""
    return _open(path, "load_zarr", lambda p: xr.open_zarr(
        p, consolidated=False, decode_times=False, decode_timedelta=False), "zarr")


def _check_target(path: Path, func: str, overwrite: bool) -> None:
    if not path.parent.is_dir():
        raise DataError(f"{func}: folder {path.parent} does not exist; create it first.")
    if path.exists() and not overwrite:
        raise DataError(f"{func}: {path} exists; pass overwrite=True to replace it, or choose another name.")


def save(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a trajectory dataset to netCDF (``.nc``, engine netcdf4) or zarr (``.zarr``), atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the trajectory schema.
    path : path
        Target file (``.nc``/``.nc4``/``.netcdf``) or store (``.zarr``).
    overwrite : bool
        Replace an existing target (default: refuse).

    Returns
    -------
    pathlib.Path
        The written path.

    Examples
    --------
    >>> import numpy as np, pathlib, tempfile
    >>> from sysid.data import from_arrays, load_netcdf
    >>> ds = from_arrays([np.array([0.0, 1.0])], {"x": [np.array([1.0, 2.0])]}, states=["x"])
    >>> p = save(ds, pathlib.Path(tempfile.mkdtemp()) / "ds.nc")
    >>> load_netcdf(p).identical(ds)
    True
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _NETCDF + _ZARR:
        raise DataError(f"save: {path} has suffix {suffix!r}; use .nc for netCDF or .zarr for zarr "
                        "(to_csv writes CSV).")
    _check_target(path, "save", overwrite)
    out = _normalise(ds)
    kind = "netCDF" if suffix in _NETCDF else "zarr"
    with atomic.writing(path, overwrite=overwrite) as tmp:
        try:
            if suffix in _NETCDF:
                out.to_netcdf(tmp, engine="netcdf4")
            else:
                out.to_zarr(tmp, mode="w-", consolidated=False)
        except (TypeError, ValueError) as exc:
            raise DataError(f"save: {path}: the dataset cannot be written as {kind} "
                            f"({type(exc).__name__}: {exc}). Attributes must be strings, numbers or "
                            "lists of them.") from None
    return path


#: First characters that make a spreadsheet read a cell as a formula (``=cmd|' /C calc'!A0``).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """``text`` for a CSV cell that spreadsheets show as text, never run as a formula.

    A cell starting with ``= + - @`` (or tab / carriage return) gets a ``'`` in front, as OWASP
    recommends against CSV injection; :func:`load_csv` removes it again from run ids, so run ids
    round-trip.

    Examples
    --------
    >>> safe_cell("=cmd|' /C calc'!A0"), safe_cell("run 1")
    ("'=cmd|' /C calc'!A0", 'run 1')
    """
    return "'" + text if text[:1] in FORMULA_STARTS else text


def _header(name: str, units: str) -> str:
    if not units:
        return name
    if "[" in units or "]" in units:
        if "(" in units or ")" in units:
            raise DataError(f"to_csv: units {units!r} of {name!r} contain both brackets and parentheses "
                            "and cannot be written in a header that reads back.")
        return f"{name} ({units})"
    return f"{name} [{units}]"


def to_csv(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = False,
           time: str = "time", trajectory: str | None = "trajectory") -> Path:
    """Write a trajectory dataset as long-format CSV, atomically.

    Columns: ``trajectory``, ``time [units]``, then states and inputs as ``name [units]``;
    one row per sample (padding left out); missing values are empty cells; numbers are written
    as the shortest text that reads back to the same float64. Run ids that a spreadsheet would
    run as a formula (starting with ``= + - @``) are written with a leading ``'``
    (:func:`safe_cell`), which :func:`load_csv` removes. Read it back with
    ``load_csv(path, time="time", states=..., inputs=..., trajectory="trajectory")``. The time
    origin and long names are not part of the CSV.

    ``time`` and ``trajectory`` name those two columns (e.g. a user's ``t`` and ``run``, so
    that a file written from their data reads back with the same options); ``trajectory=None``
    leaves the run column out, which a dataset of one run allows.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    _check_target(path, "to_csv", overwrite)
    names = state_names(ds) + input_names(ds)
    if trajectory is None and len(run_ids(ds)) != 1:
        raise DataError(f"to_csv: trajectory=None leaves out the run column, which needs one run; "
                        f"the data has {len(run_ids(ds))}. Name the column, e.g. trajectory='run'.")
    clash = [c for c in (time, trajectory) if c in names]
    if clash or time == trajectory:
        raise DataError(f"to_csv: the column names time={time!r} and trajectory={trajectory!r} must "
                        f"differ from each other and from the variables {names}.")
    head = ([trajectory] if trajectory is not None else []) + [
        _header(time, str(ds[TIME].attrs.get("units", "")))]
    head += [_header(n, str(ds[n].attrs.get("units", ""))) for n in names]
    times = np.asarray(ds[TIME].values, dtype=float)
    arrays = [np.asarray(ds[v].values, dtype=float) for v in names]
    with atomic.writing(path, overwrite=overwrite) as tmp:
        with open(tmp, "x", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerow(head)
            # column by column (not cell by cell): 5 million rows took 80 s written row by row
            for i, rid in enumerate(run_ids(ds)):
                n = int(np.count_nonzero(~np.isnan(times[i])))
                cols = [_number_texts(times[i, :n])] + [_number_texts(a[i, :n]) for a in arrays]
                prefix = _csv_cell(safe_cell(str(rid))) + "," if trajectory is not None else ""
                fh.write("".join(prefix + ",".join(row) + "\n" for row in zip(*cols)))
    return path


def _number_texts(values: np.ndarray) -> list[str]:
    """Shortest text that reads back to the same float64 (``repr``); "" for NaN."""
    return ["" if x != x else repr(x) for x in values.tolist()]


def _csv_cell(text: str) -> str:
    """One cell as :mod:`csv` writes it (quoted when it holds a delimiter, quote or newline)."""
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([text])
    return buf.getvalue()


__all__ = ["load_netcdf", "load_zarr", "save", "to_csv", "safe_cell", "FORMULA_STARTS"]
