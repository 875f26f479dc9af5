"""SciPy integration of a plain ``f(t, y)``, guarded: the one place sysid calls ``solve_ivp``.

SciPy hangs when a right-hand side returns NaN, returns ``status = -1`` without raising on failure,
and has no work budget. :func:`solve_scipy` wraps the right-hand side in a finiteness check and an
evaluation budget and turns every failure into a :class:`~sysid.errors.SolverError` carrying the
time reached and a hint (an implicit method when an explicit one's steps collapse: stiffness).
``sysid.systems.integrate``, ``sysid.simulate`` with a SciPy method and the analysis all call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sysid import budget as time_budget
from sysid.errors import ConfigError, DataError, SolverError
from sysid.solvers.config import SolverConfig, default_solver
from sysid.solvers.times import check_times

__all__ = ["solve_scipy", "budget"]

_ALTERNATIVE = {"LSODA": "'Radau' or 'BDF'", "Radau": "'BDF' or 'LSODA'", "BDF": "'Radau' or 'LSODA'"}


def _spi() -> Any:
    """``scipy.integrate``, imported on first use (it costs ~0.2 s of start-up to every command
    that merely imports :mod:`sysid.solvers`)."""
    from scipy import integrate

    return integrate


class _Stop(Exception):
    """Raised inside the wrapped right-hand side to stop ``solve_ivp`` (which would hang on NaN)."""

    def __init__(self, t: float, y: np.ndarray, dy: np.ndarray | None) -> None:
        super().__init__(t)
        self.t, self.y, self.dy = t, y, dy


def budget(solver: SolverConfig, n_states: int) -> int:
    """Evaluations of the right-hand side one SciPy solve may make: ``max_steps * (12 + S)``."""
    return solver.max_steps * (12 + n_states)


def _cause(method: str) -> str:
    if method in _ALTERNATIVE:
        return "the problem is stiff or the solution blows up"
    return "the steps collapsed: the dynamics are stiff or the solution blows up"


def _remedy(method: str) -> str:
    if method in _ALTERNATIVE:
        alt = f"Try method={_ALTERNATIVE[method]}"
    else:
        alt = "Try method='Radau' or 'BDF' (implicit methods, for stiff dynamics)"
    return f"{alt}, looser rtol/atol, or check the model and the initial state"


def solve_scipy(
    f: Callable[[float, np.ndarray], Any],
    y0: Sequence[float] | np.ndarray,
    times: Sequence[float] | np.ndarray,
    solver: SolverConfig | None = None,
    *,
    context: str = "",
    states: Sequence[str] | None = None,
    time_units: str = "",
    dense_output: bool = False,
    events: Any = None,
    evaluate: bool = True,
    vectorized: bool = False,
) -> Any:
    """Integrate ``dy/dt = f(t, y)`` with :func:`scipy.integrate.solve_ivp`, guarded.

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt`` with ``y`` of shape ``(S,)`` (or ``(S, K)`` when ``vectorized``).
    y0 : array_like (S,)
        State at ``times[0]``.
    times : array_like
        Output times (at least 2, strictly increasing); the solve runs from the first to the last.
    solver : SolverConfig, optional
        A SciPy method with tolerances, ``max_step`` and ``max_steps``; default the analysis
        default (RK45, rtol 1e-8, atol 1e-10).
    context : str
        Prefix of error messages (e.g. ``"simulate (run 'a')"``).
    states : sequence of str, optional
        State names, to name the state in the message when the right-hand side fails.
    time_units : str
        Units of time, for messages.
    dense_output, events, vectorized
        Passed to ``solve_ivp``.
    evaluate : bool
        Return the solution at ``times`` (True; the first equals ``y0`` exactly), or at the
        solver's own steps between the first and last time (False, e.g. with ``dense_output``).

    Returns
    -------
    scipy.integrate OdeResult
        SciPy's result (``status`` 0 or 1: failures raise).

    Raises
    ------
    DataError
        For times that are not finite or not strictly increasing, or a non-finite ``y0``.
    ConfigError
        For a torch method.
    SolverError
        When the right-hand side returns NaN/inf, the work budget is exhausted or SciPy fails,
        with ``t_reached`` and a hint.
    """
    solver = solver if solver is not None else default_solver("analysis")
    prefix = f"{context}: " if context else ""
    if solver.backend != "scipy":
        raise ConfigError(f"{prefix}{solver.method!r} is a torch method; SciPy integrates with one "
                          f"of RK45, RK23, DOP853, LSODA, Radau, BDF.")
    t = check_times(times, context or "solve_scipy", minimum=2)
    y0 = np.asarray(y0, dtype=float).ravel()
    if not np.all(np.isfinite(y0)):
        raise DataError(f"{prefix}the initial state {y0.tolist()} contains NaN or inf.")
    limit = budget(solver, y0.size)
    seen = {"nfe": 0, "t": float(t[0])}
    # an explicit method's collapsing steps (stiffness) are seen early; implicit ones are the remedy
    pace = (time_budget.Pace(float(t[0]), float(t[-1]), limit) if not solver.implicit
            else time_budget.Pace(0.0, 0.0, limit))  # t1 <= t0: never hopeless

    def guarded(tt: float, y: np.ndarray) -> np.ndarray:
        time_budget.check("integration")  # max_time and stop requests hold inside long solves
        seen["nfe"] += 1
        if seen["nfe"] > limit or pace.hopeless(seen["nfe"], seen["t"]):
            raise _Stop(float(tt), np.array(y, dtype=float), None)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            dy = np.asarray(f(tt, y), dtype=float)
        if not np.all(np.isfinite(dy)):
            raise _Stop(float(tt), np.array(y, dtype=float), dy)
        seen["t"] = max(seen["t"], float(tt))
        return dy

    span = f"[{t[0]:g}, {t[-1]:g}] {time_units}".rstrip()
    max_step = np.inf if solver.max_step is None else solver.max_step
    try:
        sol = _spi().solve_ivp(guarded, (float(t[0]), float(t[-1])), y0, method=solver.method,
                             t_eval=t if evaluate else None, rtol=solver.rtol, atol=solver.atol,
                             max_step=max_step, dense_output=dense_output, events=events,
                             vectorized=vectorized)
    except _Stop as exc:
        if exc.dy is None and seen["nfe"] <= limit:
            raise SolverError(f"{prefix}integration stopped at t={exc.t:.6g}: "
                              f"{pace.message(seen['nfe'], seen['t'])}.", t_reached=seen["t"]) from None
        raise _stop_error(exc, prefix, span, solver, limit, states, seen["t"]) from None
    if sol.status < 0 or (evaluate and sol.y.shape[1] != t.size and sol.status == 0):
        reached = seen["t"]  # the furthest time evaluated (sol.t holds only the output times)
        raise SolverError(
            f"{prefix}integration failed at t={reached:.6g} of {span}: {sol.message} "
            f"({_cause(solver.method)}). {_remedy(solver.method)}.",
            t_reached=reached,
        )
    if evaluate and sol.y.shape[1]:
        sol.y[:, 0] = y0  # the solution at the first time is y0 exactly (SciPy may be 1 ulp off)
    return sol


def _stop_error(exc: _Stop, prefix: str, span: str, solver: SolverConfig, limit: int,
                states: Sequence[str] | None, reached: float) -> SolverError:
    y = exc.y[:, 0] if exc.y.ndim == 2 else exc.y
    if states is not None and len(states) == y.size:
        where = str(dict(zip(states, np.round(y, 6).tolist())))
    else:
        where = str(np.round(y[:8], 6).tolist()) + (f" ... ({y.size} values)" if y.size > 8 else "")
    if exc.dy is None:
        return SolverError(
            f"{prefix}integration stopped at t={exc.t:.6g} of {span}: more than {limit} evaluations "
            f"of the right-hand side (max_steps={solver.max_steps}); {_cause(solver.method)}. "
            f"{_remedy(solver.method)}, or raise max_steps.",
            t_reached=reached,
        )
    dy = exc.dy[:, 0] if exc.dy.ndim == 2 else exc.dy
    shown = (str(dy.tolist()) if dy.size <= 8 else
             f"at positions {np.flatnonzero(~np.isfinite(dy))[:5].tolist()} of {dy.size}")
    return SolverError(
        f"{prefix}the right-hand side returned non-finite values {shown} at t={exc.t:.6g} of "
        f"{span} (state {where}); the solution blew up or left the domain of the equations. "
        f"{_remedy(solver.method)}.",
        t_reached=reached,
    )
