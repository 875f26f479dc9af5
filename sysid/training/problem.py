"""The fitting problem in tensors: scaled data of all runs, initial-state guesses, window losses.

Everything here works in scaled coordinates ``z = (x - mean) / scale`` (per state, from the
training data); time stays in the user's units and the solvers step on each window's own grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from sysid.data.arrays import TrajectoryArrays
from sysid.data.scaling import Scaling
from sysid.errors import DataError
from sysid.training.config import FitConfig
from sysid.training.loss import ScaledRhs, continuity_loss
from sysid.training.solvers import StepCounter, solve_windows
from sysid.training.windows import WindowInputs, Windows, gather

__all__ = ["ModelSpec", "Prepared", "read_arrays", "fit_scaling", "smooth_measured", "prepare",
           "setup_encoder", "WindowProblem"]


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
    encoder : sysid.models.StateEncoder or None
        The training copy's encoder of the latent states (:mod:`sysid.models.encoder`): windows
        starting at sample ``past - 1`` or later take their latent states from it instead of
        the free nodes.
    """

    states: tuple[str, ...]
    observed: tuple[str, ...]
    inputs: tuple[str, ...]
    interpolation: str
    velocity_of: dict[int, int]
    latent_guess: dict[int, float] = dataclasses.field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    observer: Any = None
    encoder: Any = None

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


def read_arrays(ds: xr.Dataset, spec: ModelSpec, where: str) -> TrajectoryArrays:
    """The model's measured variables (observed states, then outputs) and inputs of a validated
    dataset, as padded NumPy arrays.

    Raises
    ------
    DataError
        When the data lacks a variable of the model, holds it in the other role, or has a
        missing input value.
    """
    from sysid.data import input_names, state_names, to_arrays

    s_names, i_names = state_names(ds), input_names(ds)
    names = set(s_names) | set(i_names)
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
    not_state = [n for n in spec.measured if n not in s_names]
    if not_state:
        raise DataError(f"{where}: {not_state} are inputs in the data but states of the model.")
    not_input = [n for n in spec.inputs if n not in i_names]
    if not_input:
        raise DataError(f"{where}: {not_input} are states in the data but inputs of the model.")
    arrays = to_arrays(ds, spec.measured + spec.inputs)
    if spec.inputs:
        _, um = arrays.select(spec.inputs)
        for r, rid in enumerate(arrays.run_ids):
            gaps = ~um[r, : int(arrays.lengths[r])]
            if gaps.any():
                j = int(np.argwhere(gaps)[0][1])
                k = int(gaps[:, j].sum())
                raise DataError(
                    f"{where}: input {spec.inputs[j]!r} of run {rid!r} has {k} missing values; the "
                    f"model needs the input at every sample. Fill the gaps explicitly before "
                    f"fitting (e.g. ds[{spec.inputs[j]!r}] = "
                    f"ds[{spec.inputs[j]!r}].interpolate_na('obs')).")
    return arrays


def fit_scaling(arrays: TrajectoryArrays, spec: ModelSpec, points: int,
                time_scale: str | float = "characteristic", *,
                smoothed: tuple[np.ndarray, ...] | None = None) -> Scaling:
    """The scaling of a fit: every state of the model, its inputs, then the outputs of its
    measurement equations (``Scaling.select`` picks what each use needs).

    Measured variables (observed states and outputs) and inputs follow the one rule of
    :func:`sysid.data.compute_scaling` (mean and standard deviation; a constant keeps its
    magnitude; the time scale from ``time_scale``, over the measured variables). Unmeasured
    states get what the data cannot give: latent velocities the spread of their position's
    smoothed derivative; other latent states mean 0 and as scale the larger of their starting
    guess's magnitude and the median spread of the measured variables (a SIR fit's R grows from
    0 to hundreds: scale 1 made its continuity penalty ~1e5 times the data loss and drove beta
    to zero).

    ``smoothed`` is :func:`smooth_measured` of ``arrays`` when the caller has it (else it is
    computed here).
    """
    from sysid.data.scaling import scaling_from_arrays

    if smoothed is None:
        smoothed = smooth_measured(arrays, spec, points)
    data = scaling_from_arrays(arrays, spec.measured, time_scale=time_scale,
                               smoothing_points=points, warn=False, where="fit",
                               first=smoothed[1])
    measured = data.select(spec.measured)
    S = len(spec.states)
    mean, scale = np.zeros(S), np.ones(S)
    oi = spec.obs_idx
    mean[oi] = measured.mean[: len(oi)]
    scale[oi] = measured.scale[: len(oi)]
    typical = float(np.median(measured.scale)) if measured.scale.size else 1.0
    for i, g in spec.latent_guess.items():
        scale[i] = max(abs(g), typical) if g != 0 else typical
    if spec.velocity_of:
        d1 = smoothed[1]  # observed states first
        for vi, qi in spec.velocity_of.items():
            j = spec.observed.index(spec.states[qi])
            vals = d1[..., j][np.isfinite(d1[..., j])]
            if vals.size:
                sd = float(np.sqrt(np.mean(vals**2)))
                scale[vi] = sd if sd > 0 else 1.0
    rest = data.select(spec.inputs + spec.outputs)
    return Scaling(names=spec.states + spec.inputs + spec.outputs,
                   mean=np.concatenate([mean, rest.mean]),
                   scale=np.concatenate([scale, rest.scale]), time_scale=data.time_scale)


def smooth_measured(arrays: TrajectoryArrays, spec: ModelSpec,
                    points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed values, first and second derivatives ``(R, N, M)`` of the measured variables
    (observed states, then outputs) of ``arrays``: one :func:`~sysid.data.smoothing.smooth_runs`
    shared by the scaling, the data preparation and the shooting plan. Second derivatives (NaN
    otherwise) only for second-order models, whose latent velocities need them."""
    from sysid.data.smoothing import smooth_runs

    y, m = arrays.select(spec.measured)
    return smooth_runs(arrays.t, y, m, arrays.lengths, points, second=bool(spec.velocity_of))


def setup_encoder(encoder: Any, arrays: TrajectoryArrays, scaling: Scaling, where: str) -> None:
    """Check the data an encoder is trained on and give it the fit's scaling and sample gap.

    The encoder reads samples, not times, so every run must be sampled at one rate (relative
    tolerance :data:`sysid.models.encoder.SAMPLING_RTOL`), the same as a previous fit's, and
    some run must be longer than ``past`` samples. An encoder already scaled (a model fitted
    before) keeps its scaling, as the network terms do.

    Raises
    ------
    DataError
        Irregular sampling, a rate other than the encoder's, or runs too short.
    """
    from sysid.models.encoder import SAMPLING_RTOL

    lengths = np.asarray(arrays.lengths)
    past = encoder.past
    if int(lengths.max()) <= past:
        raise DataError(
            f"{where}: the encoder reads past={past} samples before a window starts, but the "
            f"longest run has {int(lengths.max())} samples; use a smaller Encoder(past=...) "
            f"(at most {int(lengths.max()) - 1}) or longer runs.")
    gaps = [np.diff(arrays.t[r, :n]) for r, n in enumerate(lengths)]
    dt = float(np.median(np.concatenate(gaps)))
    for rid, g in zip(arrays.run_ids, gaps):
        bad = np.abs(g / dt - 1.0) > SAMPLING_RTOL
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(
                f"{where}: the encoder reads samples, so the data must be sampled at one rate; run "
                f"{rid!r} has a gap of {g[k]:.6g} between samples {k + 1} and {k + 2} where the "
                f"median gap is {dt:.6g}. Resample the runs to one rate, or fit without an encoder.")
    if not encoder.is_scaled:
        from sysid.models.encoder import difference_scales

        y, m = arrays.select(encoder.measured)
        y = np.where(m, y, np.nan)
        u = arrays.select(encoder.inputs)[0] if encoder.inputs else np.zeros(y.shape[:2] + (0,))
        encoder.set_scaling(scaling, dt, differences=(difference_scales(y, lengths, past),
                                                      difference_scales(u, lengths, past)))
        return
    old = float(encoder.dt)
    if old > 0 and abs(dt / old - 1.0) > SAMPLING_RTOL:
        raise DataError(f"{where}: the model's encoder was trained on samples {old:.6g} apart; this "
                        f"data is sampled every {dt:.6g}. Resample it to the encoder's rate.")


def prepare(arrays: TrajectoryArrays, spec: ModelSpec, scaling: Scaling, points: int,
            dtype: torch.dtype, *, smoothed: tuple[np.ndarray, ...] | None = None) -> Prepared:
    """Scaled tensors of a dataset, smoothed states and derivatives, initial-state guesses.

    ``scaling`` is the fit's (:func:`fit_scaling`): the model's states and measured variables.
    ``smoothed`` is :func:`smooth_measured` of ``arrays`` when the caller has it.
    """
    t, lengths = arrays.t, arrays.lengths
    y, m = arrays.select(spec.measured)  # the observed states, then the outputs
    S = len(spec.states)
    R, N, _ = y.shape
    oi = spec.obs_idx
    So = len(oi)  # outputs are not states: not smoothed
    if smoothed is None:
        smoothed = smooth_measured(arrays, spec, points)
    val, d1, d2 = (a[..., :So] for a in smoothed)
    states = scaling.select(spec.states)
    mean, scale = states.mean, states.scale
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
    measured = scaling.select(spec.measured)
    mean_m, scale_m = np.array(measured.mean), np.array(measured.scale)
    y_z = np.where(m, (y - mean_m) / scale_m, 0.0)
    guess = np.where(np.isfinite(smooth), smooth, 0.0)
    guess[..., oi] = np.where(m[..., :So], y_z[..., :So], guess[..., oi])
    pad = np.arange(N)[None, :] >= lengths[:, None]
    guess[pad] = 0.0
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
    u = arrays.select(spec.inputs)[0] if spec.inputs else None
    return Prepared(
        run_ids=arrays.run_ids,
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
        Its ``loss`` part names the error model (kind, weights, sigma).
    counter : StepCounter
        Accumulates function evaluations.
    continuity : float
        Weight of the continuity penalty of the free initial states (from the shooting plan).

    Attributes
    ----------
    error_model : sysid.estimation.ErrorModel
        What the data misfit is (:func:`sysid.estimation.make_error_model` over the measured
        variables); it compares predictions and data in user units.
    """

    def __init__(self, rhs: ScaledRhs, data: Prepared, spec: ModelSpec, config: FitConfig,
                 counter: StepCounter, *, continuity: float = 0.0) -> None:
        # the error models are shared with sysid.estimation (a local import: that package
        # builds on this one)
        from sysid.estimation.error_models import make_error_model

        self.rhs = rhs
        self.data = data
        self.spec = spec
        self.config = config
        self.error_model = make_error_model(config.loss.kind, spec.measured,
                                            sigma=config.loss.sigma, weights=config.loss.weights)
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
        self.encoder = spec.encoder
        if self.encoder is not None:  # its inputs: measured values (NaN where missing) and inputs
            y_user = torch.as_tensor(data.y_mean, dtype=data.y.dtype) + \
                torch.as_tensor(data.y_scale, dtype=data.y.dtype) * data.y
            self.enc_y = torch.where(data.mask, y_user, torch.full_like(y_user, math.nan))
            self.latent_mask = torch.zeros(S, dtype=torch.bool)
            self.latent_mask[spec.latent_idx] = True

    def setup_penalty(self, field: Any, time_scale: float) -> None:
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
        fallback = torch.full_like(rms, 1.0 / time_scale)
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

    def node_states(self, nodes: torch.Tensor, run: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The free states ``(..., S)`` at samples ``idx`` of runs ``run`` (same shapes): the nodes,
        with the latent states from the model's encoder at samples ``past - 1`` and later."""
        vals = nodes[run, idx]
        enc = self.encoder
        if enc is None:
            return vals
        k = enc.past - 1
        at = idx.clamp(min=k)
        lag = at[..., None] - torch.arange(k, -1, -1, dtype=idx.dtype)  # oldest sample first
        runs = run[..., None].expand_as(lag)
        u = self.data.u[runs, lag] if self.data.u is not None else None
        x = enc(self.enc_y[runs, lag], u)  # user units
        lat = self.spec.latent_idx
        z = ((x - self.rhs.mean[lat]) / self.rhs.scale[lat]).to(vals.dtype)
        full = vals.clone()
        full[..., lat] = z
        return torch.where((idx >= k)[..., None] & self.latent_mask, full, vals)

    def initial_states(self, nodes: torch.Tensor, windows: Windows) -> torch.Tensor:
        """``(W, S)`` states at the window starts: free nodes (or the encoder's latent states)
        where free, else the guesses."""
        fixed = self.data.z_guess[windows.run, windows.start]
        free_vals = self.node_states(nodes, windows.run, windows.start)
        free = self.free
        if bool(self.known.any()):
            free = torch.where((windows.start == 0)[:, None], free & ~self.known, free)
        return torch.where(free, free_vals, fixed)

    def predict(self, nodes: torch.Tensor, windows: Windows, inputs=None) -> torch.Tensor:
        """Scaled states ``(W, H, S)`` of every window."""
        t = gather(self.data.t, windows)
        z0 = self.initial_states(nodes, windows)
        solver = self.config.solver
        # the networks' scalings folded once per rollout (not where the backward pass evaluates
        # the field again: the adjoint, gradient checkpointing)
        again = torch.is_grad_enabled() and (solver.adjoint or solver.checkpoint_steps is not None)
        with contextlib.nullcontext() if again else self.rhs.folded():
            return solve_windows(self.rhs, z0, t, inputs=inputs, substeps=self.substeps,
                                 counter=self.counter, solver=solver)

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

    def user_units(self, pred: torch.Tensor, windows: Windows) -> tuple[torch.Tensor, ...]:
        """``(predicted, measured, mask)`` of the measured variables in user units ``(W, H, M)``."""
        y = gather(self.data.y, windows)
        mask = gather(self.data.mask, windows) & windows.valid[..., None]
        meas = self.measured(pred, windows)
        return self.mean_o + self.scale_o * meas, self.mean_o + self.scale_o * y, mask

    def loss(self, nodes: torch.Tensor, windows: Windows, inputs=None) -> torch.Tensor:
        """Data misfit (the error model's objective) plus the continuity penalty of the free
        initial states and the hybrid models' neural penalty."""
        pred = self.predict(nodes, windows, inputs)
        total = self.error_model.objective(*self.user_units(pred, windows), self.scale_o)
        if self.continuity > 0 and bool(self.free.any()) and windows.horizon > 1:
            fi = self.free.nonzero()[:, 0]
            later = windows.idx[:, 1:]
            target = self.node_states(nodes, windows.run[:, None].expand_as(later), later)[..., fi]
            total = total + self.continuity * continuity_loss(
                pred[:, 1:][..., fi], target, windows.valid[:, 1:])
        if self.hybrids:
            total = total + self.penalty()
        return total

    def residual_vector(self, nodes: torch.Tensor, windows: Windows, inputs=None) -> torch.Tensor:
        """The error model's residuals of the measured entries past each window's start (1-D),
        standardised by the noise level of each state where the model estimates one per state."""
        pred = self.predict(nodes, windows, inputs)
        yhat, y, mask = self.user_units(pred, windows)
        mask[:, 0] = False
        em = self.error_model
        sigma = em.sigma(yhat, y, mask, self.scale_o) if em.sigma_kind == "state" else None
        r = em.fisher_residuals(yhat, y, mask, self.scale_o, sigma)
        return r[em.active(mask)]

    def check_data(self) -> None:
        """Raise :class:`~sysid.errors.DataError` for a measurement the error model cannot have
        (e.g. a value <= 0 under "lognormal", naming the state, run and sample)."""
        d = self.data
        obs = self.mean_o.double() + self.scale_o.double() * d.y.double()
        self.error_model.check(obs, d.mask, list(d.run_ids))
