"""Padded NumPy arrays of a trajectory dataset (float64, masks, run lengths): what scaling and
training read, without a detour through torch. :func:`~sysid.data.to_tensors` builds on it.

Runs of different lengths are padded to the longest run: times with the run's last time (so
padded steps have zero length for a solver), values with 0, masks False.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from sysid.data.schema import TIME, input_names, run_ids, state_names

__all__ = ["TrajectoryArrays", "to_arrays"]


@dataclass(frozen=True, kw_only=True, eq=False)
class TrajectoryArrays:
    """Padded NumPy arrays (float64) of some variables of R runs with N samples.

    Attributes
    ----------
    run_ids : tuple of str
    names : tuple of str
        The variables, in the order of the last axis of ``values``.
    t : ndarray (R, N)
        Times, padded with each run's last time.
    values, mask : ndarray (R, N, V)
        Values (0 where missing or padding) and True where measured.
    lengths : ndarray of int (R,)
        Samples per run.
    """

    run_ids: tuple[str, ...]
    names: tuple[str, ...]
    t: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray

    def select(self, names: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(values, mask)`` of these variables, in the order given."""
        idx = [self.names.index(n) for n in names]
        return self.values[..., idx], self.mask[..., idx]


def to_arrays(ds: xr.Dataset, names: list[str] | tuple[str, ...] | None = None) -> TrajectoryArrays:
    """Padded NumPy arrays of a validated dataset (no copy through torch).

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset that passed :func:`~sysid.data.validate` (not checked again here).
    names : sequence of str, optional
        Variables to take (default: the states, then the inputs).

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5])],
    ...                  {"x": [np.array([1.0, np.nan, 3.0]), np.array([4.0, 5.0])]}, states=["x"])
    >>> a = to_arrays(ds)
    >>> a.t.tolist(), a.mask[..., 0].tolist(), a.lengths.tolist()
    ([[0.0, 1.0, 2.0], [0.0, 0.5, 0.5]], [[True, False, True], [True, True, False]], [3, 2])
    """
    names = tuple(state_names(ds) + input_names(ds) if names is None else names)
    T = np.asarray(ds[TIME].values, dtype=np.float64)
    lengths = (~np.isnan(T)).sum(axis=1)
    last = T[np.arange(T.shape[0]), lengths - 1]
    T = np.where(np.isnan(T), last[:, None], T)
    if names:
        v = np.stack([np.asarray(ds[n].values, dtype=np.float64) for n in names], axis=-1)
    else:
        v = np.zeros((T.shape[0], T.shape[1], 0))
    mask = ~np.isnan(v)
    return TrajectoryArrays(run_ids=tuple(run_ids(ds)), names=names, t=T,
                            values=np.where(mask, v, 0.0), mask=mask, lengths=lengths)
