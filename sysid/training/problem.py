"""The fitting problem in tensors: scaled data of all runs, initial-state guesses, window losses.

Everything here works in scaled coordinates ``z = (x - mean) / scale`` (per state, from the
training data); time stays in the user's units and the solvers step on each window's own grid.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from sysid.errors import ConfigError, DataError
from sysid.training.config import FitConfig
from sysid.training.loss import ScaledRhs, continuity_loss, data_loss, residuals
from sysid.training.solvers import StepCounter, solve_windows
from sysid.training.warmstart import smooth_runs
from sysid.training.windows import WindowInputs, Windows, gather

__all__ = ["ModelSpec", "Scales", "Prepared", "prepare", "compute_scales", "WindowProblem"]


@dataclass(frozen=True)
class ModelSpec:
    """What the engine needs to know about a model.

    Attributes
    ----------
    states : tuple of str
        All states of the field, in its order.
    observed : tuple of str
        Measured states (a subset of ``states``); the others are latent.
    inputs : tuple of str
        Inputs of the field.
    interpolation : str
        How inputs are interpolated between samples ("zoh", "linear", "cubic").
    velocity_of : dict of int to int
        For second-order models: latent velocity index -> index of its measured position.
    latent_guess : dict of int to float
        Starting value (user units) of each other latent state, from the model's
        ``latent_initial``; it also sets that state's scale (its magnitude, or 1 when 0).
    outputs : tuple of str
        Outputs of the model's measurement equations, compared with the data's variables of
        the same names (after the observed states).
    observer : sysid.models.Model or None
        The model (the training copy) whose ``observe`` gives the outputs; None without outputs.
    """

    states: tuple[str, ...]
    observed: tuple[str, ...]
    inputs: tuple[str, ...]
    interpolation: str
    velocity_of: dict[int, int]
    latent_guess: dict[int, float] = dataclasses.field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    observer: Any = None

    @property
    def measured(self) -> tuple[str, ...]:
        """The data variables the loss compares: observed states, then outputs."""
        return (*self.observed, *self.outputs)

    @property
    def obs_idx(self) -> list[int]:
        """Indices of the measured states."""
        return [self.states.index(n) for n in self.observed]

    @property
    def latent_idx(self) -> list[int]:
        """Indices of the unmeasured states."""
        return [i for i, n in enumerate(self.states) if n not in self.observed]


@dataclass(frozen=True)
class Scales:
    """Centre and scale of every state (user units), from the training data."""

    mean: np.ndarray
    scale: np.ndarray
    time_scale: float
    input_mean: np.ndarray
    input_scale: np.ndarray
    output_mean: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    output_scale: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def measured(self, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
        """Centre and scale of the measured variables (observed states, then outputs)."""
        oi = spec.obs_idx
        return (np.concatenate([self.mean[oi], self.output_mean]),
                np.concatenate([self.scale[oi], self.output_scale]))


@dataclass(frozen=True)
class Prepared:
    """One dataset as padded, scaled tensors.

    Attributes
    ----------
    run_ids : tuple of str
    t : Tensor (R, N)
        Times (padding repeats each run's last time: zero steps).
    y : Tensor (R, N, So)
        Measured states, scaled (0 where missing).
    mask : BoolTensor (R, N, So)
        Which entries are measured.
    u : Tensor (R, N, I) or None
        Inputs in user units.
    lengths : LongTensor (R,)
    z_guess : Tensor (R, N, S)
        Initial-state guess at every sample (scaled): measurement, else smoothed value; latent
        velocities from the smoothed derivative of their position, other latent states 0.
    smooth, deriv : Tensor (R, N, S)
        Smoothed states and their time derivatives (scaled per user time unit); NaN where unknown.
    y_mean, y_scale : ndarray (M,)
        Centre and scale of the measured variables (``y = (measured - y_mean) / y_scale``);
        the observed states' scaling, then the outputs'.
    """

    run_ids: tuple[str, ...]
    t: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    u: torch.Tensor | None
    lengths: torch.Tensor
    z_guess: torch.Tensor
    smooth: torch.Tensor
    deriv: torch.Tensor
    y_mean: np.ndarray | None = None
    y_scale: np.ndarray | None = None


def _raw_arrays(ds: xr.Dataset, spec: ModelSpec, where: str) -> tuple:
    from sysid.data import to_tensors

    names = set(ds.data_vars)
    missing = [n for n in spec.measured if n not in names]
    if missing:
        what = "measured states" if all(n in spec.observed for n in missing) else "measured variables"
        raise DataError(
            f"{where}: the model's {what} {missing} are not in the data (its variables are "
            f"{sorted(names)}). Rename the columns, or mark those states as unmeasured "
            f"(Model(..., observed=[...]))."
        )
    missing_u = [n for n in spec.inputs if n not in names]
    if missing_u:
        raise DataError(
            f"{where}: the model's inputs {missing_u} are not in the data (its variables are "
            f"{sorted(names)})."
        )
    batch = to_tensors(ds, dtype=torch.float64)
    s_names = list(batch.state_names)
    i_names = list(batch.input_names)
    not_state = [n for n in spec.measured if n not in s_names]
    if not_state:
        raise DataError(f"{where}: {not_state} are inputs in the data but states of the model.")
    not_input = [n for n in spec.inputs if n not in i_names]
    if not_input:
        raise DataError(f"{where}: {not_input} are states in the data but inputs of the model.")
    oi = [s_names.index(n) for n in spec.measured]
    t = batch.t.numpy()
    y = batch.y.numpy()[..., oi]
    m = batch.y_mask.numpy()[..., oi]
    lengths = batch.lengths.numpy()
    u = um = None
    if spec.inputs:
        ii = [i_names.index(n) for n in spec.inputs]
        u = batch.u.numpy()[..., ii]
        um = batch.u_mask.numpy()[..., ii]
        for r, rid in enumerate(batch.run_ids):
            n = int(lengths[r])
            gaps = ~um[r, :n]
            if gaps.any():
                j = int(np.argwhere(gaps)[0][1])
                k = int(gaps[:, j].sum())
                raise DataError(
                    f"{where}: input {spec.inputs[j]!r} of run {rid!r} has {k} missing values; the "
                    f"model needs the input at every sample. Fill the gaps explicitly before fitting "
                    f"(e.g. ds[{spec.inputs[j]!r}] = ds[{spec.inputs[j]!r}].interpolate_na('obs'))."
                )
    return tuple(batch.run_ids), t, y, m, u, lengths


def characteristic_time(t: np.ndarray, y: np.ndarray, m: np.ndarray, lengths: np.ndarray, points: int,
                        spread: np.ndarray, duration: float) -> float:
    """The time in which the measured states change by about their spread.

    The median over measured states of ``std(x) / rms(dx/dt)`` (derivatives from the smoothed
    data), kept between the median sample spacing and the median run duration; the duration when
    no derivative is available. A neural term's output is scaled by ``scale / time_scale``: with
    the run duration there, a network fitting a pendulum swinging ten times per run had to output
    values ~100 times its initial size (held-out NRMSE 0.32 vs 0.03 with this time).
    """
    if not (math.isfinite(duration) and duration > 0):
        duration = 1.0
    _, d1, _ = smooth_runs(t, y, m, lengths, points)
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


def compute_scales(ds: xr.Dataset, spec: ModelSpec, points: int,
                   time_scale: str | float = "characteristic") -> Scales:
    """Mean and standard deviation of each measured state over all runs (NaN ignored).

    Latent velocities get the spread of their position's smoothed derivative; other latent
    states mean 0 and as scale the larger of their starting guess's magnitude and the median
    spread of the measured states. Constant
    states get scale 1 (or their magnitude). The time scale is ``time_scale`` (see
    :class:`FitConfig`): by default :func:`characteristic_time`.
    """
    run_ids, t, y, m, u, lengths = _raw_arrays(ds, spec, "fit")
    S = len(spec.states)
    mean = np.zeros(S)
    scale = np.ones(S)
    for j, i in enumerate(spec.obs_idx):
        vals = y[..., j][m[..., j]]
        if vals.size == 0:
            raise DataError(f"fit: state {spec.observed[j]!r} has no measured value in any run.")
        mean[i] = float(vals.mean())
        sd = float(vals.std())
        # a constant state keeps its magnitude as scale (1 when it is 0)
        scale[i] = sd if sd > 1e-12 * abs(mean[i]) and sd > 0 else (abs(mean[i]) or 1.0)
    n_obs = len(spec.observed)
    out_mean, out_scale = np.zeros(len(spec.outputs)), np.ones(len(spec.outputs))
    for k, name in enumerate(spec.outputs):  # outputs of measurement equations, as states
        vals = y[..., n_obs + k][m[..., n_obs + k]]
        if vals.size == 0:
            raise DataError(f"fit: output {name!r} has no measured value in any run.")
        out_mean[k] = float(vals.mean())
        sd = float(vals.std())
        out_scale[k] = sd if sd > 1e-12 * abs(out_mean[k]) and sd > 0 else (abs(out_mean[k]) or 1.0)
    spreads = np.concatenate([scale[spec.obs_idx], out_scale])
    # an unmeasured state is scaled by its starting guess, or, when that is 0, by the typical
    # spread of the measured states (a SIR fit's R grows from 0 to hundreds: scale 1 made its
    # continuity penalty ~1e5 times the data loss and drove beta to zero)
    typical = float(np.median(spreads)) if spreads.size else 1.0
    for i, g in spec.latent_guess.items():
        scale[i] = max(abs(g), typical) if g != 0 else typical
    if spec.velocity_of:
        _, d1, _ = smooth_runs(t, y, m, lengths, points)
        for vi, qi in spec.velocity_of.items():
            j = spec.observed.index(spec.states[qi])
            vals = d1[..., j][np.isfinite(d1[..., j])]
            if vals.size:
                sd = float(np.sqrt(np.mean(vals**2)))
                scale[vi] = sd if sd > 0 else 1.0
    durations = [float(t[r, int(lengths[r]) - 1] - t[r, 0]) for r in range(len(run_ids))]
    duration = float(np.median(durations))
    if not isinstance(time_scale, str):
        ts = float(time_scale)
    elif time_scale == "duration":
        ts = duration if math.isfinite(duration) and duration > 0 else 1.0
    else:
        ts = characteristic_time(t, y, m, lengths, points, spreads, duration)
    n_in = len(spec.inputs)
    u_mean, u_scale = np.zeros(n_in), np.ones(n_in)
    if n_in:
        valid = np.arange(t.shape[1])[None, :] < lengths[:, None]
        for j in range(n_in):
            vals = u[..., j][valid]
            u_mean[j] = float(vals.mean())
            sd = float(vals.std())
            u_scale[j] = sd if sd > 0 else max(abs(u_mean[j]), 1.0)
    return Scales(mean, scale, ts, u_mean, u_scale, out_mean, out_scale)


def prepare(ds: xr.Dataset, spec: ModelSpec, scales: Scales, points: int,
            dtype: torch.dtype, where: str = "fit") -> Prepared:
    """Scaled tensors of a dataset, smoothed states and derivatives, initial-state guesses."""
    run_ids, t, y, m, u, lengths = _raw_arrays(ds, spec, where)
    S = len(spec.states)
    R, N, _ = y.shape
    oi = spec.obs_idx
    So = len(oi)  # y holds the observed states, then the outputs (not states: not smoothed)
    val, d1, d2 = smooth_runs(t, y[..., :So], m[..., :So], lengths, points)
    mean, scale = scales.mean, scales.scale
    smooth = np.full((R, N, S), np.nan)
    deriv = np.full((R, N, S), np.nan)
    smooth[..., oi] = (val - mean[oi]) / scale[oi]
    deriv[..., oi] = d1 / scale[oi]
    if spec.velocity_of:
        for vi, qi in spec.velocity_of.items():
            j = spec.observed.index(spec.states[qi])
            smooth[..., vi] = (d1[..., j] - mean[vi]) / scale[vi]
            deriv[..., vi] = d2[..., j] / scale[vi]
    for i, g in spec.latent_guess.items():
        smooth[..., i] = (g - mean[i]) / scale[i]  # constant guess; the fit moves it per run
    mean_m, scale_m = scales.measured(spec)
    y_z = np.where(m, (y - mean_m) / scale_m, 0.0)
    guess = np.where(np.isfinite(smooth), smooth, 0.0)
    guess[..., oi] = np.where(m[..., :So], y_z[..., :So], guess[..., oi])
    pad = np.arange(N)[None, :] >= lengths[:, None]
    guess[pad] = 0.0
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
    return Prepared(
        run_ids=run_ids,
        t=as_t(t),
        y=as_t(y_z),
        mask=torch.as_tensor(m & ~pad[..., None]),
        u=as_t(u) if u is not None else None,
        lengths=torch.as_tensor(lengths, dtype=torch.long),
        z_guess=as_t(guess),
        smooth=as_t(smooth),
        deriv=as_t(deriv),
        y_mean=mean_m,
        y_scale=scale_m,
    )


class WindowProblem:
    """Window losses of one prepared dataset for a scaled field.

    Parameters
    ----------
    rhs : ScaledRhs
        The field in scaled coordinates.
    data : Prepared
        The training data.
    spec : ModelSpec
    config : FitConfig
    weights : Tensor (So,)
        Per-state loss weights.
    counter : StepCounter
        Accumulates function evaluations.
    continuity : float
        Weight of the continuity penalty of the free initial states (from the shooting plan).
    """

    def __init__(self, rhs: ScaledRhs, data: Prepared, spec: ModelSpec, config: FitConfig,
                 weights: torch.Tensor, counter: StepCounter, *, continuity: float = 0.0) -> None:
        self.rhs = rhs
        self.data = data
        self.spec = spec
        self.config = config
        self.weights = weights
        self.counter = counter
        self.obs_idx = spec.obs_idx
        self.mean_o = rhs.mean[self.obs_idx]
        self.scale_o = rhs.scale[self.obs_idx]
        if spec.outputs:  # measured = observed states, then outputs with their own scaling
            self.mean_o = torch.as_tensor(data.y_mean, dtype=rhs.mean.dtype)
            self.scale_o = torch.as_tensor(data.y_scale, dtype=rhs.scale.dtype)
        S = len(spec.states)
        free = torch.zeros(S, dtype=torch.bool)
        free[spec.latent_idx] = True
        if config.initial_states == "free":
            free[:] = True
        self.free = free
        # states whose value at each run's first sample is known (FitConfig.known_initial): there
        # the window starts from the guess (the measurement, or the model's latent_initial)
        self.known = torch.tensor([n in config.known_initial for n in spec.states], dtype=torch.bool)
        self.substeps = config.solver.substeps
        self.continuity = continuity
        self.hybrids: list = []

    def setup_penalty(self, field: Any, scales: Scales) -> None:
        """Collect the neural corrections of hybrid terms and the samples to penalise them at."""
        from sysid.models import HybridField

        self.hybrids = []
        for module in field.modules():
            if isinstance(module, HybridField):
                out = [self.spec.states.index(n) for n in module.neural_states]
                cols = [self.spec.inputs.index(n) for n in module.neural.input_names]
                self.hybrids.append((module.neural, out, cols))
        if not self.hybrids or self.config.loss.neural_penalty == 0:
            self.hybrids = []
            return
        d = self.data
        inside = torch.arange(d.t.shape[1])[None, :] < d.lengths[:, None]
        finite = torch.isfinite(d.smooth[..., self.obs_idx])
        ok = finite.all(-1) & inside
        if not bool(ok.any()):
            # no sample has every measured state (e.g. one measured at t = 0 only): use the samples
            # with any, the missing ones at their mean
            ok = finite.any(-1) & inside
        if not bool(ok.any()):
            self.hybrids = []
            return
        z = torch.where(torch.isfinite(d.smooth), d.smooth, torch.zeros_like(d.smooth))[ok]
        self.pen_t = d.t[ok]
        self.pen_x = self.rhs.mean + self.rhs.scale * z
        self.pen_u = d.u[ok] if d.u is not None else None
        deriv = d.deriv[ok]
        rms = torch.sqrt(torch.nanmean(deriv * deriv, dim=0))
        fallback = torch.full_like(rms, 1.0 / scales.time_scale)
        rms = torch.where(torch.isfinite(rms) & (rms > 0), rms, fallback)
        self.pen_norm = self.rhs.scale * rms  # derivative spread in user units per time

    def penalty(self) -> torch.Tensor:
        """Mean squared neural correction of the hybrid terms, relative to the derivative spread."""
        total = torch.zeros((), dtype=self.data.t.dtype)
        for net, out, cols in self.hybrids:
            u = self.pen_u[:, cols] if (self.pen_u is not None and cols) else None
            corr = net(self.pen_t, self.pen_x, u) / self.pen_norm[out]
            total = total + corr.pow(2).mean()
        return self.config.loss.neural_penalty * total

    def inputs_for(self, windows: Windows) -> WindowInputs | None:
        """The inputs of the windows, interpolated as the model says (None without inputs)."""
        if self.data.u is None:
            return None
        return WindowInputs(self.data.t, self.data.u, self.data.lengths, windows,
                            self.spec.interpolation)

    def initial_states(self, nodes: torch.Tensor, windows: Windows) -> torch.Tensor:
        """``(W, S)`` states at the window starts: free nodes where free, else the guesses."""
        fixed = self.data.z_guess[windows.run, windows.start]
        free_vals = nodes[windows.run, windows.start]
        free = self.free
        if bool(self.known.any()):
            free = torch.where((windows.start == 0)[:, None], free & ~self.known, free)
        return torch.where(free, free_vals, fixed)

    def predict(self, nodes: torch.Tensor, windows: Windows, inputs=None) -> torch.Tensor:
        """Scaled states ``(W, H, S)`` of every window."""
        t = gather(self.data.t, windows)
        z0 = self.initial_states(nodes, windows)
        sc = self.config.solver
        return solve_windows(self.rhs, z0, t, inputs=inputs, method=sc.method,
                             substeps=self.substeps, rtol=sc.rtol, atol=sc.atol,
                             max_steps=sc.max_steps, adjoint=sc.adjoint, counter=self.counter)

    def measured(self, pred: torch.Tensor, windows: Windows) -> torch.Tensor:
        """The predicted measured variables ``(W, H, M)`` (scaled) of predicted states ``pred``:
        the observed states, then the outputs of the model's measurement equations."""
        if not self.spec.outputs:
            return pred[..., self.obs_idx]
        x = self.rhs.mean + self.rhs.scale * pred  # user units
        t = gather(self.data.t, windows)
        u = gather(self.data.u, windows) if self.data.u is not None else None
        y = self.spec.observer.observe(t, x, u)
        n = len(self.obs_idx)
        y_z = (y - self.mean_o[n:]) / self.scale_o[n:]
        return torch.cat([pred[..., self.obs_idx], y_z.to(pred.dtype)], dim=-1)

    def loss(self, nodes: torch.Tensor, windows: Windows, inputs=None) -> torch.Tensor:
        """Data misfit plus the continuity penalty of the free initial states."""
        pred = self.predict(nodes, windows, inputs)
        y = gather(self.data.y, windows)
        mask = gather(self.data.mask, windows) & windows.valid[..., None]
        total = data_loss(self.measured(pred, windows), y, mask, self.weights, self.config.loss.kind,
                          self.mean_o, self.scale_o)
        if self.continuity > 0 and bool(self.free.any()) and windows.horizon > 1:
            fi = self.free.nonzero()[:, 0]
            later = windows.idx[:, 1:]
            target = nodes[windows.run[:, None], later][..., fi]
            total = total + self.continuity * continuity_loss(
                pred[:, 1:][..., fi], target, windows.valid[:, 1:])
        if self.hybrids:
            total = total + self.penalty()
        return total

    def residual_vector(self, nodes: torch.Tensor, windows: Windows, inputs=None) -> torch.Tensor:
        """Unweighted residuals of all measured entries past each window's start (1-D)."""
        pred = self.predict(nodes, windows, inputs)
        y = gather(self.data.y, windows)
        mask = gather(self.data.mask, windows) & windows.valid[..., None]
        mask[:, 0] = False
        meas = self.measured(pred, windows)
        r = residuals(meas, torch.where(mask, y, meas.detach()),
                      self.config.loss.kind, self.mean_o, self.scale_o)
        return r[mask]


def check_positive(data: Prepared, spec: ModelSpec, scales: Scales) -> None:
    """``loss="lognormal"`` needs positive measurements: name the first state/run that is not."""
    mean_m, scale_m = scales.measured(spec)
    x = data.y.double() * torch.as_tensor(scale_m) + torch.as_tensor(mean_m)
    bad = (x <= 0) & data.mask
    if bool(bad.any()):
        r, k, j = (int(v) for v in bad.nonzero()[0])
        raise ConfigError(
            f"fit: loss 'lognormal' needs positive measurements, but "
            f"{'state' if j < len(spec.observed) else 'output'} {spec.measured[j]!r} "
            f"of run {data.run_ids[r]!r} is {float(x[r, k, j]):.6g} at sample {k + 1}. Use loss "
            f"'nmse' or 'relative', or shift the variable."
        )


