"""Input sources: the one normaliser of what drives a simulation's inputs.

:func:`sysid.simulate` (and through it :func:`sysid.analysis.predict`) and
:func:`sysid.simulation.to_numpy_rhs` accept the inputs of a model in four forms, and
:func:`input_source` turns each into one :class:`InputSource`:

- a trajectory dataset: runs with the simulated runs' ids, or a single run used for every run;
  interpolated between samples as the model says (``"zoh"``, ``"linear"``, ``"cubic"``); missing
  samples (NaN) are an error (fill them first: an explicit choice), and the samples must cover the
  simulated span;
- a pandas DataFrame with a ``time`` column and one column per input (one run, used for all);
- a function ``u(t) -> (I,)`` (or ``(R, I)``, one row per run) of absolute time;
- constants: a mapping ``{input: value or one value per run}``, or a sequence of ``I`` numbers (or
  an ``(R, I)`` array).

An :class:`InputSource` gives each run's inputs as a NumPy function (SciPy integration, the values
echoed into the result) and all runs' inputs as one torch function (batched torch integration).
torch is imported only by the torch forms (and cubic interpolation): a NumPy simulation
(``sysid simulate`` of a saved model) reads constant, zero-order-hold and linear inputs without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr

from sysid.data.schema import OBS, TIME, TRAJ, from_arrays, run_ids
from sysid.errors import DataError
from sysid.models.interpolation import InputInterpolator, hermite, numpy_interpolant

__all__ = ["InputSource", "input_source", "dataset_runs"]

FORMS = ("a dataset, a DataFrame with a 'time' column, a function u(t) or constant values "
         "{name: value}")


def dataset_runs(ds: Any, where: str) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Run ids, each run's valid times and the index of its valid samples in a trajectory dataset."""
    if not (isinstance(ds, xr.Dataset) and TIME in ds.coords and TRAJ in ds.dims and OBS in ds.dims):
        raise DataError(
            f"{where}: expected a trajectory dataset (dims ('trajectory', 'obs') and a 'time' "
            "coordinate), e.g. from sysid.load_csv; got a dataset without them."
        )
    ids = run_ids(ds)
    tt = np.asarray(ds[TIME].values, dtype=float)
    valid = ~np.isnan(tt)
    if tt.shape[-1] and valid.all():  # no padding (equal lengths): rows of one copy, no per-run search
        every = np.arange(tt.shape[1])
        return ids, list(np.array(tt)), [every] * len(ids)
    times, keep = [], []
    for i, rid in enumerate(ids):
        k = np.nonzero(valid[i])[0]
        if len(k) == 0:
            raise DataError(f"{where}: run {rid!r} has no samples.")
        times.append(tt[i, k])
        keep.append(k)
    return ids, times, keep


@final
@dataclass(frozen=True, kw_only=True)
class InputSource:
    """The inputs of every simulated run, in one of three forms (exactly one is set).

    Attributes
    ----------
    names : tuple of str
        Input names, in the model's order.
    n_runs : int
        Number of simulated runs.
    kind : str
        Interpolation of samples ("zoh", "linear", "cubic").
    samples : tuple of (times (N,), values (N, I)), optional
        Per run, absolute sample times and values.
    function : callable, optional
        ``u(t) -> (I,) or (R, I)`` of absolute time.
    constant : numpy.ndarray (R, I), optional
        Constant values per run.
    units, long_names : mapping
        Per input, from the dataset when the source is one (empty otherwise).
    where : str
        Prefix of error messages (the function the user called).
    """

    names: tuple[str, ...]
    n_runs: int
    kind: str
    samples: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None
    function: Callable[[float], Any] | None = None
    constant: np.ndarray | None = None
    units: Mapping[str, str] = field(default_factory=dict)
    long_names: Mapping[str, str] = field(default_factory=dict)
    where: str = "simulate"

    def __post_init__(self) -> None:
        forms = [self.samples is not None, self.function is not None, self.constant is not None]
        if sum(forms) != 1:
            raise DataError(f"{self.where}: an input source is samples, a function or constants (exactly "
                            f"one); got {sum(forms)}.")

    def _rows(self, t: float) -> np.ndarray:
        """The function's value at ``t`` as ``(R, I)``."""
        assert self.function is not None
        v = np.asarray(self.function(t), dtype=float)
        n_i = len(self.names)
        if v.shape == (n_i,) or (v.ndim == 0 and n_i == 1):
            out = np.broadcast_to(v.reshape(1, n_i), (self.n_runs, n_i))
        elif v.shape == (self.n_runs, n_i):
            out = v
        else:
            raise DataError(
                f"{self.where}: the inputs function returned shape {v.shape} at t={t}; expected ({n_i},) "
                f"for the inputs {list(self.names)} (or ({self.n_runs}, {n_i}) for one row per run)."
            )
        if not np.all(np.isfinite(out)):
            raise DataError(f"{self.where}: the inputs function returned NaN or inf at t={t}.")
        return out

    def numpy(self, r: int) -> Callable[[Any], np.ndarray]:
        """Run ``r``'s inputs ``u(t)``: ``(I,)`` for a scalar ``t``, ``(..., I)`` for an array."""
        if self.samples is not None:
            t, u = self.samples[r]
            return numpy_interpolant(t, u, self.kind)
        if self.constant is not None:
            row = self.constant[r]
            return lambda t: np.broadcast_to(row, np.shape(t) + row.shape).copy()

        def u_fn(t: Any) -> np.ndarray:
            ts = np.asarray(t, dtype=float)
            if ts.ndim == 0:
                return self._rows(float(ts))[r]
            return np.stack([self._rows(float(s))[r] for s in ts.ravel()]).reshape(ts.shape + (-1,))

        return u_fn

    def values_at(self, r: int, t: np.ndarray) -> np.ndarray:
        """Run ``r``'s inputs at the times ``t`` as ``(N, I)`` (the values echoed in a result);
        at a sample time, exactly the sample."""
        t = np.asarray(t, dtype=float)
        if self.samples is not None and np.array_equal(self.samples[r][0], t):
            return np.array(self.samples[r][1], dtype=float).reshape(len(t), -1)  # every time a sample
        out = np.asarray(self.numpy(r)(t), dtype=float).reshape(len(t), -1)
        if self.samples is not None:
            ts, us = self.samples[r]
            k = np.clip(np.searchsorted(ts, t), 0, len(ts) - 1)
            hit = ts[k] == t
            out[hit] = us[k[hit]]
        return out

    def jumps(self, offsets: np.ndarray) -> np.ndarray | None:
        """Sample times relative to each run's start (where interpolated inputs jump or kink)."""
        if self.samples is None:
            return None
        return np.unique(np.concatenate([t - o for (t, _), o in zip(self.samples, offsets)]))

    def _interpolator(self, dtype: Any, offsets: np.ndarray) -> InputInterpolator:
        """The samples of all runs in relative time, padded into one interpolator."""
        import torch

        assert self.samples is not None
        n = max(len(t) for t, _ in self.samples)
        t_arr = np.zeros((self.n_runs, n))
        u_arr = np.zeros((self.n_runs, n, len(self.names)))
        for i, ((t, u), o) in enumerate(zip(self.samples, offsets)):
            t_arr[i, : len(t)] = t - o
            u_arr[i, : len(t)] = u
        lengths = torch.as_tensor([len(t) for t, _ in self.samples])
        return InputInterpolator(torch.as_tensor(t_arr, dtype=dtype), torch.as_tensor(u_arr, dtype=dtype),
                                 lengths, self.kind)

    def numpy_batch(self, offsets: np.ndarray) -> Callable[[float], np.ndarray] | None:
        """All runs' inputs at one relative time, ``u(tau) -> (R, I)`` in NumPy float64: the values
        of :meth:`torch` in float64, without torch's dispatch at every evaluation; for constants,
        and for samples when every run has the same relative sample times (one search for all
        runs). None otherwise (a function; runs sampled on different relative grids)."""
        if self.constant is not None:
            const = np.asarray(self.constant, dtype=float)
            return lambda tau: const
        if self.samples is None:
            return None
        rel = [t - o for (t, _), o in zip(self.samples, offsets)]
        if not all(len(t) == len(rel[0]) and np.array_equal(t, rel[0]) for t in rel):
            return None
        t = rel[0]
        u = np.stack([np.asarray(v, dtype=float).reshape(len(t), -1) for _, v in self.samples])
        if len(t) == 1:
            first = u[:, 0]
            return lambda tau: first
        slopes = None
        if self.kind == "cubic":  # the torch interpolator's slopes (imports torch)
            import torch

            slopes = self._interpolator(torch.float64, offsets)._m.numpy()
        return _one_grid(t, u, slopes, self.kind)

    def torch(self, dtype: Any, offsets: np.ndarray) -> Callable[[Any, Any], Any]:
        """All runs' inputs as ``u(tau, t_abs) -> (R, I)`` for a batched torch solve.

        Samples are interpolated in *relative* time ``tau = t - offset`` of each run, which keeps
        torchdiffeq's one-ulp left/right evaluations at input jumps intact (adding an offset
        afterwards would round them away); a function sees absolute time.
        """
        import torch

        if self.samples is not None:
            interp = self._interpolator(dtype, offsets)
            return lambda tau, t_abs: interp(tau)
        if self.constant is not None:
            const = torch.as_tensor(self.constant, dtype=dtype)
            return lambda tau, t_abs: const

        def from_function(tau: torch.Tensor, t_abs: torch.Tensor) -> torch.Tensor:
            ts = t_abs.detach().cpu().double().numpy()
            if np.all(ts == ts[0]):
                out = self._rows(float(ts[0]))
            else:
                out = np.stack([self._rows(float(tr))[r] for r, tr in enumerate(ts)])
            return torch.tensor(out, dtype=dtype)

        return from_function


def _one_grid(t: np.ndarray, u: np.ndarray, m: np.ndarray | None,
              kind: str) -> Callable[[float], np.ndarray]:
    """:meth:`InputInterpolator.__call__` at one time for all runs when every run has the same
    sample times ``t`` (N,) (relative, N >= 2), ``u`` (R, N, I), cubic slopes ``m`` (R, N, I):
    the same operations in NumPy (so the same float64 values), one search."""
    n = t.size
    lo, hi = float(t[0]), float(t[-1])
    h_all = np.broadcast_to((t[1:] - t[:-1])[None, :, None], (u.shape[0], n - 1, 1))

    def u_at(tau: float) -> np.ndarray:
        tq = min(max(float(tau), lo), hi)
        k = int(np.searchsorted(t, tq, side="right")) - 1
        if kind == "zoh":
            return u[:, min(max(k, 0), n - 1)]
        k = min(max(k, 0), n - 2)
        h = h_all[:, k]
        s = np.clip((tq - t[k]) / h, 0.0, 1.0)
        y0 = u[:, k]
        if kind == "linear":
            return y0 + s * (u[:, k + 1] - y0)
        return hermite(s, h, y0, u[:, k + 1], m[:, k], m[:, k + 1])  # type: ignore[index]

    return u_at


def _from_dataset(ds: xr.Dataset, names: tuple[str, ...], ids: Sequence[str], kind: str, where: str,
                  spans: Sequence[tuple[float, float]] | None) -> InputSource:
    src_ids, src_times, keep = dataset_runs(ds, where)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise DataError(f"{where}: the model needs inputs {missing}; the dataset has variables {list(ds.data_vars)}.")
    first = {r: i for i, r in reversed(list(enumerate(src_ids)))}  # as list.index: the first wins
    if all(r in first for r in ids):
        rows = [first[r] for r in ids]
    elif len(src_ids) == 1:
        rows = [0] * len(ids)
    else:
        raise DataError(
            f"{where}: the inputs dataset has runs {src_ids} but the simulated runs are {list(ids)}; give "
            "inputs with the same run ids, or a single run used for every run."
        )
    arrays = [np.asarray(ds[n].values, dtype=float) for n in names]  # read once, not per run
    samples = []
    for i, r in enumerate(rows):
        t = src_times[r]
        u = np.stack([a[r][keep[r]] for a in arrays], axis=-1)
        for j, n in enumerate(names if not np.isfinite(u).all() else ()):
            bad = np.nonzero(~np.isfinite(u[:, j]))[0]
            if len(bad):
                raise DataError(
                    f"{where}: input {n!r} of run {src_ids[r]!r} is missing (NaN) at time {t[bad[0]]:g} "
                    f"({len(bad)} samples); fill the gaps first (an explicit choice, e.g. interpolate "
                    "them) or give inputs as a function."
                )
        if spans is not None:
            lo, hi = spans[i]
            tol = 1e-9 * max(1.0, abs(t[-1]))
            if lo < t[0] - tol or hi > t[-1] + tol:
                raise DataError(
                    f"{where}: inputs of run {src_ids[r]!r} cover [{t[0]:g}, {t[-1]:g}] but run {ids[i]!r} "
                    f"is simulated over [{lo:g}, {hi:g}]; provide inputs over the whole span."
                )
        samples.append((t, u))
    units = {n: str(ds[n].attrs.get("units", "")) for n in names}
    long_names = {n: str(ds[n].attrs.get("long_name", n)) for n in names}
    return InputSource(names=names, n_runs=len(ids), kind=kind, samples=tuple(samples),
                       units={k: v for k, v in units.items() if v}, long_names=long_names, where=where)


def _dataframe(df: pd.DataFrame, names: tuple[str, ...], where: str) -> xr.Dataset:
    if "time" not in df.columns:
        raise DataError(f"{where}: an inputs DataFrame needs a 'time' column; it has {list(df.columns)}.")
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise DataError(f"{where}: the inputs DataFrame lacks columns {missing}; it has {list(df.columns)}.")
    t = df["time"].to_numpy(dtype=float)
    return from_arrays([t], {n: [df[n].to_numpy(dtype=float)] for n in names}, states=[], inputs=list(names))


def _constants(values: Any, names: tuple[str, ...], n_runs: int, where: str) -> np.ndarray:
    if isinstance(values, Mapping):
        missing = [n for n in names if n not in values]
        unknown = [k for k in values if k not in names]
        if missing or unknown:
            raise DataError(f"{where}: constant inputs must name exactly the inputs {list(names)}; "
                            f"missing {missing}, unknown {unknown}.")
        cols = [np.atleast_1d(np.asarray(values[n], dtype=float)) for n in names]
        if any(c.ndim != 1 or c.size not in (1, n_runs) for c in cols):
            raise DataError(f"{where}: each constant input is one number or one per run ({n_runs}).")
        arr = np.column_stack([np.broadcast_to(c, (n_runs,)) for c in cols])
    else:
        arr = np.asarray(values, dtype=float)
        if arr.shape in ((len(names),), ()) and arr.size == len(names):
            arr = np.broadcast_to(arr.reshape(1, -1), (n_runs, len(names)))
        elif arr.shape != (n_runs, len(names)):
            raise DataError(f"{where}: constant inputs have shape {arr.shape}; expected ({len(names)},) for "
                            f"{list(names)} or ({n_runs}, {len(names)}) for one row per run.")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{where}: constant inputs must be finite; got {arr.tolist()}.")
    return np.array(arr, dtype=float)


def input_source(
    source: Any,
    names: Sequence[str],
    ids: Sequence[str],
    *,
    kind: str,
    where: str,
    spans: Sequence[tuple[float, float]] | None = None,
) -> InputSource | None:
    """Normalise ``source`` into the inputs of the runs ``ids`` (None when there are no inputs).

    Parameters
    ----------
    source : dataset, DataFrame, callable, mapping, array or None
        See the module docstring.
    names : sequence of str
        The model's inputs (empty: ``source`` must be None).
    ids : sequence of str
        The simulated runs.
    kind : {"zoh", "linear", "cubic"}
        Interpolation of sampled inputs.
    where : str
        Prefix of error messages.
    spans : sequence of (start, end), optional
        Each run's simulated span: sampled inputs must cover it.

    Raises
    ------
    DataError
        For a missing or extra source, missing variables or samples, runs that do not match, a span
        not covered, or values of the wrong shape.
    """
    names = tuple(names)
    if not names:
        if source is not None:
            raise DataError(f"{where}: inputs were given but the model has no inputs.")
        return None
    if source is None:
        raise DataError(f"{where}: the model has inputs {list(names)}; give inputs= ({FORMS}).")
    if isinstance(source, pd.DataFrame):
        source = _dataframe(source, names, where)
    if isinstance(source, xr.Dataset):
        return _from_dataset(source, names, ids, kind, where, spans)
    if callable(source):
        return InputSource(names=names, n_runs=len(ids), kind=kind, function=source, where=where)
    if isinstance(source, (Mapping, np.ndarray, Sequence, int, float)) and not isinstance(source, (str, bytes)):
        return InputSource(names=names, n_runs=len(ids), kind=kind,
                           constant=_constants(source, names, len(ids), where), where=where)
    raise DataError(f"{where}: inputs must be {FORMS}; got {type(source).__name__}.")
