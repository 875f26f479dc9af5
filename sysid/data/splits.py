"""Train/test splits of trajectory datasets: by run (held-out runs) and by time (each run's tail)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np
import xarray as xr

from sysid.data.schema import OBS, TIME, TRAJ, run_ids
from sysid.data.validate import fmt
from sysid.errors import ConfigError, DataError


def select_runs(ds: xr.Dataset, ids: Sequence[str]) -> xr.Dataset:
    """The runs ``ids`` (in that order), with the obs dimension trimmed to the longest of them."""
    out = ds.sel({TRAJ: list(ids)})
    n = int((~np.isnan(out[TIME].values)).sum(axis=1).max()) if len(ids) else 0
    return out.isel({OBS: slice(0, n)})


def split_runs(
    ds: xr.Dataset, holdout: Sequence[str] | float, *, seed: int | None = None
) -> tuple[xr.Dataset, xr.Dataset]:
    """Split into training runs and held-out runs.

    Parameters
    ----------
    ds : xarray.Dataset
        Trajectory dataset.
    holdout : list of run ids, or float in (0, 1)
        The runs to hold out, or the fraction of runs to hold out (at least one,
        ``round(fraction * n_runs)``).
    seed : int, optional
        With a fraction: ``None`` holds out the last runs in dataset order; an integer picks them
        at random with ``numpy.random.default_rng(seed)``.

    Returns
    -------
    (train, test) : tuple of xarray.Dataset
        Both keep the dataset's attrs; the obs dimension is trimmed to each part's longest run.

    Raises
    ------
    DataError
        An unknown run id, or a split that leaves no training run.

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> t = [np.arange(3.0)] * 4
    >>> ds = from_arrays(t, {"x": [np.ones(3)] * 4}, states=["x"], runs=list("abcd"))
    >>> [r.trajectory.values.tolist() for r in split_runs(ds, 0.25)]
    [['a', 'b', 'c'], ['d']]
    """
    ids = run_ids(ds)
    if isinstance(holdout, (float, int)) and not isinstance(holdout, bool):
        frac = float(holdout)
        if not 0.0 < frac < 1.0:
            raise ConfigError(f"split_runs: a holdout fraction must lie in (0, 1); got {holdout}.")
        k = max(1, int(round(frac * len(ids))))
        if seed is None:
            test = ids[len(ids) - k:]
        else:
            pick = np.random.default_rng(seed).choice(len(ids), size=min(k, len(ids)), replace=False)
            test = [ids[i] for i in sorted(pick)]
    elif isinstance(holdout, str):
        raise ConfigError(f"split_runs: holdout is a list of run ids or a fraction; got the string "
                          f"{holdout!r} (write holdout=[{holdout!r}]).")
    else:
        test = [str(h) for h in holdout]
        for h in test:
            if h not in ids:
                close = difflib.get_close_matches(h, ids, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise DataError(f"split_runs: no run {h!r}; runs are {ids}.{hint}")
        if not test:
            raise ConfigError("split_runs: holdout is empty; name at least one run to hold out.")
    train = [r for r in ids if r not in test]
    if not train:
        raise DataError(
            f"split_runs: holding out {test} leaves no training run (the dataset has {len(ids)} "
            f"run{'s' if len(ids) != 1 else ''}). Hold out fewer runs, or use split_time."
        )
    test_set = set(test)
    return select_runs(ds, train), select_runs(ds, [r for r in ids if r in test_set])


def _pack(ds: xr.Dataset, keep: np.ndarray) -> xr.Dataset:
    """Keep the samples where ``keep`` (trajectory, obs) is True, moved to the front of each run."""
    n = keep.sum(axis=1)
    width = int(n.max())
    order = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    pad = np.arange(width)[None, :] >= n[:, None]

    def take(a: np.ndarray) -> np.ndarray:
        out = np.take_along_axis(a, order, axis=1).astype(float)
        out[pad] = np.nan
        return out

    out = ds.isel({OBS: slice(0, width)}).copy()
    for name in [TIME, *ds.data_vars]:
        if ds[name].dims == (TRAJ, OBS):
            out[name] = ((TRAJ, OBS), take(ds[name].values), ds[name].attrs)
    return out


def split_time(ds: xr.Dataset, fraction: float, *, min_samples: int = 2) -> tuple[xr.Dataset, xr.Dataset]:
    """Split every run in time: the head, and the tail covering the last ``fraction`` of its span.

    For a run spanning ``[t0, t1]`` the cut is ``t_c = t1 - fraction * (t1 - t0)``; the head holds
    the samples with ``t <= t_c``, the tail those with ``t > t_c``. Time values are unchanged.

    Raises
    ------
    DataError
        When a run's head or tail would have fewer than ``min_samples`` samples (naming the run).

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.arange(5.0)], {"x": [np.arange(5.0)]}, states=["x"])
    >>> head, tail = split_time(ds, 0.5)
    >>> head["time"].values.tolist(), tail["time"].values.tolist()
    ([[0.0, 1.0, 2.0]], [[3.0, 4.0]])
    """
    frac = float(fraction)
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"split_time: fraction must lie in (0, 1); got {fraction}.")
    T = ds[TIME].values
    present = ~np.isnan(T)
    t0 = np.nanmin(T, axis=1)
    t1 = np.nanmax(T, axis=1)
    cut = t1 - frac * (t1 - t0)
    with np.errstate(invalid="ignore"):
        head = present & (T <= cut[:, None])
        tail = present & (T > cut[:, None])
    for r, rid in enumerate(run_ids(ds)):
        for part, mask in (("head", head), ("tail", tail)):
            n = int(mask[r].sum())
            if n < min_samples:
                raise DataError(
                    f"split_time: run {rid!r} would have {n} sample{'s' if n != 1 else ''} in the {part} "
                    f"(cut at t={fmt(cut[r])}); each part needs at least {min_samples}. Choose another "
                    "fraction or leave this run out."
                )
    return _pack(ds, head), _pack(ds, tail)


__all__ = ["split_runs", "split_time", "select_runs"]
