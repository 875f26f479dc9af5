"""torch integration of a batch of runs on one time grid: typed errors, a work budget, finiteness.

torchdiffeq reports failures as bare ``AssertionError`` s ("underflow in dt nan"), returns NaN
silently from fixed-step methods, and can loop for a very long time on a blow-up. :func:`solve`
wraps it so every failure is a :class:`~sysid.errors.SolverError` carrying the time reached. The
explicit fixed-step methods (rk4, euler, midpoint, heun2, heun3) are stepped by
:func:`sysid.solvers.steps.march`, the loop the windows of a fit use too. torch is imported by
:func:`solve`, not with this module: :func:`solve_numpy` integrates NumPy fields without it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sysid import budget as time_budget
from sysid.errors import ConfigError, SolverError
from sysid.solvers.config import STIFF_REMEDY, SolverConfig
from sysid.solvers.dopri import StepAbort, dopri5, run_norm, runs_of
from sysid.solvers.times import check_times

if TYPE_CHECKING:  # annotations only
    import torch

__all__ = ["solve", "solve_numpy", "SolveCounter"]

# right-hand-side evaluations per step (upper bound, with the adaptive first-step guess)
_STAGES = {"dopri5": 7, "dopri8": 14, "bosh3": 4, "fehlberg2": 3, "adaptive_heun": 2, "rk4": 4,
           "euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3}

_HINT = ('Try SolverConfig(method="rk4", step=...) for a fixed step, looser rtol/atol, or (during '
         "training) a smaller learning rate.")


class SolveCounter:
    """Right-hand-side evaluations and the furthest time reached by the last :func:`solve`."""

    def __init__(self) -> None:
        self.nfe = 0
        self.t_reached = -math.inf


class _Abort(Exception):
    def __init__(self, reason: str, t: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.t = t


def _reason(message: str, stiff: bool) -> str:
    if "underflow in dt" in message:
        why = "the step size fell below the float resolution (the system became stiff or blew up)"
        return f"{why}; {STIFF_REMEDY}" if stiff else why
    if "max_num_steps" in message:
        why = "the solver took more steps than max_steps"
        return f"{why}; {STIFF_REMEDY}" if stiff else why
    if "non-finite" in message:
        return "the state became non-finite (NaN or inf)"
    return f"torchdiffeq reported: {message}"


def _grid(tt: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Every step's start time and the last output time (the grid of a fixed-step solve)."""
    import torch

    pts = [tt[k] + (tt[k + 1] - tt[k]) * (j / m) for k, m in enumerate(counts) for j in range(m)]
    return torch.stack([*pts, tt[-1]])


def _guarded(func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cnt: SolveCounter,
             budget: int, max_steps: int,
             pace: time_budget.Pace | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    import torch

    def rhs(tk: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cnt.nfe += 1
        tf = float(tk.detach())
        if tf > cnt.t_reached:
            cnt.t_reached = tf
        time_budget.check("integration")  # max_time and stop requests hold inside long solves
        if cnt.nfe > budget:
            raise _Abort(f"more than {budget} right-hand-side evaluations (max_steps={max_steps}); "
                         f"{STIFF_REMEDY}", tf)
        if pace is not None and pace.hopeless(cnt.nfe, cnt.t_reached):  # collapsing steps, early
            raise _Abort(pace.message(cnt.nfe, cnt.t_reached), tf)
        dy = func(tk, y)
        if not bool(torch.isfinite(dy).all()):
            raise _Abort("the vector field returned NaN or inf (the state blew up or left the "
                         "region where the model is defined)", tf)
        return dy

    return rhs


def _torchdiffeq(rhs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor,
                 tt: torch.Tensor, solver: SolverConfig, options: dict[str, Any],
                 adjoint_params: Sequence[torch.Tensor] | None) -> torch.Tensor:
    import torchdiffeq  # here, not at import: it imports scipy.integrate (start-up of every command)

    if solver.adjoint:
        return torchdiffeq.odeint_adjoint(
            rhs, y0, tt, rtol=solver.rtol, atol=solver.atol, method=solver.method,
            options=options, adjoint_params=tuple(adjoint_params or ()),
            adjoint_options={"norm": "seminorm"} if solver.adaptive else None,
        )
    return torchdiffeq.odeint(rhs, y0, tt, rtol=solver.rtol, atol=solver.atol,
                              method=solver.method, options=options)


def _check_budget(solver: SolverConfig, tt: torch.Tensor, counts: list[int], prefix: str) -> None:
    n_steps = sum(counts)
    if n_steps > solver.max_steps:
        size = f"a fixed step of {solver.step}" if solver.step else f"{solver.substeps} steps per interval"
        raise SolverError(
            f"{prefix}{size} over [{float(tt[0])}, {float(tt[-1])}] needs {n_steps} steps, more "
            f"than max_steps={solver.max_steps}. Raise max_steps or the step.",
            t_reached=float(tt[0]),
        )


def _options(solver: SolverConfig, tt: torch.Tensor, jump_times: Any, counts: list[int],
             runs: int) -> dict[str, Any]:
    """torchdiffeq options: the budget, the error norm of ``runs`` runs (each run's own within
    the tolerances, :func:`sysid.solvers.dopri.run_norm`, as sysid's dopri5) and the input jumps;
    or the fixed-step grid."""
    import torch

    from sysid.solvers.steps import grid_between

    if not solver.adaptive:  # (with the adjoint) the grid of the forward and of each backward interval
        grid = _grid(tt, counts)
        return {"perturb": True, "grid_constructor": lambda f, y, t: grid_between(grid, t)}
    options: dict[str, Any] = {"max_num_steps": solver.max_steps,
                               "norm": functools.partial(run_norm, runs=runs)}
    if jump_times is not None:
        jt = torch.as_tensor(jump_times, dtype=tt.dtype).flatten()
        jt = torch.unique(jt[(jt > tt[0]) & (jt <= tt[-1])])  # the end too: never step past it
        if jt.numel():
            options["jump_t"] = jt
    return options


def _fixed(func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor,
           tt: torch.Tensor, counts: list[int], method: str, cnt: SolveCounter,
           prefix: str, checkpoint: int | None = None) -> torch.Tensor:
    """sysid's own explicit Runge-Kutta steps; finiteness is checked once at the end (fixed steps
    cannot loop, and NaN propagates), which spares a synchronisation per evaluation."""
    import torch

    from sysid.solvers.steps import TABLEAUS, march

    tab = TABLEAUS[method]
    out = torch.stack(march(lambda s, y, u: func(s, y), y0, tt, counts, tab, checkpoint=checkpoint))
    cnt.nfe = sum(counts) * len(tab.c)
    finite = torch.isfinite(out.detach().reshape(len(tt), -1)).all(dim=1)
    if not bool(finite.all()):
        k = int(torch.nonzero(~finite)[0, 0])
        lo, hi = float(tt[k - 1]), float(tt[k])
        cnt.t_reached = lo
        raise SolverError(
            f"{prefix}Integration failed at t={lo:.6g}: the vector field returned NaN or inf between "
            f"t={lo:.6g} and t={hi:.6g} (the state blew up or left the region where the model is "
            f"defined). {_HINT}",
            t_reached=lo,
        )
    cnt.t_reached = float(tt[-1])
    return out


def _lean(func: Callable[[Any, Any], Any], y0: Any, grid: Sequence[float] | np.ndarray, solver: SolverConfig,
          budget: int, jump_times: Any, pace: time_budget.Pace | None, cnt: SolveCounter,
          prefix: str, out: np.ndarray | None = None,
          into: Callable[[float, np.ndarray, np.ndarray], None] | None = None) -> Any:
    """dopri5 without a gradient: sysid's lean stepper (:mod:`sysid.solvers.dopri`), the same
    steps, errors and messages as the torchdiffeq path at a fraction of its work per step."""
    jumps = () if jump_times is None else np.asarray(jump_times, dtype=float).ravel().tolist()
    try:
        out, cnt.nfe, cnt.t_reached = dopri5(func, y0, grid, rtol=solver.rtol, atol=solver.atol,
                                             max_steps=solver.max_steps, budget=budget, jumps=jumps,
                                             pace=pace, out=out, into=into)
    except StepAbort as exc:
        cnt.t_reached = exc.t
        raise SolverError(
            f"{prefix}Integration failed at t={exc.t:.6g}: {exc.reason}. {_HINT}", t_reached=exc.t
        ) from None
    return out


def solve_numpy(
    func: Callable[[float, np.ndarray], np.ndarray],
    y0: np.ndarray,
    t: Sequence[float] | np.ndarray,
    solver: SolverConfig = SolverConfig(),
    *,
    counter: SolveCounter | None = None,
    context: str = "",
    jump_times: Sequence[float] | np.ndarray | None = None,
    out: np.ndarray | None = None,
    into: Callable[[float, np.ndarray, np.ndarray], None] | None = None,
) -> np.ndarray:
    """:func:`solve` for a field evaluated by NumPy: ``dopri5`` by sysid's lean stepper.

    The same steps, error control, output times, jumps, budget and SolverErrors as :func:`solve`
    with ``dopri5`` and no gradient, on float64 NumPy arrays: a batch of runs in one vectorised
    solve with no torch dispatch per evaluation (``simulate`` uses it for a model whose NumPy copy
    agrees with it; issue #13).

    Parameters
    ----------
    func : callable
        ``func(t, y) -> dy/dt`` with ``t`` a float and ``y`` a float64 array shaped like ``y0``.
    y0 : numpy.ndarray
        Initial state at ``t[0]``, any shape (e.g. (R, S) for R runs).
    t : 1-D array or sequence
        Output times, strictly increasing.
    solver : SolverConfig
        Must be ``dopri5`` without the adjoint (tolerances and ``max_steps`` are used).
    counter, context, jump_times
        As for :func:`solve`.
    out : numpy.ndarray, optional
        A float64 array ``(len(t), *y0.shape)``, of any strides, to write the solution into
        (e.g. a view of the caller's final layout: ``simulate`` writes each state's runs
        straight into its dataset's block, with no copy of a large result).
    into : callable, optional
        ``func`` in place: ``into(t, y, out)`` writes ``func(t, y)`` into ``out``, a C-contiguous
        float64 array shaped like ``y0``; the stepper evaluates its stages through it (no
        allocation per evaluation; a network's in-place form,
        :func:`sysid.models.numpy_fields.in_place`). It must be the same function as ``func``.

    Returns
    -------
    numpy.ndarray
        ``(len(t), *y0.shape)``, float64 (``out`` when given).

    Raises
    ------
    DataError
        For times that are not finite or not strictly increasing.
    ConfigError
        For another method, the adjoint, or an ``out`` of another dtype or shape.
    SolverError
        As :func:`solve`.
    """
    prefix = f"{context}: " if context else ""
    if solver.method != "dopri5" or solver.adjoint:
        raise ConfigError(f"{prefix}solve_numpy integrates with dopri5 without the adjoint; got "
                          f"method={solver.method!r}, adjoint={solver.adjoint}. Use solve() for the others.")
    times = check_times(t, context or "solve")
    y = np.asarray(y0, dtype=float)
    t0 = float(times[0])
    if out is not None and (out.dtype != np.float64 or out.shape != (len(times), *y.shape)):
        raise ConfigError(f"{prefix}out must be a float64 array of shape {(len(times), *y.shape)}; got "
                          f"{out.dtype} {out.shape}.")
    if not np.isfinite(y).all():
        bad = np.argwhere(~np.isfinite(y))[0].tolist()
        raise SolverError(
            f"{prefix}the initial state is not finite (NaN or inf at index {bad}); every state needs "
            "a finite value at the first time.",
            t_reached=t0,
        )
    if len(times) == 1:
        if out is not None:
            out[0] = y
            return out
        return y[None].copy()
    budget = solver.max_steps * _STAGES[solver.method] + 20
    cnt = counter if counter is not None else SolveCounter()
    cnt.nfe, cnt.t_reached = 0, t0
    pace = time_budget.Pace(t0, float(times[-1]), budget)
    return _lean(func, y, times, solver, budget, jump_times, pace, cnt, prefix, out, into)


def solve(
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t: torch.Tensor | Sequence[float],
    solver: SolverConfig = SolverConfig(),
    *,
    adjoint_params: Sequence[torch.Tensor] | None = None,
    counter: SolveCounter | None = None,
    context: str = "",
    jump_times: torch.Tensor | Sequence[float] | None = None,
) -> torch.Tensor:
    """Integrate ``dy/dt = func(t, y)`` from ``y0`` and return ``y`` at the times ``t``.

    With gradients off (``torch.no_grad``) and no adjoint, ``dopri5`` runs sysid's lean stepper
    (:mod:`sysid.solvers.dopri`: the steps, output values and errors of SciPy's ``RK45`` at the
    same tolerances, a fraction of torchdiffeq's work per step); with gradients, torchdiffeq.

    Parameters
    ----------
    func : callable
        ``func(t, y) -> dy/dt`` with ``t`` a 0-d tensor and ``y`` shaped like ``y0``.
    y0 : Tensor
        Initial state at ``t[0]``, any shape (e.g. (R, S) for R runs).
    t : 1-D tensor or sequence
        Output times, strictly increasing; cast to ``y0.dtype``.
    solver : SolverConfig
        A torch method, tolerances, step and work budget. Fixed-step methods take ``substeps``
        equal steps per output interval (or ``ceil(gap / step)``) and hit every output time.
    adjoint_params : sequence of tensors, optional
        Parameters to differentiate with the adjoint method (``solver.adjoint``); default none.
    counter : SolveCounter, optional
        Filled with the number of evaluations and the furthest time reached.
    context : str
        Prefix of error messages (e.g. "simulate").
    jump_times : 1-D tensor or sequence, optional
        Times where ``func`` jumps or kinks (input samples under zero-order hold / linear
        interpolation). Adaptive methods step exactly onto them and evaluate the left and right
        limits (torchdiffeq's ``jump_t``), instead of shrinking the step to cross them. Ignored by
        fixed-step methods.

    Returns
    -------
    Tensor
        ``(len(t), *y0.shape)``.

    Raises
    ------
    DataError
        For times that are not finite or not strictly increasing.
    ConfigError
        For a SciPy method (use :func:`sysid.solvers.solve_ivp`).
    SolverError
        With ``t_reached`` when ``y0`` is not finite, the field returns NaN/inf, the step size
        underflows or the work budget is exhausted.
    """
    import torch

    from sysid.solvers.steps import TABLEAUS, steps_per_gap

    prefix = f"{context}: " if context else ""
    if solver.backend != "torch":
        raise ConfigError(f"{prefix}{solver.method!r} is a SciPy method; this solve runs in torch. "
                          "Use sysid.solvers.solve_scipy, or a torch method such as 'dopri5'.")
    times = check_times(t, context or "solve")
    tt = torch.as_tensor(t, dtype=y0.dtype)
    t0 = float(times[0])
    if not bool(torch.isfinite(y0).all()):
        bad = torch.nonzero(~torch.isfinite(y0))[0].tolist()
        raise SolverError(
            f"{prefix}the initial state is not finite (NaN or inf at index {bad}); every state needs "
            "a finite value at the first time.",
            t_reached=t0,
        )
    if tt.numel() == 1:
        return y0.unsqueeze(0)
    counts = [] if solver.adaptive else steps_per_gap(times.tolist(), solver.step, solver.substeps)
    _check_budget(solver, tt, counts, prefix)
    # forward pass (and the adjoint's backward pass, which makes about as many evaluations)
    budget = (solver.max_steps * _STAGES[solver.method] + 20) * (2 if solver.adjoint else 1)
    cnt = counter if counter is not None else SolveCounter()
    cnt.nfe = 0
    cnt.t_reached = t0
    if solver.method in TABLEAUS and not solver.adjoint:
        return _fixed(func, y0, tt, counts, solver.method, cnt, prefix, solver.checkpoint_steps)
    # the pace is judged on forward solves only (the adjoint's backward pass runs back in time)
    pace = None if solver.adjoint else time_budget.Pace(t0, float(times[-1]), budget)
    if solver.method == "dopri5" and not solver.adjoint and not torch.is_grad_enabled():
        return _lean(func, y0, [float(s) for s in tt.tolist()], solver, budget, jump_times, pace, cnt, prefix)
    rhs = _guarded(func, cnt, budget, solver.max_steps, pace)
    try:
        options = _options(solver, tt, jump_times, counts, runs_of(y0.shape))
        out = _torchdiffeq(rhs, y0, tt, solver, options, adjoint_params)
    except _Abort as exc:
        raise SolverError(
            f"{prefix}Integration failed at t={exc.t:.6g}: {exc.reason}. {_HINT}", t_reached=exc.t
        ) from None
    except AssertionError as exc:
        raise SolverError(
            f"{prefix}Integration failed at t={cnt.t_reached:.6g}: "
            f"{_reason(str(exc), solver.adaptive)}. {_HINT}",
            t_reached=cnt.t_reached,
        ) from None
    if not bool(torch.isfinite(out).all()):
        raise SolverError(
            f"{prefix}Integration failed at t={cnt.t_reached:.6g}: the solution became non-finite. {_HINT}",
            t_reached=cnt.t_reached,
        )
    return out
