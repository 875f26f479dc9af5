"""Shared plumbing of the case-study scripts: command line, output folder, result tables.

Every study is ``python case_studies/NAME.py [--fast] [--out DIR]`` and exposes ``main(argv)``,
which returns a :class:`Study` (the checks it made and the numbers it measured) so the test suite
can run it in fast mode and assert the published-reference comparison.

A *check* compares one measured number with a published reference: its relative (or absolute)
difference must stay within a tolerance. Full mode uses the tolerance the issue states; fast mode
runs shorter fits and may use a looser tolerance, and each script says why next to the number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["Check", "Study", "parse_args", "study_parser", "setup", "with_initial_sample", "rows_between"]


def setup() -> None:
    """One torch thread (the machine is shared; one thread never stalls), no progress bars, Agg."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)


def study_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """The arguments every study takes: ``--fast`` (short fits, looser tolerances) and ``--out DIR``
    (figures and tables); a study adds its own (``--data PATH``) to the parser returned."""
    parser = argparse.ArgumentParser(description=description.strip().splitlines()[0])
    parser.add_argument("--fast", action="store_true",
                        help="short fits for the test suite (looser tolerances, stated in the script)")
    parser.add_argument("--out", default=default_out,
                        help=f"folder for figures and the metrics table (default {default_out})")
    return parser


def parse_args(argv: Sequence[str] | None, description: str, default_out: str) -> argparse.Namespace:
    """Parse ``argv`` with :func:`study_parser`'s arguments only."""
    return study_parser(description, default_out).parse_args(list(argv) if argv is not None else None)


@dataclass(frozen=True, kw_only=True)
class Check:
    """One measured number against its published reference.

    Attributes
    ----------
    name : str
        What is compared, e.g. ``"LV a"``.
    value, reference : float
        Measured and published values.
    tolerance : float
        Allowed difference: relative (fraction of ``|reference|``) unless ``absolute``.
    absolute : bool
        Compare ``|value - reference| <= tolerance`` instead of the relative difference.
    source : str
        Where the reference comes from.
    """

    name: str
    value: float
    reference: float
    tolerance: float
    absolute: bool = False
    source: str = ""

    @property
    def difference(self) -> float:
        """Relative difference (or absolute, for absolute checks)."""
        d = self.value - self.reference
        return d if self.absolute else d / abs(self.reference)

    @property
    def passed(self) -> bool:
        """Whether the difference is within the tolerance (False for a non-finite value)."""
        return bool(math.isfinite(self.value) and abs(self.difference) <= self.tolerance)

    def row(self) -> dict[str, Any]:
        """The check as one table row."""
        kind = "abs" if self.absolute else "rel"
        return {"quantity": self.name, "value": self.value, "reference": self.reference,
                "difference": self.difference, "tolerance": f"{kind} {self.tolerance:g}",
                "passed": self.passed, "source": self.source}


@dataclass(kw_only=True)
class Study:
    """What a case study measured: checks, extra metrics tables, figures, timings.

    ``save()`` writes ``<out>/<name>/``: ``checks.csv``/``.md``, one CSV per table, ``summary.json``
    (every check and table), ``README.md`` (all tables as Markdown) and the figures (PNG).
    """

    name: str
    out: Path
    fast: bool
    checks: list[Check] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def folder(self) -> Path:
        """The study's output folder (created on first use)."""
        path = Path(self.out) / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def check(self, name: str, value: float, reference: float, tolerance: float, *,
              absolute: bool = False, source: str = "") -> Check:
        """Record a comparison with a published reference and return it."""
        c = Check(name=name, value=float(value), reference=float(reference), tolerance=tolerance,
                  absolute=absolute, source=source)
        self.checks.append(c)
        return c

    def table(self, name: str, df: pd.DataFrame) -> pd.DataFrame:
        """Record a metrics table under ``name``."""
        self.tables[name] = df
        return df

    def figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib Figure as ``<name>.png`` and close it."""
        path = self.folder / f"{name}.png"
        fig.savefig(path, dpi=110)
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except Exception:  # a bare Figure is not registered with pyplot  # noqa: BLE001
            pass
        self.figures.append(path.name)
        return path

    @property
    def passed(self) -> bool:
        """Every check within its tolerance."""
        return all(c.passed for c in self.checks)

    def checks_frame(self) -> pd.DataFrame:
        """The checks as a DataFrame."""
        return pd.DataFrame([c.row() for c in self.checks])

    def save(self) -> Path:
        """Write the tables, the summary JSON and a Markdown digest; return the folder."""
        from sysid.analysis import jsonable, markdown_table

        folder = self.folder
        checks = self.checks_frame()
        checks.to_csv(folder / "checks.csv", index=False)
        md = [f"# {self.name} ({'fast' if self.fast else 'full'} mode)", "",
              "## Checks against published references", "",
              markdown_table(checks, index=False) if len(checks) else "(none)", ""]
        for key, df in self.tables.items():
            df.to_csv(folder / f"{key}.csv")
            md += [f"## {key}", "", markdown_table(df), ""]
        if self.notes:
            md += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        if self.figures:
            md += ["## Figures", ""] + [f"![{f}]({f})" for f in self.figures] + [""]
        (folder / "README.md").write_text("\n".join(md), encoding="utf-8")
        summary = {
            "study": self.name, "mode": "fast" if self.fast else "full",
            "passed": self.passed, "seconds": time.perf_counter() - self.started,
            "checks": [c.row() for c in self.checks],
            "tables": {k: json.loads(df.to_json(orient="split", default_handler=str))
                       for k, df in self.tables.items()},
            "notes": self.notes, "figures": self.figures,
        }
        (folder / "summary.json").write_text(json.dumps(jsonable(summary), indent=2), encoding="utf-8")
        return folder

    def report(self) -> str:
        """A plain-text summary for the console."""
        lines = [f"== {self.name} ({'fast' if self.fast else 'full'} mode, "
                 f"{time.perf_counter() - self.started:.0f} s)"]
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            diff = f"{100 * c.difference:+.1f} %" if not c.absolute else f"{c.difference:+.3g}"
            lines.append(f"  [{mark}] {c.name}: {c.value:.5g} vs {c.reference:.5g} ({diff}; "
                         f"tolerance {'' if c.absolute else '±'}{c.tolerance:g}"
                         f"{'' if c.absolute else ' rel'})")
        for key, df in self.tables.items():
            lines.append(f"  -- {key}")
            lines += ["    " + s for s in df.to_string(float_format=lambda v: f"{v:.4g}").splitlines()]
        for n in self.notes:
            lines.append(f"  * {n}")
        lines.append(f"  outputs: {self.folder}")
        return "\n".join(lines)


def with_initial_sample(ds: xr.Dataset, time: float, values: Mapping[str, float], *,
                        rename: Mapping[str, str] | None = None,
                        units: Mapping[str, str] | None = None) -> xr.Dataset:
    """The runs of ``ds`` with one extra first sample at ``time`` holding known initial values.

    Published fits often fix the state at a time before the first measurement (SIR: S0 = 762,
    I0 = 1 at day 0 while the data start at day 1; BOD: y = 0 at t = 0). Adding that sample as a
    measurement lets ``sysid.fit`` start each run from it (``initial_states="measured"``).
    States named in ``values`` but absent from the data (e.g. the unmeasured S and R of SIR)
    become variables measured only at that first sample (NaN elsewhere).

    Parameters
    ----------
    ds : xarray.Dataset
        Measured trajectories (sysid schema), every run starting after ``time``.
    time : float
        Time of the added sample.
    values : mapping of str to float or sequence
        Value of each state at ``time`` (one number, or one per run), by the name after ``rename``.
    rename : mapping, optional
        Data variable -> model state name.
    units : mapping, optional
        Units of new variables.
    """
    from sysid.data import from_arrays, get_run, run_ids, state_names
    from sysid.errors import DataError

    rename = dict(rename or {})
    runs = run_ids(ds)
    measured = state_names(ds)
    names = [rename.get(n, n) for n in measured]
    extra = [n for n in values if n not in names]
    times, cols = [], {n: [] for n in names + extra}
    for i, rid in enumerate(runs):
        one = get_run(ds, rid)
        t = one["time"].values
        if not t[0] > time:
            raise DataError(f"with_initial_sample: run {rid!r} starts at t={t[0]:g}, not after the "
                            f"added sample's t={time:g}; give a time before the first measurement.")
        times.append(np.concatenate([[time], t]))
        for src, dst in zip(measured, names):
            first = _per_run(values.get(dst, np.nan), i)
            cols[dst].append(np.concatenate([[first], one[src].values]))
        for dst in extra:
            arr = np.full(t.size + 1, np.nan)
            arr[0] = _per_run(values[dst], i)
            cols[dst].append(arr)
    unit_map = {rename.get(n, n): str(ds[n].attrs.get("units", "")) for n in measured}
    unit_map.update(units or {})
    unit_map["time"] = str(ds["time"].attrs.get("units", ""))
    long_names = {rename.get(n, n): str(ds[n].attrs.get("long_name", n)) for n in measured}
    return from_arrays(times, cols, states=names + extra, runs=runs, units=unit_map,
                       long_names=long_names, attrs={"source": str(ds.attrs.get("source", ""))})


def _per_run(value: Any, i: int) -> float:
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    return float(arr[0] if arr.size == 1 else arr[i])


def rows_between(ds: xr.Dataset, start: float, stop: float) -> xr.Dataset:
    """The samples with ``start <= time <= stop`` of a single-run dataset (times unchanged)."""
    from sysid.data import from_arrays, get_run, run_ids, state_names

    from sysid.errors import DataError

    ids = run_ids(ds)
    if len(ids) != 1:
        raise DataError(f"rows_between: needs a single-run dataset; got {len(ids)} runs {ids}.")
    rid = ids[0]
    one = get_run(ds, rid)
    t = one["time"].values
    keep = (t >= start) & (t <= stop)
    names = state_names(ds)
    return from_arrays([t[keep]], {n: [one[n].values[keep]] for n in names}, states=names,
                       runs=[rid], units={**{n: str(ds[n].attrs.get("units", "")) for n in names},
                                          "time": str(ds["time"].attrs.get("units", ""))},
                       long_names={n: str(ds[n].attrs.get("long_name", n)) for n in names},
                       attrs={"source": str(ds.attrs.get("source", ""))})
