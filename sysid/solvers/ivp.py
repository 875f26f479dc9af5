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

__all__ = ["solve_scipy", "solve_scipy_runs", "budget", "STACKED_METHODS"]

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


# ----------------------------------------------------------------------------------------------
# many runs in one solve

#: Explicit SciPy methods whose runs are integrated together (:func:`solve_scipy_runs`); implicit
#: ones keep one solve per run (a stacked Jacobian would couple the runs' Newton iterations).
STACKED_METHODS = ("RK45", "RK23", "DOP853")
#: Most runs in one stacked solve, and most output values (times x runs x states) it may hold.
STACK_RUNS = 256
STACK_VALUES = 4_000_000


def solve_scipy_runs(
    f_rows: Callable[[float, np.ndarray, np.ndarray], np.ndarray],
    y0: np.ndarray,
    times: Sequence[np.ndarray],
    solver: SolverConfig | None = None,
    *,
    context: str = "",
    ids: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    time_units: str = "",
    stack: bool = True,
) -> list[np.ndarray]:
    """Integrate many runs of the same dynamics, each from its own start on its own output times.

    With an explicit method (:data:`STACKED_METHODS`), runs are integrated together, up to
    :data:`STACK_RUNS` at a time, as one stacked system in time relative to each run's start: one
    ``solve_ivp`` whose right-hand side evaluates all of them in one call. SciPy's error norm is
    the root mean square over every component, so the tolerances are divided by the square root
    of the number of runs stacked: each run's own error norm then stays within ``rtol``/``atol``
    at every step, as in a solve of its own (the steps are those of the most demanding run). A
    stacked solve that fails is repeated run by run, so a failure names its run as before.
    Implicit methods solve run by run.

    Parameters
    ----------
    f_rows : callable
        ``f_rows(tau, Y, rows) -> dY``: the right-hand side of runs ``rows`` (indices, ``(K,)``)
        at time ``tau`` after each run's start, states ``Y`` ``(K, S)`` -> ``(K, S)``.
    y0 : ndarray (R, S)
        Initial states.
    times : sequence of ndarray
        Per run, its output times (absolute; the first is the run's start).
    solver : SolverConfig, optional
        A SciPy method (default the analysis default).
    context, ids, states, time_units
        For messages: prefix, run ids, state names, units of time.
    stack : bool
        False solves run by run whatever the method: for right-hand sides that are not smooth at
        each run's own times (inputs interpolated between samples kink or jump there, and a
        stacked solve would have to step through every run's kinks).

    Returns
    -------
    list of ndarray
        Per run, ``(N_r, S)`` states at its times (the first row is ``y0`` exactly).
    """
    solver = solver if solver is not None else default_solver("analysis")
    y0 = np.asarray(y0, dtype=float)
    n_runs, n_states = y0.shape
    ids = [str(i) for i in (ids if ids is not None else range(n_runs))]
    rel = [np.asarray(t, dtype=float) - float(t[0]) for t in times]
    out: list[np.ndarray | None] = [y0[r][None, :].copy() if len(rel[r]) == 1 else None
                                    for r in range(n_runs)]
    todo = [r for r in range(n_runs) if out[r] is None]
    if stack and solver.method in STACKED_METHODS and solver.backend == "scipy":
        for chunk in _stack_chunks(todo, rel, n_states):
            if len(chunk) > 1:
                got = _stacked(f_rows, y0, rel, chunk, solver, context, time_units)
                if got is not None:
                    for r, y in zip(chunk, got):
                        out[r] = y
    for r in todo:
        if out[r] is None:  # implicit methods, single runs and stacked solves that failed
            rows, t0 = np.array([r]), float(times[r][0])  # in absolute time, for the messages
            sol = solve_scipy(lambda t, y, rows=rows, t0=t0: _one_run(f_rows, t - t0, y, rows, n_states),
                              y0[r], times[r], solver, context=f"{context} (run {ids[r]!r})",
                              states=states, time_units=time_units, vectorized=True)
            out[r] = sol.y.T
    return out  # type: ignore[return-value]


def _one_run(f_rows: Callable, tau: float, y: np.ndarray, rows: np.ndarray, n_states: int) -> np.ndarray:
    """One run's right-hand side for ``solve_ivp``: ``y`` ``(S,)``, or ``(S, K)`` when SciPy
    evaluates K states at once (implicit methods' Jacobians)."""
    x = y.T if y.ndim == 2 else y[None, :]
    dx = np.asarray(f_rows(tau, x, np.repeat(rows, x.shape[0])), dtype=float)
    return dx.T if y.ndim == 2 else dx[0]


def _stack_chunks(todo: list[int], rel: list[np.ndarray], n_states: int) -> list[list[int]]:
    """Runs in groups for stacked solves: sorted by length and duration (so that runs on the same
    grid share one), each group at most :data:`STACK_RUNS` runs and :data:`STACK_VALUES` output
    values over the union of its grids."""
    order = sorted(todo, key=lambda r: (len(rel[r]), float(rel[r][-1])))
    chunks: list[list[int]] = []
    chunk: list[int] = []
    grid = np.empty(0)
    for r in order:
        merged = np.union1d(grid, rel[r])
        if chunk and (len(chunk) >= STACK_RUNS or merged.size * (len(chunk) + 1) * n_states > STACK_VALUES):
            chunks.append(chunk)
            chunk, merged = [], rel[r]
        chunk.append(r)
        grid = merged
    if chunk:
        chunks.append(chunk)
    return chunks


def _stacked(f_rows: Callable, y0: np.ndarray, rel: list[np.ndarray], chunk: list[int],
             solver: SolverConfig, context: str, time_units: str) -> list[np.ndarray] | None:
    """One stacked solve of the runs ``chunk``; None when it fails (the caller solves them one by
    one, for a message naming the run)."""
    import dataclasses

    rows = np.asarray(chunk)
    k, n_states = rows.size, y0.shape[1]
    grid = np.unique(np.concatenate([rel[r] for r in chunk]))
    shrink = float(np.sqrt(k))  # each run's own RMS error norm stays within the tolerances
    tight = dataclasses.replace(solver, rtol=max(solver.rtol / shrink, 1e-13), atol=solver.atol / shrink)

    def rhs(tau: float, y: np.ndarray) -> np.ndarray:
        return np.asarray(f_rows(tau, y.reshape(k, n_states), rows), dtype=float).ravel()

    try:
        sol = solve_scipy(rhs, y0[rows].ravel(), grid, tight, context=f"{context} ({k} runs stacked)",
                          time_units=time_units)
    except SolverError:
        return None
    values = sol.y.reshape(k, n_states, grid.size)
    out = []
    for i, r in enumerate(chunk):
        y = values[i][:, np.searchsorted(grid, rel[r])].T
        y[0] = y0[r]  # the first output is the initial state exactly
        out.append(y)
    return out
