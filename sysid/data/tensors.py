"""The one crossing from the trajectory schema into torch: padded tensors with masks, and back.

Runs of different lengths are padded to the longest run: times with the run's last time (so
padded steps have zero length for a solver), values with 0, masks False. ``lengths`` holds each
run's sample count. With ``dtype=torch.float64``, :func:`from_tensors` returns exactly the values,
missing entries, run ids and units that went in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import xarray as xr

from sysid.data.arrays import to_arrays
from sysid.data.schema import TIME, TRAJ, from_arrays, input_names, run_ids, state_names
from sysid.data.validate import validate
from sysid.errors import DataError


@dataclass(frozen=True, kw_only=True, eq=False)
class TrajectoryBatch:
    """Padded tensors of R runs with N samples, S states and I inputs.

    Attributes
    ----------
    run_ids : tuple of str
    state_names, input_names : tuple of str
    t : Tensor (R, N)
        Times, padded with each run's last time.
    y, y_mask : Tensor (R, N, S)
        States (0 where missing) and True where measured.
    u, u_mask : Tensor (R, N, I)
        Inputs (0 where missing) and True where measured; I may be 0.
    lengths : LongTensor (R,)
        Samples per run.
    units : dict of str to str
        Units per state and input.
    time_units : str
    """

    run_ids: tuple[str, ...]
    state_names: tuple[str, ...]
    input_names: tuple[str, ...]
    t: torch.Tensor
    y: torch.Tensor
    y_mask: torch.Tensor
    u: torch.Tensor
    u_mask: torch.Tensor
    lengths: torch.Tensor
    units: dict[str, str]
    time_units: str = ""

    def __post_init__(self) -> None:
        R, S, I = len(self.run_ids), len(self.state_names), len(self.input_names)
        if self.t.ndim != 2 or self.t.shape[0] != R:
            raise DataError(f"TrajectoryBatch: t must be (R={R}, N); got {tuple(self.t.shape)}.")
        N = self.t.shape[1]
        for name, tensor, shape in (("y", self.y, (R, N, S)), ("y_mask", self.y_mask, (R, N, S)),
                                    ("u", self.u, (R, N, I)), ("u_mask", self.u_mask, (R, N, I)),
                                    ("lengths", self.lengths, (R,))):
            if tuple(tensor.shape) != shape:
                raise DataError(f"TrajectoryBatch: {name} must have shape {shape}; got {tuple(tensor.shape)}.")
        if self.y_mask.dtype != torch.bool or self.u_mask.dtype != torch.bool:
            raise DataError("TrajectoryBatch: y_mask and u_mask must be bool tensors.")
        if self.lengths.dtype != torch.int64:
            raise DataError(f"TrajectoryBatch: lengths must be int64; got {self.lengths.dtype}.")

    @property
    def n_runs(self) -> int:
        """Number of runs R."""
        return len(self.run_ids)

    @property
    def n_obs(self) -> int:
        """Padded number of samples N."""
        return int(self.t.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TrajectoryBatch:
        """A copy on another device and/or with another float dtype (masks and lengths keep theirs)."""
        def f(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=dtype)

        def k(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device)

        return replace(self, t=f(self.t), y=f(self.y), u=f(self.u), y_mask=k(self.y_mask),
                       u_mask=k(self.u_mask), lengths=k(self.lengths))


def to_tensors(ds: xr.Dataset, *, dtype: torch.dtype = torch.float32) -> TrajectoryBatch:
    """Convert a (validated) trajectory dataset to padded tensors with masks.

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5])],
    ...                  {"x": [np.array([1.0, np.nan, 3.0]), np.array([4.0, 5.0])]}, states=["x"])
    >>> b = to_tensors(ds)
    >>> b.t.tolist(), b.y_mask[..., 0].tolist(), b.lengths.tolist()
    ([[0.0, 1.0, 2.0], [0.0, 0.5, 0.5]], [[True, False, True], [True, True, False]], [3, 2])
    """
    validate(ds)
    if not dtype.is_floating_point:
        raise DataError(f"to_tensors: dtype must be a floating-point torch dtype; got {dtype}.")
    states, inputs = state_names(ds), input_names(ds)
    arrays = to_arrays(ds, states + inputs)
    y, ym = arrays.select(states)
    u, um = arrays.select(inputs)
    return TrajectoryBatch(
        run_ids=arrays.run_ids, state_names=tuple(states), input_names=tuple(inputs),
        t=torch.as_tensor(arrays.t, dtype=dtype), y=torch.as_tensor(y, dtype=dtype),
        y_mask=torch.as_tensor(ym), u=torch.as_tensor(u, dtype=dtype), u_mask=torch.as_tensor(um),
        lengths=torch.as_tensor(arrays.lengths, dtype=torch.int64),
        units={n: str(ds[n].attrs.get("units", "")) for n in states + inputs},
        time_units=str(ds[TIME].attrs.get("units", "")),
    )


def from_tensors(batch: TrajectoryBatch, *, like: xr.Dataset | None = None) -> xr.Dataset:
    """Convert padded tensors back to the trajectory schema (values NaN where the mask is False).

    Parameters
    ----------
    batch : TrajectoryBatch
    like : xarray.Dataset, optional
        A dataset with the same runs and variables whose attributes (dataset, time and variable
        attrs such as ``long_name``) and per-run coordinates are copied onto the result.

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.array([0.0, 1.0])], {"x": [np.array([1.0, np.nan])]}, states=["x"])
    >>> from_tensors(to_tensors(ds, dtype=torch.float64), like=ds).identical(ds)
    True
    """
    lengths = batch.lengths.detach().cpu().numpy()
    t = batch.t.detach().cpu().to(torch.float64).numpy()

    def unpack(x: torch.Tensor, m: torch.Tensor, names: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
        v = np.where(m.detach().cpu().numpy(), x.detach().cpu().to(torch.float64).numpy(), np.nan)
        return {n: [v[r, : lengths[r], j] for r in range(len(lengths))] for j, n in enumerate(names)}

    values = {**unpack(batch.y, batch.y_mask, batch.state_names),
              **unpack(batch.u, batch.u_mask, batch.input_names)}
    units = dict(batch.units)
    units[TIME] = batch.time_units
    ds = from_arrays([t[r, : lengths[r]] for r in range(len(lengths))], values,
                     states=list(batch.state_names), inputs=list(batch.input_names),
                     runs=list(batch.run_ids), units=units)
    if like is None:
        return ds
    names = list(batch.state_names) + list(batch.input_names)
    if state_names(like) + input_names(like) != names or run_ids(like) != list(batch.run_ids):
        raise DataError(
            f"from_tensors: like= has variables {state_names(like) + input_names(like)} and runs "
            f"{run_ids(like)}; the batch has {names} and {list(batch.run_ids)}."
        )
    ds.attrs = dict(like.attrs)
    ds[TIME].attrs = dict(like[TIME].attrs)
    for n in names:
        ds[n].attrs = dict(like[n].attrs)
    extra = {c: like[c] for c in like.coords if c not in (TIME, TRAJ) and like[c].dims == (TRAJ,)}
    if extra:
        ds = ds.assign_coords(extra)
    return ds


__all__ = ["TrajectoryBatch", "to_tensors", "from_tensors"]
