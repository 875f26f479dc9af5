"""Validation metric and the parameter table with Gauss-Newton standard errors.

``scaling`` arguments here are the scaling of the model's states only (``Scaling.select``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, final

import numpy as np
import pandas as pd
import torch

from sysid.data.scaling import Scaling
from sysid.errors import SolverError
from sysid.models.neural import NeuralField, frozen_weights
from sysid.models.numpy_fields import copies_agree
from sysid.solvers.steps import TABLEAUS, march_numpy
from sysid.training.config import FitConfig
from sysid.training.loss import ScaledRhs
from sysid.training.problem import ModelSpec, Prepared, WindowProblem
from sysid.training.result import gauss_newton_stderr
from sysid.training.solvers import StepCounter
from sysid.training.windows import Windows, gather, make_windows

__all__ = ["validation_nrmse", "HeldOut", "numpy_rollout", "parameter_table", "physics_raw", "latent_table",
           "initial_table"]


def physics_raw(model: Any) -> list[tuple[Any, torch.nn.Parameter]]:
    """``(term, raw tensor)`` of every physics term (and measurement equations) with free
    parameters."""
    from sysid.models import Outputs, PhysicsField

    return [(m, m.raw) for m in model.modules()
            if isinstance(m, (PhysicsField, Outputs)) and m.raw.numel()]


def validation_nrmse(rhs: ScaledRhs, val: Prepared, spec: ModelSpec, cfg: FitConfig,
                     substeps: int, counter: StepCounter) -> float:
    """Free-run NRMSE of held-out runs simulated from their first sample (one check of
    :class:`HeldOut`; a fit keeps one :class:`HeldOut` for all its checks)."""
    return HeldOut(rhs, val, spec, cfg, counter).nrmse(substeps)


@final
class HeldOut:
    """The held-out runs of a fit, made ready once for its repeated validation checks.

    :meth:`nrmse` is the free-run NRMSE of the runs simulated from their first sample: the RMSE
    of each measured state over all measured samples of all runs divided by that state's
    standard deviation in the held-out data, averaged over states. Latent states start from
    their derivative estimate (second-order models) or their scaled zero; with an encoder, each
    run starts at sample ``past - 1`` from the encoder's latent states (runs not longer than
    ``past`` samples are left out). A failed simulation gives inf.

    The rollout takes the training solver's steps; for up to :data:`NUMPY_ROWS` held-out runs
    without inputs on a fixed-step method it runs on a float64 NumPy copy of the field
    (:func:`numpy_rollout`: no torch dispatch per operation), else in torch in the fit's dtype.
    The windows, the observed values and their spread are made here, once.

    Parameters
    ----------
    rhs : ScaledRhs
        The field being trained (evaluated with its weights at each check).
    val : Prepared
        The held-out runs, scaled like the training data.
    spec : ModelSpec
    cfg : FitConfig
    counter : StepCounter
        Receives the field evaluations of every check.
    """

    def __init__(self, rhs: ScaledRhs, val: Prepared, spec: ModelSpec, cfg: FitConfig,
                 counter: StepCounter) -> None:
        n = int(val.t.shape[1])
        windows = make_windows(val.lengths, n, stride=n)
        if spec.encoder is not None:  # held-out runs start where the encoder has read its samples
            windows = _from_sample(val.lengths, spec.encoder.past - 1)
        self.windows, self.val, self.rhs = windows, val, rhs
        self.problem = WindowProblem(rhs, val, spec, cfg, counter)
        # the NumPy copy agreed with the torch field at a check: its structure does not change
        # during a fit, so later checks do not compare them again (~0.3 ms each)
        self._copy_agreed = False
        y = gather(val.y, windows)
        mask = gather(val.mask, windows) & windows.valid[..., None]
        # per measured variable: where it was measured, its values there and their spread
        self.columns: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []
        for j in range(len(spec.measured)):
            m = mask[..., j]
            if int(m.sum()) < 2:
                continue
            obs = y[..., j][m].double()
            self.columns.append((j, m, obs, float(obs.std(unbiased=False))))

    def nrmse(self, substeps: int) -> float:
        """The held-out NRMSE of the field's current weights, ``substeps`` steps per sample gap
        (NaN without runs or variables to compare, inf when the simulation fails)."""
        windows, problem = self.windows, self.problem
        if windows.count == 0 or not self.columns:
            return math.nan
        problem.substeps = substeps
        with torch.no_grad():
            try:
                pred = numpy_rollout(problem, windows, verify=not self._copy_agreed)
                self._copy_agreed = pred is not None
                if pred is None:
                    # physics parameters constrained once per check (frozen_weights), the
                    # networks' scalings folded once per rollout (WindowProblem.predict);
                    # inference_mode would save ~10 % more but breaks torchdiffeq's later solves
                    # with gradients
                    with frozen_weights(self.rhs):
                        pred = problem.predict(self.val.z_guess, windows,
                                               problem.inputs_for(windows))
            except SolverError:
                return math.inf
            pred = problem.measured(pred, windows)
        out = []
        for j, m, obs, sd in self.columns:
            err = pred[..., j][m].double() - obs
            rmse = float(err.pow(2).mean().sqrt())
            out.append(rmse / sd if sd > 0 else rmse)
        return float(np.mean(out))


#: Held-out runs up to which :class:`HeldOut` rolls out in NumPy: a batch this small costs torch
#: its dispatch per operation (a 100-step rk4 rollout of 2 runs of the default network: ~4.5 ms
#: in NumPy against ~10 ms in torch, ``bench_fit_breakdown.py``); larger batches are matrix
#: products, which torch in float32 does faster than NumPy in float64. An rk4 step of the default
#: network with one BLAS thread: NumPy 2.1x faster at 2 rows, 1.3x at 256, 1.26x at 1024, 0.45x
#: at 4096; with NumPy's default threads on a 2-core machine it was ~5x slower at 1024.
NUMPY_ROWS = 256


def numpy_rollout(problem: WindowProblem, windows: Windows, *,
                  verify: bool = True) -> torch.Tensor | None:
    """The scaled states ``(W, H, S)`` of ``problem.predict`` without gradients, integrated in
    float64 NumPy (:func:`~sysid.solvers.steps.march_numpy`), or None where that does not apply:
    inputs, an adaptive solver, more than :data:`NUMPY_ROWS` windows, or a field whose NumPy copy
    fails or (with ``verify``) disagrees with the torch field at the initial states (beyond the
    rounding of the fit's dtype). ``verify=False``: the copy is known to agree (an earlier check
    of the same field compared them); non-finite states still raise.

    Raises
    ------
    SolverError
        When the states become non-finite.
    """
    data, solver = problem.data, problem.config.solver
    if data.u is not None or solver.method not in TABLEAUS or windows.count > NUMPY_ROWS:
        return None
    t = gather(data.t, windows)
    z0 = problem.initial_states(data.z_guess, windows).detach()
    t_np, z_np = t.double().numpy(), z0.double().numpy()
    try:
        g = problem.rhs.numpy_function()
        if verify:
            with np.errstate(all="ignore"):
                got = g(t_np[:, 0], z_np)
            want = problem.rhs(t[:, 0], z0, None).detach().double().numpy()
    except Exception:  # noqa: BLE001 - a field without a working NumPy copy keeps the torch path
        return None
    tol = 1e-4 if z0.dtype == torch.float32 else 1e-9  # relative rounding of the torch field
    if verify and not copies_agree(got, want, rtol=tol, atol=tol):
        return None
    tab = TABLEAUS[solver.method]
    field = problem.rhs.field
    make = getattr(g, "in_place", None)  # the network's in-place form (ScaledRhs.numpy_function)
    net = make(len(z_np)) if make is not None else None
    zs = march_numpy(g, z_np, t_np, problem.substeps, tab, autonomous=isinstance(
        field, NeuralField) and not field.time_dependent,
        into=None if net is None else lambda tt, zz, out: net(tt, zz, None, out))
    problem.counter.add(len(tab.c) * problem.substeps * (t_np.shape[1] - 1))
    if not np.isfinite(zs).all():
        bad = ~np.isfinite(zs).all(axis=(0, 2))
        t_bad = float(t_np[:, max(int(np.argmax(bad)) - 1, 0)].min())
        raise SolverError(f"Integration with {solver.method} gave non-finite states near "
                          f"t={t_bad:.6g}", t_reached=t_bad)
    return torch.from_numpy(zs).to(z0.dtype)


def _from_sample(lengths: torch.Tensor, k: int) -> Windows:
    """One window per run longer than ``k + 1`` samples, from sample ``k`` to the run's end."""
    keep = torch.nonzero(lengths > k + 1)[:, 0]
    horizon = max(int(lengths.max()) - k, 2)
    raw = k + torch.arange(horizon, dtype=torch.long)[None, :]
    last = (lengths[keep] - 1)[:, None]
    return Windows(run=keep, start=torch.full_like(keep, k), idx=torch.minimum(raw, last),
                   valid=raw <= last)


def parameter_table(work: Any, spec: ModelSpec, scaling: Scaling, train: Prepared,
                    nodes: torch.Tensor, cfg: FitConfig, horizon: int,
                    substeps: int) -> pd.DataFrame:
    """The model's parameter table plus Gauss-Newton standard errors of the free parameters.

    Residuals: every measured sample past the start of non-overlapping windows of the final
    horizon (so each observation counts once), scaled as in the loss; the standard errors are
    conditional on the neural weights and the initial states, and assume equal noise variance of
    the scaled residuals of all states.
    """
    table = work.parameter_table().copy()
    table["stderr"] = np.nan
    terms = physics_raw(work)
    if table.empty or not terms:
        return table
    m64 = copy.deepcopy(work).double()
    terms64 = physics_raw(m64)
    if spec.outputs:
        spec = dataclasses.replace(spec, observer=m64)
    if spec.encoder is not None:
        spec = dataclasses.replace(spec, encoder=m64.encoder)
    rhs = ScaledRhs(m64.field, torch.tensor(scaling.mean, dtype=torch.float64),
                    torch.tensor(scaling.scale, dtype=torch.float64))
    data = dataclasses.replace(
        train, t=train.t.double(), y=train.y.double(),
        u=train.u.double() if train.u is not None else None, z_guess=train.z_guess.double(),
        smooth=train.smooth.double(), deriv=train.deriv.double())
    adaptive = cfg.solver.adaptive
    scfg = cfg if not adaptive else dataclasses.replace(cfg, solver=dataclasses.replace(
        cfg.solver, method="rk4", adjoint=False, substeps=max(cfg.solver.substeps, 4)))
    problem = WindowProblem(rhs, data, spec, scfg, StepCounter())
    problem.substeps = substeps if not adaptive else scfg.solver.substeps
    windows = make_windows(data.lengths, horizon, stride=max(horizon - 1, 1))
    inputs = problem.inputs_for(windows)
    z = nodes.detach().double()
    sizes = [raw.numel() for _, raw in terms64]
    start = torch.cat([raw.detach().clone() for _, raw in terms64])

    def assign(vec: torch.Tensor) -> None:
        k = 0
        for (_, raw), s in zip(terms64, sizes):
            raw.data.copy_(vec[k:k + s])
            k += s

    def residual_fn(vec: torch.Tensor) -> torch.Tensor:
        assign(vec)
        return problem.residual_vector(z, windows, inputs)

    def value_fn(vec: torch.Tensor) -> torch.Tensor:
        assign(vec)
        vals = []
        for term, _ in terms64:
            pv = term.physical_parameters()
            vals.extend(pv[name].reshape(()) for name in term.free_names)
        return torch.stack(vals)

    try:
        stderr, _, _ = gauss_newton_stderr(residual_fn, start, value_fn)
    except SolverError:
        stderr = np.full(int(start.numel()), np.nan)
    finally:
        assign(start)
    names = [name for term, _ in terms64 for name in term.free_names]
    found = dict(zip(names, stderr))
    table["stderr"] = [float(found.get(n, np.nan)) if bool(v) else np.nan
                       for n, v in zip(table["name"], table["vary"])]
    return table


def latent_table(spec: ModelSpec, scaling: Scaling, train: Prepared,
                 nodes: torch.Tensor, known: torch.Tensor | None = None) -> pd.DataFrame:
    """Estimated (or, with ``known``, given) latent states at the first sample of each training
    run, in user units."""
    latent = spec.latent_idx
    if not latent:
        return pd.DataFrame()
    start = nodes.detach()[:, 0]
    if known is not None:
        start = torch.where(known, train.z_guess[:, 0], start)
    z0 = start[:, latent].double().numpy()
    x0 = scaling.mean[latent] + scaling.scale[latent] * z0
    return pd.DataFrame(x0, index=pd.Index(train.run_ids, name="trajectory"),
                        columns=[spec.states[i] for i in latent])


def initial_table(spec: ModelSpec, scaling: Scaling, train: Prepared, nodes: torch.Tensor,
                   free: torch.Tensor) -> pd.DataFrame:
    """All states at each run's first sample (user units): the estimate where the initial state
    was free (latent states, or every state with ``initial_states="free"``; ``free`` is False for
    ``known_initial`` states), else the data or the model's ``latent_initial``."""
    z0 = torch.where(free, nodes.detach()[:, 0], train.z_guess[:, 0]).double().numpy()
    x0 = scaling.mean + scaling.scale * z0
    return pd.DataFrame(x0, index=pd.Index(train.run_ids, name="trajectory"),
                        columns=list(spec.states))
