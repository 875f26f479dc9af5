"""Scaling of a trajectory dataset (for training in normalised units): one rule, one function.

:func:`compute_scaling` gives each variable (states, then inputs) a mean and a scale (standard
deviation) over all runs and samples with missing values ignored (a constant variable: its
magnitude, or 1 when it is 0, and a :class:`~sysid.data.validate.DataWarning`), and a time
scale: by default the data's characteristic time (:func:`characteristic_time`), or the median
run duration, or a given number. :func:`sysid.fit` uses the same rule for the measured states and
inputs. The numbers stay in user units; models store a ``Scaling`` and give results in user
units.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from sysid.data.arrays import TrajectoryArrays, to_arrays
from sysid.data.schema import input_names, state_names
from sysid.data.validate import DataWarning, fmt, validate
from sysid.errors import ConfigError, DataError

TIME_SCALES = ("characteristic", "duration")


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
        Time unit of neural terms (> 0), in the data's time units (see :func:`compute_scaling`).

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


def characteristic_time(t: np.ndarray, y: np.ndarray, m: np.ndarray, lengths: np.ndarray,
                        points: int, spread: np.ndarray, duration: float, *,
                        first: np.ndarray | None = None) -> float:
    """The time in which the measured states change by about their spread.

    The median over states of ``std(x) / rms(dx/dt)`` (derivatives from local polynomial
    smoothing, :mod:`sysid.data.smoothing`), kept between the median sample spacing and the
    median run duration; the duration when no derivative is available. A neural term's output is
    scaled by ``scale / time_scale``: with the run duration there, a network fitting a pendulum
    swinging ten times per run had to output values ~100 times its initial size (held-out NRMSE
    0.32 vs 0.03 with this time).

    Parameters
    ----------
    t : ndarray (R, N)
        Padded times; y, m : ndarray (R, N, S) values and mask; lengths : ndarray (R,).
    points : int
        Samples per local polynomial fit.
    spread : ndarray (S,)
        Standard deviation of each state.
    duration : float
        Median run duration (the upper limit and the fallback).
    first : ndarray (R, N, S), optional
        The smoothed first derivatives of ``y`` (:func:`~sysid.data.smoothing.smooth_runs`),
        when the caller has them.
    """
    from sysid.data.smoothing import smooth_runs

    if not (math.isfinite(duration) and duration > 0):
        duration = 1.0
    d1 = first if first is not None else smooth_runs(t, y, m, lengths, points, second=False)[1]
    times = []
    for j in range(d1.shape[-1]):
        d = d1[..., j][np.isfinite(d1[..., j])]
        rms = float(np.sqrt(np.mean(d * d))) if d.size else 0.0
        if rms > 0 and spread[j] > 0:
            times.append(spread[j] / rms)
    if not times:
        return duration
    gaps = np.concatenate([np.diff(t[r, : int(lengths[r])]) for r in range(len(lengths))])
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    lowest = float(np.median(gaps)) if gaps.size else 0.0
    return float(min(max(float(np.median(times)), lowest), duration))


def scaling_from_arrays(arrays: TrajectoryArrays, states: Sequence[str], *,
                        time_scale: str | float = "characteristic", smoothing_points: int = 7,
                        warn: bool = True, where: str = "compute_scaling",
                        first: np.ndarray | None = None) -> Scaling:
    """:func:`compute_scaling` of padded arrays (the rule is documented there).

    Parameters
    ----------
    arrays : TrajectoryArrays
        The variables to scale (``arrays.names``).
    states : sequence of str
        Which of them are states (the characteristic time is computed from these).
    time_scale, smoothing_points
        See :func:`compute_scaling`.
    warn : bool
        Warn about constant variables.
    where : str
        Name used in messages.
    first : ndarray (R, N, len(states)), optional
        Smoothed first derivatives of ``states``, when the caller has them (the characteristic
        time needs them).
    """
    if isinstance(time_scale, str):
        if time_scale not in TIME_SCALES:
            raise ConfigError(f"{where}: time_scale must be one of {list(TIME_SCALES)} or a "
                              f"positive number; got {time_scale!r}.")
    elif isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) or not (
            math.isfinite(time_scale) and time_scale > 0):
        raise ConfigError(f"{where}: time_scale must be one of {list(TIME_SCALES)} or a positive "
                          f"number; got {time_scale!r}.")
    n = len(arrays.names)
    mean, scale = np.zeros(n), np.ones(n)
    for j, name in enumerate(arrays.names):
        v = arrays.values[..., j][arrays.mask[..., j]]
        if v.size == 0:
            raise DataError(f"{where}: {name!r} has no measured value in any run.")
        mean[j] = float(v.mean())
        sd = float(v.std())
        if sd > 0 and sd > 1e-12 * abs(mean[j]):
            scale[j] = sd
            continue
        scale[j] = abs(mean[j]) or 1.0  # a constant keeps its magnitude as scale (1 when 0)
        if warn:
            warnings.warn(f"{where}: {name!r} is constant ({fmt(v[0])}); its scale is set to "
                          f"{fmt(scale[j])}.", DataWarning, stacklevel=3)
    t, lengths = arrays.t, arrays.lengths
    durations = [float(t[r, int(lengths[r]) - 1] - t[r, 0]) for r in range(len(lengths))]
    duration = float(np.median(durations)) if durations else 1.0
    if not (math.isfinite(duration) and duration > 0):
        duration = 1.0
    if not isinstance(time_scale, str):
        ts = float(time_scale)
    elif time_scale == "duration":
        ts = duration
    else:
        idx = [arrays.names.index(s) for s in states]
        ts = characteristic_time(t, arrays.values[..., idx], arrays.mask[..., idx], lengths,
                                 smoothing_points, scale[idx], duration, first=first)
    return Scaling(names=arrays.names, mean=mean, scale=scale, time_scale=ts)


def compute_scaling(ds: xr.Dataset, names: Sequence[str] | None = None, *,
                    time_scale: str | float = "characteristic",
                    smoothing_points: int = 7) -> Scaling:
    """Centre and scale of each variable and the time scale: the one scaling rule of sysid.

    :func:`sysid.fit` scales the measured states and inputs with this rule (and gives unmeasured
    states their own scale from the model); a model scaled by hand with it behaves as one that
    :func:`sysid.fit` scaled.

    The rule: ``mean`` and ``scale`` are the mean and standard deviation of each variable over
    all runs and samples, missing values ignored; a constant variable keeps its magnitude as scale
    (1 when it is 0), with a :class:`~sysid.data.validate.DataWarning`. ``time_scale`` is
    "characteristic" (default): :func:`characteristic_time` of the states, the time in which they
    change by about their spread; "duration": the median run duration; or a number in the data's
    time units.

    Parameters
    ----------
    ds : xarray.Dataset
        Trajectory data (validated here).
    names : sequence of str, optional
        Variables to scale (default: every state, then every input).
    time_scale : {"characteristic", "duration"} or float
    smoothing_points : int
        Samples per local polynomial fit of the characteristic time (odd, >= 3).

    Raises
    ------
    ConfigError
        For an unknown ``time_scale`` or a name that is not a variable of ``ds``.
    DataError
        For invalid data.

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.array([0.0, 2.0])], {"x": [np.array([1.0, 3.0])]}, states=["x"])
    >>> s = compute_scaling(ds, time_scale="duration")
    >>> s.mean.tolist(), s.scale.tolist(), s.time_scale
    ([2.0], [1.0], 2.0)
    """
    validate(ds)
    variables = state_names(ds) + input_names(ds)
    names = list(variables if names is None else names)
    unknown = [n for n in names if n not in variables]
    if unknown:
        raise ConfigError(f"compute_scaling: {unknown} are not variables of the data; its "
                          f"variables are {variables}.")
    states = [n for n in names if n in state_names(ds)]
    return scaling_from_arrays(to_arrays(ds, names), states, time_scale=time_scale,
                               smoothing_points=smoothing_points)


__all__ = ["Scaling", "compute_scaling", "scaling_from_arrays", "characteristic_time", "TIME_SCALES"]
