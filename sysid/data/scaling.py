"""Scaling statistics of a trajectory dataset (for training in normalised units).

Each variable (states, then inputs) gets a mean and a scale (standard deviation), computed over
all runs and samples with missing values ignored; a constant or single-valued variable gets
scale 1 and a :class:`~sysid.data.validate.DataWarning`. ``time_scale`` is the median run
duration. The numbers stay in user units; models store a ``Scaling`` and give results in user
units.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from sysid.data.schema import TIME, input_names, state_names
from sysid.data.validate import DataWarning, fmt
from sysid.errors import ConfigError


@dataclass(frozen=True, kw_only=True, eq=False)
class Scaling:
    """Per-variable mean and scale, and a time scale.

    Attributes
    ----------
    names : tuple of str
        Variable names (states then inputs).
    mean, scale : numpy.ndarray
        Shape ``(len(names),)``, float64, read-only; ``scale > 0``.
    time_scale : float
        Median run duration (> 0), in time units.

    Examples
    --------
    >>> import numpy as np
    >>> s = Scaling(names=("x",), mean=np.array([1.0]), scale=np.array([2.0]), time_scale=10.0)
    >>> float(s.normalise(np.array([[5.0]]))[0, 0])
    2.0
    >>> Scaling.from_dict(s.to_dict()) == s
    True
    """

    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    time_scale: float

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        mean = np.array(self.mean, dtype=np.float64).reshape(-1)
        scale = np.array(self.scale, dtype=np.float64).reshape(-1)
        if mean.shape != (len(names),) or scale.shape != (len(names),):
            raise ConfigError(
                f"Scaling: {len(names)} names need {len(names)} means and scales; got "
                f"{mean.size} and {scale.size}."
            )
        if not np.all(np.isfinite(mean)):
            raise ConfigError(f"Scaling: means must be finite; got {mean.tolist()}.")
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise ConfigError(f"Scaling: scales must be finite and > 0; got {scale.tolist()}.")
        ts = float(self.time_scale)
        if not (np.isfinite(ts) and ts > 0):
            raise ConfigError(f"Scaling: time_scale must be finite and > 0; got {self.time_scale}.")
        mean.setflags(write=False)
        scale.setflags(write=False)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "time_scale", ts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scaling):
            return NotImplemented
        return (self.names == other.names and np.array_equal(self.mean, other.mean)
                and np.array_equal(self.scale, other.scale) and self.time_scale == other.time_scale)

    __hash__ = None  # type: ignore[assignment]

    def select(self, names: tuple[str, ...] | list[str]) -> Scaling:
        """The statistics of a subset of the variables, in the order given."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ConfigError(f"Scaling: no statistics for {missing}; names are {list(self.names)}.")
        idx = [self.names.index(n) for n in names]
        return Scaling(names=tuple(names), mean=self.mean[idx], scale=self.scale[idx],
                       time_scale=self.time_scale)

    def normalise(self, x: Any) -> Any:
        """``(x - mean) / scale`` over the last axis (NumPy arrays or torch tensors)."""
        mean, scale = self._like(x)
        return (x - mean) / scale

    def denormalise(self, z: Any) -> Any:
        """``z * scale + mean`` over the last axis (the inverse of :meth:`normalise`)."""
        mean, scale = self._like(z)
        return z * scale + mean

    def _like(self, x: Any) -> tuple[Any, Any]:
        if isinstance(x, np.ndarray):
            return self.mean, self.scale
        import torch

        return (torch.tensor(self.mean.tolist(), dtype=x.dtype, device=x.device),
                torch.tensor(self.scale.tolist(), dtype=x.dtype, device=x.device))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (lists of floats); :meth:`from_dict` reads it back exactly."""
        return {"names": list(self.names), "mean": [float(v) for v in self.mean],
                "scale": [float(v) for v in self.scale], "time_scale": float(self.time_scale)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scaling:
        """Build from :meth:`to_dict` output; unknown or missing keys are an error."""
        keys = {"names", "mean", "scale", "time_scale"}
        unknown = sorted(set(data) - keys)
        missing = sorted(keys - set(data))
        if unknown or missing:
            raise ConfigError(f"Scaling.from_dict: unknown keys {unknown}, missing keys {missing}; "
                              f"expected {sorted(keys)}.")
        return cls(names=tuple(data["names"]), mean=np.asarray(data["mean"], dtype=float),
                   scale=np.asarray(data["scale"], dtype=float), time_scale=float(data["time_scale"]))


def compute_scaling(ds: xr.Dataset) -> Scaling:
    """Mean and standard deviation per state and input, NaN ignored; median run duration.

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.array([0.0, 2.0])], {"x": [np.array([1.0, 3.0])]}, states=["x"])
    >>> s = compute_scaling(ds)
    >>> s.mean.tolist(), s.scale.tolist(), s.time_scale
    ([2.0], [1.0], 2.0)
    """
    names = state_names(ds) + input_names(ds)
    mean = np.zeros(len(names))
    scale = np.ones(len(names))
    for i, n in enumerate(names):
        v = np.asarray(ds[n].values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise ConfigError(f"compute_scaling: {n!r} has no values; every sample is missing.")
        mean[i] = v.mean()
        sd = v.std()
        if v.size < 2 or not sd > 0:
            warnings.warn(f"compute_scaling: {n!r} is constant ({fmt(v[0])}); its scale is set to 1.",
                          DataWarning, stacklevel=2)
        else:
            scale[i] = sd
    T = np.asarray(ds[TIME].values, dtype=float)
    dur = np.nanmax(T, axis=1) - np.nanmin(T, axis=1)
    med = float(np.median(dur))
    return Scaling(names=tuple(names), mean=mean, scale=scale, time_scale=med if med > 0 else 1.0)


__all__ = ["Scaling", "compute_scaling"]
