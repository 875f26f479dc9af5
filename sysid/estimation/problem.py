"""The single-shooting least-squares problem: residuals of all runs as a function of one vector.

The unknowns ``theta`` are every estimated quantity that is not a network weight: the raw
(unconstrained) values of the free physical parameters, then the free initial states of each run
in scaled units ``z = (x - mean) / scale``. Each run is integrated from its first sample with
fixed-step RK4 on a grid that holds every sample time and splits each sample gap into equal steps
no longer than ``step`` (irregular gaps get as many steps as they need; a fixed-step scheme keeps
the residuals a smooth function of ``theta``, so Gauss-Newton steps and gradient norms mean what
they say), and
the residuals are the error model's standardised residuals of every measured entry. A measured
state whose initial state is fixed to its measurement contributes no residual at the first sample
(it is the initial condition, not a prediction); a free one does.

Jacobians are exact: reverse-mode automatic differentiation through the RK4 rollout, all rows at
once (batched backward passes). (Forward mode would need one pass per unknown, and torch's
forward-mode arithmetic between dual and plain tensors costs ~0.2 ms per operation here.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any, final

import numpy as np
import torch
from torch import nn

from torch.func import vmap

from sysid.errors import ConfigError, ParameterError
from sysid.estimation.error_models import ErrorModel
from sysid.data.scaling import Scaling
from sysid.training.problem import ModelSpec, Prepared
from sysid.training.solvers import solve_windows

__all__ = ["ShootingProblem", "physics_terms"]


def physics_terms(field: nn.Module) -> list[tuple[str, Any]]:
    """``(parameter path, PhysicsField)`` of every physics term of ``field`` with free parameters."""
    from sysid.models import PhysicsField

    out = []
    for path, module in field.named_modules():
        if isinstance(module, PhysicsField) and module.raw.numel():
            out.append((f"{path}.raw" if path else "raw", module))
    return out


class _UserRhs(nn.Module):
    """The field in user units with the solver's signature ``(t, x, u) -> dx/dt``."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        return self.field(t, x, u)


class _Grid:
    """Integration grid of every run: the sample times plus equal steps no longer than ``step``
    inside each gap.

    Attributes
    ----------
    t : Tensor (R, M)
        Grid times (padded with the run's last time: zero steps).
    pos : LongTensor (R, N)
        Grid index of every sample.
    valid : BoolTensor (R, M)
        Grid points inside the run.
    inputs : callable or None
        ``u_at(t (R,), k)`` inputs at times inside grid gap ``k`` (the model's interpolation).
    """

    def __init__(self, t: torch.Tensor, lengths: torch.Tensor, step: float, u: torch.Tensor | None,
                 kind: str) -> None:
        from sysid import budget

        R, N = t.shape
        times, positions = [], []
        for r in range(R):  # vectorised per run: a loop over 5 million gaps took 100 s
            budget.check("refinement grid")  # max_time and Ctrl-C hold here too
            n = int(lengths[r])
            tr = t[r, :n]
            gaps = tr[1:] - tr[:-1]
            k = torch.clamp(torch.ceil(gaps / step - 1e-9), min=1).to(torch.long)
            # gap g contributes tr[g] + gaps[g] * j / k[g] for j = 1..k[g]
            g = torch.repeat_interleave(torch.arange(n - 1), k)
            j = torch.arange(g.numel()) - torch.repeat_interleave(torch.cumsum(k, 0) - k, k) + 1
            frac = j.to(t.dtype) / k[g].to(t.dtype)
            times.append(torch.cat([tr[:1], tr[g] + gaps[g] * frac]))
            positions.append(torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(k, 0)]))
        M = max(len(x) for x in times)
        self.t = torch.stack([torch.cat([x, x[-1:].expand(M - len(x))]) for x in times])
        self.pos = torch.stack([torch.cat([p, torch.zeros(N - len(p), dtype=torch.long)]) for p in positions])
        self.valid = torch.arange(M)[None, :] < torch.tensor([len(x) for x in times])[:, None]
        self.points = int(self.valid.sum())
        self.inputs = None
        if u is not None:
            self.inputs = _GridInputs(t, u, lengths, self.t, self.pos, kind)


class _GridInputs:
    """Inputs on an integration grid: zero-order hold by the sample gap a grid gap lies in (as the
    training windows hold it), linear and cubic from the model's interpolant of the samples."""

    def __init__(self, t: torch.Tensor, u: torch.Tensor, lengths: torch.Tensor, grid_t: torch.Tensor,
                 pos: torch.Tensor, kind: str) -> None:
        from sysid.models.interpolation import InputInterpolator

        R, M = grid_t.shape
        # sample gap of each grid gap: the last sample at or before its start
        gap = torch.zeros(R, M, dtype=torch.long)
        for r in range(R):
            n = int(lengths[r])
            marks = torch.zeros(M, dtype=torch.long)
            marks[pos[r, 1:n - 1]] = 1
            gap[r] = torch.cumsum(marks, 0).clamp(max=max(n - 2, 0))
        self.samples = u[torch.arange(R)[:, None], gap]
        self.interp = None if kind == "zoh" else InputInterpolator(t, u, lengths, kind)

    def __call__(self, t: torch.Tensor, k: int) -> torch.Tensor:
        if self.interp is None:
            return self.samples[:, k]
        return self.interp(t)


@final
class ShootingProblem:
    """Residuals of every run integrated from its first sample (single shooting).

    Parameters
    ----------
    field : nn.Module
        The model's vector field in user units (float64; network weights stay as they are).
    spec : ModelSpec
        States, observed states and inputs of the model.
    data : Prepared
        The runs as scaled tensors (float64).
    scales : Scaling
        Centre and scale of every state (``Scaling`` of the model's states).
    error_model : ErrorModel
        Over ``spec.observed``.
    free : BoolTensor (R, S)
        Which initial states (run, state) are estimated.
    z0 : Tensor (R, S)
        Initial states in scaled units: the start of the free ones, the value of the others.
    step : float, optional
        Longest RK4 step (time units); default the longest sample gap (one step per gap).
    hold : mapping of str to float, optional
        Unknowns (by name, see :attr:`names`) held at a value (user units) instead of estimated.

    Attributes
    ----------
    names : list of str
        The unknowns in the order of ``theta``: parameter names, then ``x0[run].state``.
    sigma : Tensor (So,) or None
        Noise level used to standardise the residuals ("state" error models); None: 1.
    """

    def __init__(self, field: nn.Module, spec: ModelSpec, data: Prepared, scales: Scaling,
                 error_model: ErrorModel, free: torch.Tensor, z0: torch.Tensor, *,
                 step: float | None = None, hold: Mapping[str, float] | None = None,
                 observer: Any = None) -> None:
        dt = torch.float64
        self.spec = spec
        self.data = data
        self.scales = scales
        self.error_model = error_model
        self.sigma: torch.Tensor | None = None
        self.mean = torch.tensor(scales.mean, dtype=dt)  # Scaling arrays are read-only
        self.scale = torch.tensor(scales.scale, dtype=dt)
        self.field = field
        self.rhs = _UserRhs(field)
        oi = spec.obs_idx
        self.obs_idx = oi
        # the measured variables: observed states, then the outputs of measurement equations
        self.observer = observer if spec.outputs else None
        if spec.outputs and observer is None:
            raise ConfigError("estimation: a model with output equations needs observer= (the model "
                              "whose observe() gives them).")
        if data.y_mean is not None:
            y_mean = torch.tensor(np.asarray(data.y_mean), dtype=dt)
            y_scale = torch.tensor(np.asarray(data.y_scale), dtype=dt)
        else:
            y_mean, y_scale = self.mean[oi], self.scale[oi]
        self.spread = y_scale
        if int(data.lengths.min()) < 2:
            raise ConfigError("estimation: every run needs at least two samples for single shooting.")
        self.t = data.t.to(dt)
        self.u = data.u.to(dt) if data.u is not None else None
        gaps = [self.t[r, 1:int(n)] - self.t[r, :int(n) - 1] for r, n in enumerate(data.lengths)]
        self.longest_gap = float(max(float(g.max()) for g in gaps))
        if not self.longest_gap > 0:
            raise ConfigError("estimation: every run must span a positive time.")
        self.step = self.longest_gap if step is None else float(step)
        self._grids: dict[float, _Grid] = {}
        self.obs = y_mean + y_scale * data.y.to(dt)
        inside = torch.arange(self.t.shape[1])[None, :] < data.lengths[:, None]
        mask = data.mask & inside[..., None]
        first = torch.zeros_like(mask)
        first[:, 0] = True
        counts0 = torch.ones(len(data.run_ids), mask.shape[-1], dtype=torch.bool)
        counts0[:, : len(oi)] = free[:, oi].to(torch.bool)
        # the first sample of an observed state is a residual only where its initial state is
        # estimated (else it is the initial condition); outputs always count
        mask = mask & (~first | counts0[:, None, :])
        self.mask = error_model.active(mask)
        error_model.check(self.obs, self.mask, data.run_ids)
        self.free = free.to(torch.bool).clone()
        self._free_flat = self.free.reshape(-1).nonzero()[:, 0]
        self.base_z0 = z0.to(dt).detach().clone()
        self.terms = physics_terms(field)
        self._graph: tuple[torch.Tensor, torch.Tensor] | None = None
        self._layout(hold or {})

    # -- unknowns -----------------------------------------------------------------------------
    def _layout(self, hold: Mapping[str, float]) -> None:
        names, starts, kinds = [], [], []
        for path, term in self.terms:
            raw = term.raw.detach().to(torch.float64)
            for i, name in enumerate(term.free_names):
                names.append(name)
                starts.append(float(raw[i]))
                kinds.append(("param", path, i, term.parameter_specs()[name]))
        fr, fs = self.free.nonzero(as_tuple=True)
        for r, s in zip(fr.tolist(), fs.tolist()):
            names.append(f"x0[{self.data.run_ids[r]}].{self.spec.states[s]}")
            starts.append(float(self.base_z0[r, s]))
            kinds.append(("x0", r, s, None))
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"estimation: parameter names {dup} appear in more than one physics "
                              f"term; give each free parameter its own name.")
        unknown = [n for n in hold if n not in names]
        if unknown:
            raise ParameterError(f"estimation: cannot hold {unknown}: not estimated quantities; "
                                 f"they are {names}.")
        self.all_names = names
        self.all_kinds = kinds
        self.held = {names.index(n): self._to_theta(names.index(n), float(v)) for n, v in hold.items()}
        self.index = [i for i in range(len(names)) if i not in self.held]
        self.names = [names[i] for i in self.index]
        full = torch.tensor(starts, dtype=torch.float64)
        for i, v in self.held.items():
            full[i] = v
        self.full0 = full
        self.theta0 = full[self.index].clone()

    def _to_theta(self, i: int, value: float) -> float:
        from sysid.models.parameters import raw_from_value

        kind = self.all_kinds[i]
        if kind[0] == "param":
            return raw_from_value(value, kind[3])
        s = kind[2]
        return (value - float(self.mean[s])) / float(self.scale[s])

    @property
    def size(self) -> int:
        """Number of unknowns."""
        return len(self.index)

    @property
    def n_params(self) -> int:
        """Number of estimated physical parameters (the others are initial states)."""
        return sum(1 for i in self.index if self.all_kinds[i][0] == "param")

    @property
    def n_residuals(self) -> int:
        """Number of residuals."""
        return int(self.mask.sum())

    def full(self, theta: torch.Tensor) -> torch.Tensor:
        """The unknowns with the held ones put back (all of :attr:`all_names`)."""
        if not self.held:
            return theta
        out = self.full0.to(theta.dtype).clone()
        out = out.index_put((torch.tensor(self.index, dtype=torch.long),), theta)
        return out

    def values(self, theta: torch.Tensor) -> np.ndarray:
        """User-unit values of the unknowns (constrained parameters, initial states)."""
        from sysid.models.parameters import value_from_raw

        th = theta.detach().to(torch.float64)
        out = []
        for k, i in enumerate(self.index):
            kind = self.all_kinds[i]
            if kind[0] == "param":
                out.append(float(value_from_raw(float(th[k]), kind[3])))
            else:
                s = kind[2]
                out.append(float(self.mean[s] + self.scale[s] * th[k]))
        return np.asarray(out)

    def value_derivative(self, theta: torch.Tensor) -> np.ndarray:
        """``d value / d theta`` of each unknown (the transforms are elementwise)."""
        from sysid.models.parameters import value_from_raw

        out = []
        for k, i in enumerate(self.index):
            kind = self.all_kinds[i]
            if kind[0] == "param":
                x = theta[k].detach().to(torch.float64).clone().requires_grad_(True)
                v = value_from_raw(x, kind[3])
                out.append(float(torch.autograd.grad(v, x)[0]) if v.requires_grad else 1.0)
            else:
                out.append(float(self.scale[kind[2]]))
        return np.asarray(out)

    # -- evaluation ---------------------------------------------------------------------------
    def _split(self, theta: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Raw parameter vector of each physics term and the initial states ``(R, S)`` (user units)."""
        full = self.full(theta)
        raws = []
        k = 0
        for _, term in self.terms:
            n = term.raw.numel()
            raws.append(full[k:k + n].to(term.raw.dtype))
            k += n
        z0 = self.base_z0.to(full.dtype).reshape(-1).index_put((self._free_flat,), full[k:])
        z0 = z0.reshape(self.base_z0.shape)
        return raws, self.mean + self.scale * z0

    def grid(self, step: float | None = None) -> _Grid:
        """The integration grid for ``step`` (default :attr:`step`), cached."""
        h = self.step if step is None else float(step)
        if h not in self._grids:
            self._grids[h] = _Grid(self.t, self.data.lengths, h, self.u, self.spec.interpolation)
        return self._grids[h]

    def predict(self, theta: torch.Tensor, step: float | None = None, *,
                measured: bool = False) -> torch.Tensor:
        """States ``(R, N, S)`` of every run at its samples (user units), or with ``measured``
        the measured variables ``(R, N, M)`` (:meth:`observed`, with ``theta``'s parameters)."""
        raws, x0 = self._split(theta)
        grid = self.grid(step)
        with ExitStack() as stack:
            for (_, term), raw in zip(self.terms, raws):
                stack.enter_context(term.values_from(raw))
            out = solve_windows(self.rhs, x0, grid.t, inputs=grid.inputs, method="rk4", substeps=1)
            states = out[torch.arange(out.shape[0])[:, None], grid.pos]
            return self.observed(states) if measured else states

    def observed(self, pred: torch.Tensor) -> torch.Tensor:
        """The measured variables ``(R, N, M)`` of predicted states ``(R, N, S)``: the observed
        states, then the outputs of the model's measurement equations."""
        if self.observer is None:
            return pred[..., self.obs_idx]
        y = self.observer.observe(self.t, pred, self.u)
        return torch.cat([pred[..., self.obs_idx], y.to(pred.dtype)], dim=-1)

    def residuals(self, theta: torch.Tensor, *, fisher: bool = False) -> torch.Tensor:
        """Standardised residuals ``(m,)`` of every measured entry (see the module docstring)."""
        pred = self.predict(theta, measured=True)
        fn = self.error_model.fisher_residuals if fisher else self.error_model.residuals
        r = fn(pred, self.obs, self.mask, self.spread, self.sigma)
        return r[self.mask]

    def evaluate(self, theta: torch.Tensor) -> torch.Tensor:
        """:meth:`residuals` (detached), keeping the graph for a :meth:`jacobian` at the same point."""
        x = theta.detach().to(torch.float64).clone().requires_grad_(True)
        with torch.enable_grad():
            r = self.residuals(x)
        self._graph = (x, r)
        return r.detach()

    def fisher_jacobian(self, theta: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """``(residuals (m,), Jacobian (m, P))`` standardised for the Fisher information: with one
        noise level common to all states the residuals are left unscaled (its estimate scales the
        information afterwards); non-finite Jacobian entries are 0. ``self.sigma`` is unchanged."""
        saved = self.sigma
        if self.error_model.sigma_kind == "common":
            self.sigma = None
        try:
            r, jac = self.jacobian(theta, fisher=True)
        finally:
            self.sigma = saved
        j = jac.numpy()
        return r, np.where(np.isfinite(j), j, 0.0)

    def jacobian(self, theta: torch.Tensor, *, fisher: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(residuals (m,), Jacobian (m, P))`` at ``theta``, by reverse-mode differentiation.

        All rows in batched backward passes of up to 512 rows (one for most problems); the graph
        of a preceding :meth:`evaluate` at the same point is reused.
        """
        m, p = self.n_residuals, self.size
        theta = theta.detach().to(torch.float64)
        if p == 0:
            with torch.no_grad():
                return self.residuals(theta, fisher=fisher), torch.zeros(m, 0, dtype=torch.float64)
        graph, self._graph = self._graph, None
        if not fisher and graph is not None and torch.equal(graph[0].detach(), theta):
            x, r = graph
        else:
            x = theta.clone().requires_grad_(True)
            with torch.enable_grad():
                r = self.residuals(x, fisher=fisher)
        if not r.requires_grad:
            return r.detach(), torch.zeros(m, p, dtype=torch.float64)
        rows = []
        chunk = 512
        for a in range(0, m, chunk):
            b = min(a + chunk, m)
            seeds = torch.zeros(b - a, m, dtype=r.dtype)
            seeds[torch.arange(b - a), torch.arange(a, b)] = 1.0
            try:
                g = vmap(lambda v: torch.autograd.grad(r, x, v, retain_graph=True)[0])(seeds)
            except RuntimeError:  # an operation without a batching rule: one pass per row
                g = torch.stack([_grad_row(r, x, i) for i in range(a, b)])
            rows.append(g if g is not None else torch.zeros(b - a, p, dtype=torch.float64))
        return r.detach(), torch.cat(rows).detach()

    def max_change(self, theta: torch.Tensor, step: float,
                   coarse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Largest change ``(So,)`` of each observed state at its samples (user units) from steps
        of ``step`` to half that (the RK4 error at ``step`` is about 16/15 of it), and the
        predictions at the half step. ``coarse``: the predictions at ``step`` if known."""
        with torch.no_grad():
            a = self.predict(theta, step, measured=True) if coarse is None else coarse
            b = self.predict(theta, step / 2, measured=True)
        inside = torch.arange(self.t.shape[1])[None, :] < self.data.lengths[:, None]
        d = torch.where(inside[..., None], (a - b).abs(), torch.zeros_like(a))
        return d.reshape(-1, d.shape[-1]).max(0).values, b

    def assign(self, theta: torch.Tensor) -> None:
        """Write the parameters of ``theta`` into the physics terms (in place) and make ``theta``'s
        initial states the base of later evaluations."""
        raws, x0 = self._split(theta.detach().to(torch.float64))
        with torch.no_grad():
            for (_, term), raw in zip(self.terms, raws):
                term.raw.copy_(raw.to(term.raw.dtype))
        self.base_z0 = ((x0 - self.mean) / self.scale).detach().clone()

    def initial_states(self, theta: torch.Tensor) -> torch.Tensor:
        """``(R, S)`` initial states in user units."""
        return self._split(theta.detach().to(torch.float64))[1]

    def names_of(self, kinds: Sequence[str] = ("param", "x0")) -> list[str]:
        """Names of the unknowns of the given kinds."""
        return [self.all_names[i] for i in self.index if self.all_kinds[i][0] in kinds]

    def is_param(self) -> np.ndarray:
        """Boolean mask over the unknowns: physical parameter (True) or initial state."""
        return np.array([self.all_kinds[i][0] == "param" for i in self.index], dtype=bool)

    def nll(self, theta: torch.Tensor, sigma: torch.Tensor | None = None) -> float:
        """Negative log-likelihood at ``theta`` (ML noise levels unless ``sigma`` is given)."""
        with torch.no_grad():
            pred = self.predict(theta, measured=True)
            return float(self.error_model.nll(pred, self.obs, self.mask, self.spread, sigma))

    def sigma_at(self, theta: torch.Tensor, dof: int = 0) -> torch.Tensor:
        """Noise level per observed state at ``theta`` (ML, or ``SSE / (n - dof)``)."""
        with torch.no_grad():
            pred = self.predict(theta, measured=True)
            return self.error_model.sigma(pred, self.obs, self.mask, self.spread, dof=dof)


def _grad_row(r: torch.Tensor, x: torch.Tensor, i: int) -> torch.Tensor:
    (g,) = torch.autograd.grad(r[i], x, retain_graph=True, allow_unused=True)
    return g if g is not None else torch.zeros_like(x)


def check_finite(theta: np.ndarray, names: Sequence[str]) -> None:
    """Raise when a starting value is not finite (a parameter on its bound)."""
    bad = [n for n, v in zip(names, theta) if not math.isfinite(v)]
    if bad:
        raise ParameterError(f"estimation: unknowns {bad} start at a non-finite value (on a bound?).")


def from_data(model: Any, data: Any, *, loss: str | ErrorModel = "sse",
              sigma: Mapping[str, float] | None = None, weights: Mapping[str, float] | None = None,
              initial_states: str = "measured", known_initial: Sequence[str] = (),
              smoothing_points: int = 7, hold: Mapping[str, float] | None = None) -> ShootingProblem:
    """A :class:`ShootingProblem` for a model and a dataset, as :func:`sysid.fit` would set it up.

    Parameters
    ----------
    model : sysid.models.Model
        Copied to float64; the copy's current parameter values are the start.
    data : xarray.Dataset
        Trajectories (sysid schema).
    loss : str or ErrorModel
        Error model (a kind, see :data:`sysid.estimation.KINDS`, with ``sigma`` and ``weights``).
    initial_states : {"measured", "free"}
        Measured states start from their first measurement, or are estimated per run ("free").
        Unmeasured states are always estimated, except those in ``known_initial``.
    known_initial : sequence of str
        States whose first-sample value is known (measurement, or the model's ``latent_initial``).
    smoothing_points : int
        Samples of the local polynomial smoother that fills a missing first measurement.
    hold : mapping of str to float, optional
        Unknowns held at a value (e.g. for a profile likelihood).
    """
    import copy

    from sysid.data import validate
    from sysid.estimation.error_models import make_error_model
    from sysid.training.engine import _model_spec
    from sysid.training.problem import fit_scaling, prepare, read_arrays

    if initial_states not in ("measured", "free"):
        raise ConfigError(f"estimation: initial_states must be 'measured' or 'free'; got {initial_states!r}.")
    spec = _model_spec(model)
    unknown = [n for n in known_initial if n not in spec.states]
    if unknown:
        raise ConfigError(f"estimation: known_initial names {unknown} are not states of the model; "
                          f"its states are {list(spec.states)}.")
    validate(data, where="fit data")
    arrays = read_arrays(data, spec, "fit")
    scaling = fit_scaling(arrays, spec, smoothing_points)
    prepared = prepare(arrays, spec, scaling, smoothing_points, torch.float64)
    scales = scaling.select(spec.states)
    em = loss if isinstance(loss, ErrorModel) else make_error_model(loss, spec.measured, sigma=sigma,
                                                                     weights=weights)
    work = copy.deepcopy(model).double()
    R, S = len(prepared.run_ids), len(spec.states)
    free = torch.zeros(R, S, dtype=torch.bool)
    free[:, spec.latent_idx] = True
    if initial_states == "free":
        free[:] = True
    for n in known_initial:
        free[:, spec.states.index(n)] = False
    return ShootingProblem(work.field, spec, prepared, scales, em, free, prepared.z_guess[:, 0],
                           hold=hold, observer=work if spec.outputs else None)
