"""torch integration of batched windows (multiple shooting), each on its own time grid.

Every window has its own time grid ``t (W, H)``. The explicit fixed-step methods take ``substeps``
steps of ``h = (t[k+1] - t[k]) / substeps`` per window between consecutive samples, all windows at
once, with the same loop as single runs (:func:`sysid.solvers.steps.march`): one vectorised call of
the vector field per stage, no Python loop per window.

torchdiffeq's solvers (the adaptive ones, and any method with the adjoint) need
one time grid shared by the batch, so each window is integrated in a shared "sample clock"
``s in [0, H-1]``: between samples ``k`` and ``k+1`` real time is ``t = t[k] + (s - k) * dt[k]``
and ``dz/ds = dt[k] * dz/dt``. The clock is already normalised (one unit per sample gap), so the
tolerances act on scaled states per sample gap. Their error norm is torchdiffeq's root mean
square over all the windows of a batch, not each window's own as in ``simulate``
(:func:`sysid.solvers.dopri.run_norm`): the windows are pieces of one loss, and the largest
window's norm would let the hardest window set every window's steps in every epoch.

Failures are typed: a non-finite state or an exhausted step budget raises
:class:`~sysid.errors.SolverError` with the time reached, never a bare ``AssertionError``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sysid import budget as time_budget
from sysid.errors import ConfigError, SolverError
from sysid.solvers.config import SolverConfig
from sysid.solvers.steps import TABLEAUS, grid_between, march

__all__ = ["solve_windows", "StepCounter"]

# inputs of every window at per-window times inside sample gap k: u_at(t (W,), k) -> (W, I)
Inputs = Callable[[torch.Tensor, int], torch.Tensor]

_HINT = ("the learned system became stiff or blew up; the fit rolls back and lowers the learning "
         "rate. If it keeps failing try a smaller lr, more substeps or a fixed-step solver.")


class StepCounter:
    """Counts evaluations of the vector field (NFE) over a fit."""

    def __init__(self) -> None:
        self.nfe = 0

    def add(self, n: int = 1) -> None:
        """Record ``n`` evaluations."""
        self.nfe += n


def _first_bad_time(z: torch.Tensor, t: torch.Tensor) -> float:
    bad = ~torch.isfinite(z).all(dim=-1)  # (W, H)
    cols = bad.any(dim=0).nonzero()
    if len(cols) == 0:
        return float("nan")
    k = int(cols[0])
    rows = bad[:, k].nonzero()[:, 0]
    return float(t[rows, max(k - 1, 0)].min())


def _check_finite(zs: torch.Tensor, t: torch.Tensor, method: str) -> torch.Tensor:
    if not bool(torch.isfinite(zs).all()):
        t_bad = _first_bad_time(zs.detach(), t)
        raise SolverError(f"Integration with {method} gave non-finite states near t={t_bad:.6g}: "
                          f"{_HINT}", t_reached=t_bad)
    return zs


class _ClockField(nn.Module):
    """``dz/ds`` on the shared sample clock (a module so ``odeint_adjoint`` finds the weights)."""

    def __init__(self, rhs: nn.Module, t: torch.Tensor, inputs: Inputs | None,
                 counter: StepCounter, budget: int, method: str) -> None:
        super().__init__()
        self.rhs = rhs
        self.t = t
        self.dt = t[:, 1:] - t[:, :-1]
        self.inputs = inputs
        self.counter = counter
        self.budget = budget
        self.method = method
        self.calls = 0

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        time_budget.check("integration")  # max_time and stop requests hold inside long solves
        self.calls += 1
        self.counter.add(1)
        H = self.t.shape[1]
        sv = float(s.detach())
        k = min(max(int(sv), 0), H - 2)
        frac = min(max(sv - k, 0.0), 1.0)
        dtk = self.dt[:, k]
        tk = self.t[:, k] + frac * dtk
        if self.calls > self.budget or not bool(torch.isfinite(z).all()):
            t_reached = float(tk.min())
            why = ("the step budget (max_steps) was exhausted" if self.calls > self.budget
                   else "the state became non-finite")
            raise SolverError(f"Integration with {self.method} failed near t={t_reached:.6g}: "
                              f"{why}; {_HINT}",
                              t_reached=t_reached)
        u = self.inputs(tk, k) if self.inputs is not None else None
        return dtk[:, None] * self.rhs(tk, z, u)


def _on_clock(rhs: nn.Module, z0: torch.Tensor, t: torch.Tensor, inputs: Inputs | None,
              cfg: SolverConfig, substeps: int, counter: StepCounter) -> torch.Tensor:
    """torchdiffeq on the shared sample clock (adaptive methods, and any method with the adjoint)."""
    func = _ClockField(rhs, t, inputs, counter, budget=6 * cfg.max_steps + 8, method=cfg.method)
    grid = torch.arange(t.shape[1], dtype=z0.dtype)
    # the field jumps at every sample (dt[k] changes): adaptive steps land on the samples and
    # evaluate both one-sided limits there (torchdiffeq's jump_t), fixed steps evaluate a step's
    # last stage just before the sample (perturb), so each stage sees its own gap's dt
    if cfg.adaptive:
        options: dict[str, object] = {"max_num_steps": cfg.max_steps, "jump_t": grid[1:-1]}
    else:  # substeps steps per sample gap; k * m / m is exactly k, so the samples are grid points
        clock = torch.arange((t.shape[1] - 1) * substeps + 1, dtype=z0.dtype) / substeps
        options = {"perturb": True, "grid_constructor": lambda f, y, s: grid_between(clock, s)}
    import torchdiffeq  # here, not at import: it imports scipy.integrate (start-up of every command)

    try:
        if cfg.adjoint:
            zs = torchdiffeq.odeint_adjoint(func, z0, grid, method=cfg.method, rtol=cfg.rtol,
                                            atol=cfg.atol, options=options,
                                            adjoint_options=options if cfg.adaptive else None,
                                            adjoint_params=tuple(rhs.parameters()))
        else:
            zs = torchdiffeq.odeint(func, z0, grid, method=cfg.method, rtol=cfg.rtol, atol=cfg.atol,
                                    options=options)
    except AssertionError as exc:  # torchdiffeq reports underflow / budget as bare assertions
        t_reached = float(t[:, 0].min())
        raise SolverError(f"Integration with {cfg.method} failed ({exc}); {_HINT}",
                          t_reached=t_reached) from None
    return zs.transpose(0, 1)


def solve_windows(rhs: nn.Module, z0: torch.Tensor, t: torch.Tensor, *,
                  inputs: Inputs | None = None, method: str = "rk4", substeps: int | None = None,
                  rtol: float = 1e-4, atol: float = 1e-6, max_steps: int = 10_000,
                  adjoint: bool = False, counter: StepCounter | None = None,
                  solver: SolverConfig | None = None) -> torch.Tensor:
    """Integrate every window from its first sample over its own time grid, in one batched solve.

    Parameters
    ----------
    rhs : nn.Module
        ``rhs(t (W,), z (W, S), u (W, I) or None) -> dz/dt (W, S)``.
    z0 : Tensor (W, S)
        States at each window's first sample.
    t : Tensor (W, H)
        Sample times of each window (non-decreasing; zero gaps keep the state).
    inputs : callable, optional
        ``u_at(t (W,), k) -> (W, I)``: the inputs of every window at per-window times inside
        sample gap ``k`` (see :class:`~sysid.training.windows.WindowInputs`).
    method, rtol, atol, max_steps, adjoint
        A torch method of :class:`~sysid.solvers.SolverConfig` and its settings (the fit's
        defaults); ignored when ``solver`` is given.
    substeps : int, optional
        Fixed-step methods: steps per sample gap (default ``solver.substeps``, else 1). Given
        separately from ``solver`` because a fit doubles it after a failed step.
    counter : StepCounter, optional
        Receives the number of function evaluations.
    solver : SolverConfig, optional
        All settings in one object (its ``step`` must be None: windows step per sample gap).

    Returns
    -------
    Tensor (W, H, S)
        States at every window sample (the first equals ``z0``).

    Raises
    ------
    ConfigError
        For a SciPy method or a ``step`` (the fit cannot differentiate through SciPy).
    SolverError
        On non-finite states or an exhausted step budget, with the time reached.

    Examples
    --------
    >>> class Decay(nn.Module):
    ...     def forward(self, t, z, u):
    ...         return -z
    >>> t = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    >>> z = solve_windows(Decay(), torch.ones(1, 1, dtype=torch.float64), t, substeps=4)
    >>> import math
    >>> abs(float(z[0, -1, 0]) - math.exp(-1.0)) < 1e-5  # 8 rk4 steps of 1/8
    True
    """
    if solver is None:
        solver = SolverConfig(method=method, rtol=rtol, atol=atol, max_steps=max_steps, adjoint=adjoint)
    if solver.backend != "torch" or solver.step is not None:
        raise ConfigError(
            f"solve_windows: windows are integrated in torch with substeps per sample gap; got "
            f"method={solver.method!r}, step={solver.step!r}. Use a torch method "
            "('rk4', 'dopri5', ...) and substeps=."
        )
    m = substeps if substeps is not None else solver.substeps
    counter = counter if counter is not None else StepCounter()
    if t.shape[1] < 2:
        return z0[:, None, :]
    if solver.method in TABLEAUS and not solver.adjoint:
        def counted(tt: torch.Tensor, z: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
            counter.add(1)
            return rhs(tt, z, u)

        zs = torch.stack(march(counted, z0, t, [m] * (t.shape[1] - 1), TABLEAUS[solver.method],
                               inputs=inputs, checkpoint=solver.checkpoint_steps), dim=1)
    else:
        zs = _on_clock(rhs, z0, t, inputs, solver, m, counter)
    return _check_finite(zs, t, solver.method)
