"""Validation metric and the parameter table with Gauss-Newton standard errors.

``scaling`` arguments here are the scaling of the model's states only (``Scaling.select``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from sysid.data.scaling import Scaling
from sysid.errors import SolverError
from sysid.models.neural import frozen_weights
from sysid.training.config import FitConfig
from sysid.training.loss import ScaledRhs
from sysid.training.problem import ModelSpec, Prepared, WindowProblem
from sysid.training.result import gauss_newton_stderr
from sysid.training.solvers import StepCounter
from sysid.training.windows import Windows, gather, make_windows

__all__ = ["validation_nrmse", "parameter_table", "physics_raw", "latent_table",
           "initial_table"]


def physics_raw(model: Any) -> list[tuple[Any, torch.nn.Parameter]]:
    """``(term, raw tensor)`` of every physics term (and measurement equations) with free
    parameters."""
    from sysid.models import Outputs, PhysicsField

    return [(m, m.raw) for m in model.modules()
            if isinstance(m, (PhysicsField, Outputs)) and m.raw.numel()]


def validation_nrmse(rhs: ScaledRhs, val: Prepared, spec: ModelSpec, cfg: FitConfig,
                     substeps: int, counter: StepCounter) -> float:
    """Free-run NRMSE of held-out runs simulated from their first sample.

    RMSE of each measured state over all measured samples of all runs divided by that state's
    standard deviation in the held-out data, averaged over states. Latent states start from their
    derivative estimate (second-order models) or their scaled zero; with an encoder, each run
    starts at sample ``past - 1`` from the encoder's latent states (runs not longer than ``past``
    samples are left out). A failed simulation gives inf.
    """
    n = int(val.t.shape[1])
    windows = make_windows(val.lengths, n, stride=n)
    if spec.encoder is not None:  # held-out runs start where the encoder has read its samples
        windows = _from_sample(val.lengths, spec.encoder.past - 1)
        if windows.count == 0:
            return math.nan
    problem = WindowProblem(rhs, val, spec, cfg, counter)
    problem.substeps = substeps
    # physics parameters constrained once per check (frozen_weights), the networks' scalings
    # folded once per rollout (WindowProblem.predict); inference_mode would save ~10 % more but
    # breaks torchdiffeq's later solves with gradients
    with torch.no_grad(), frozen_weights(rhs):
        try:
            pred = problem.predict(val.z_guess, windows, problem.inputs_for(windows))
        except SolverError:
            return math.inf
        pred = problem.measured(pred, windows)
    y = gather(val.y, windows)
    mask = gather(val.mask, windows) & windows.valid[..., None]
    out = []
    for j in range(len(spec.measured)):
        m = mask[..., j]
        if int(m.sum()) < 2:
            continue
        obs = y[..., j][m].double()
        err = pred[..., j][m].double() - obs
        sd = float(obs.std(unbiased=False))
        rmse = float(err.pow(2).mean().sqrt())
        out.append(rmse / sd if sd > 0 else rmse)
    return float(np.mean(out)) if out else math.nan


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
