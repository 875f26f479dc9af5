"""Solver settings and a guarded torchdiffeq call: typed errors, a work budget, finiteness checks.

torchdiffeq reports failures as bare ``AssertionError`` s ("underflow in dt nan"), returns NaN
silently from fixed-step methods, and can loop for a very long time on a blow-up. :func:`solve`
wraps it so every failure is a :class:`~sysid.errors.SolverError` carrying the time reached.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torchdiffeq

from sysid.errors import ConfigError, SolverError

__all__ = ["SolverConfig", "solve", "SolveCounter", "ADAPTIVE_METHODS", "FIXED_METHODS"]

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("rk4", "euler", "midpoint", "heun2", "heun3", "explicit_adams", "implicit_adams")
# right-hand-side evaluations per step (upper bound, with the adaptive first-step guess)
_STAGES = {"dopri5": 7, "dopri8": 14, "bosh3": 4, "fehlberg2": 3, "adaptive_heun": 2, "rk4": 4,
           "euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "explicit_adams": 4, "implicit_adams": 8}

_HINT = ('Try SolverConfig(method="rk4", step=...) for a fixed step, looser rtol/atol, or (during '
         "training) a smaller learning rate.")


@dataclass(frozen=True, kw_only=True)
class SolverConfig:
    """How to integrate: method, tolerances, fixed step, work budget, adjoint.

    Parameters
    ----------
    method : str
        Adaptive: "dopri5" (default), "dopri8", "bosh3", "fehlberg2", "adaptive_heun". Fixed step:
        "rk4", "euler", "midpoint", "heun2", "heun3", "explicit_adams", "implicit_adams".
    rtol, atol : float
        Relative and absolute tolerances of adaptive methods (positive). The defaults 1e-4 / 1e-6
        suit float32 training; use tighter ones in float64 for reference-quality simulation.
    step : float or None
        Step of a fixed-step method, in the model's time units. ``None`` takes ``substeps`` steps
        per interval between consecutive output times (the data's own grid, or the union of the
        runs' grids in :func:`sysid.simulate`). Ignored by adaptive methods.
    substeps : int
        Fixed-step methods with ``step=None``: steps between two consecutive output times (>= 1).
    max_steps : int
        Work budget: at most this many steps per solve (adaptive methods count rejected steps
        too); exceeding it is a :class:`~sysid.errors.SolverError`, never a hang.
    adjoint : bool
        Differentiate with the adjoint method (``torchdiffeq.odeint_adjoint``): memory flat in the
        number of steps, somewhat slower for short horizons.

    Raises
    ------
    ConfigError
        For an unknown method (listing the valid ones) or an out-of-range value.

    Examples
    --------
    >>> SolverConfig(method="rk4", step=0.01).method
    'rk4'
    """

    method: str = "dopri5"
    rtol: float = 1e-4
    atol: float = 1e-6
    step: float | None = None
    substeps: int = 1
    max_steps: int = 100_000
    adjoint: bool = False

    def __post_init__(self) -> None:
        if self.method not in ADAPTIVE_METHODS + FIXED_METHODS:
            raise ConfigError(
                f"SolverConfig: unknown method {self.method!r}; adaptive methods are "
                f"{list(ADAPTIVE_METHODS)}, fixed-step methods {list(FIXED_METHODS)}."
            )
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ConfigError(f"SolverConfig: {name} must be a positive number; got {v!r}.")
            object.__setattr__(self, name, float(v))
        if self.step is not None:
            s = self.step
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s > 0):
                raise ConfigError(f"SolverConfig: step must be a positive number or None; got {s!r}.")
            object.__setattr__(self, "step", float(s))
        if isinstance(self.substeps, bool) or not isinstance(self.substeps, int) or self.substeps < 1:
            raise ConfigError(f"SolverConfig: substeps must be an integer >= 1; got {self.substeps!r}.")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ConfigError(f"SolverConfig: max_steps must be an integer >= 1; got {self.max_steps!r}.")
        if not isinstance(self.adjoint, bool):
            raise ConfigError(f"SolverConfig: adjoint must be True or False; got {self.adjoint!r}.")

    @property
    def adaptive(self) -> bool:
        """Whether the method chooses its own steps."""
        return self.method in ADAPTIVE_METHODS

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SolverConfig:
        """Settings from a mapping; unknown keys are a ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"SolverConfig: unknown keys {unknown}; valid keys are {sorted(known)}.")
        return cls(**dict(data))


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


def _reason(message: str) -> str:
    if "underflow in dt" in message:
        return ("the step size fell below the float resolution (the system became stiff or blew up)")
    if "max_num_steps" in message:
        return "the solver took more steps than max_steps"
    if "non-finite" in message:
        return "the state became non-finite (NaN or inf)"
    return f"torchdiffeq reported: {message}"


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

    Parameters
    ----------
    func : callable
        ``func(t, y) -> dy/dt`` with ``t`` a 0-d tensor and ``y`` shaped like ``y0``.
    y0 : Tensor
        Initial state at ``t[0]``, any shape (e.g. (R, S) for R runs).
    t : 1-D tensor or sequence
        Output times, strictly increasing; cast to ``y0.dtype``.
    solver : SolverConfig
        Method, tolerances, step and work budget.
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
    SolverError
        With ``t_reached`` when ``y0`` is not finite, the field returns NaN/inf, the step size
        underflows or the work budget is exhausted.
    """
    prefix = f"{context}: " if context else ""
    tt = torch.as_tensor(t, dtype=y0.dtype)
    if tt.ndim != 1 or tt.numel() == 0:
        raise ConfigError(f"{prefix}times must be a non-empty 1-D sequence; got shape {tuple(tt.shape)}.")
    if not bool(torch.isfinite(tt).all()):
        raise ConfigError(f"{prefix}times must be finite; got {tt.tolist()[:10]}...")
    if tt.numel() > 1 and not bool((tt[1:] > tt[:-1]).all()):
        k = int(torch.nonzero(tt[1:] <= tt[:-1])[0, 0])
        raise ConfigError(
            f"{prefix}times must be strictly increasing; time {float(tt[k + 1])} follows {float(tt[k])} "
            f"(positions {k + 1} and {k + 2})."
        )
    t0 = float(tt[0])
    if not bool(torch.isfinite(y0).all()):
        bad = torch.nonzero(~torch.isfinite(y0))[0].tolist()
        raise SolverError(
            f"{prefix}the initial state is not finite (NaN or inf at index {bad}); every state needs "
            "a finite value at the first time.",
            t_reached=t0,
        )
    if tt.numel() == 1:
        return y0.unsqueeze(0)
    span = float(tt[-1] - tt[0])
    options: dict[str, Any] = {}
    if solver.adaptive:
        options["max_num_steps"] = solver.max_steps
        if jump_times is not None:
            jt = torch.as_tensor(jump_times, dtype=y0.dtype).flatten()
            jt = torch.unique(jt[(jt > tt[0]) & (jt <= tt[-1])])  # the end too: never step past it
            if jt.numel():
                options["jump_t"] = jt
    else:
        n_steps = math.ceil(span / solver.step) if solver.step else tt.numel() - 1
        if n_steps > solver.max_steps:
            raise SolverError(
                f"{prefix}a fixed step of {solver.step} over [{t0}, {float(tt[-1])}] needs {n_steps} "
                f"steps, more than max_steps={solver.max_steps}. Raise max_steps or the step.",
                t_reached=t0,
            )
        if solver.step:
            options["step_size"] = solver.step
    # forward pass (and the adjoint's backward pass, which makes about as many evaluations)
    budget = (solver.max_steps * _STAGES[solver.method] + 20) * (2 if solver.adjoint else 1)
    cnt = counter if counter is not None else SolveCounter()
    cnt.nfe = 0
    cnt.t_reached = t0

    def rhs(tk: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cnt.nfe += 1
        tf = float(tk.detach())
        if tf > cnt.t_reached:
            cnt.t_reached = tf
        if cnt.nfe > budget:
            raise _Abort(f"more than {budget} right-hand-side evaluations (max_steps={solver.max_steps})", tf)
        dy = func(tk, y)
        if not bool(torch.isfinite(dy).all()):
            raise _Abort("the vector field returned NaN or inf (the state blew up or left the "
                         "region where the model is defined)", tf)
        return dy

    try:
        if solver.adjoint:
            out = torchdiffeq.odeint_adjoint(
                rhs, y0, tt, rtol=solver.rtol, atol=solver.atol, method=solver.method,
                options=options, adjoint_params=tuple(adjoint_params or ()),
                adjoint_options={"norm": "seminorm"} if solver.adaptive else None,
            )
        else:
            out = torchdiffeq.odeint(rhs, y0, tt, rtol=solver.rtol, atol=solver.atol,
                                     method=solver.method, options=options)
    except _Abort as exc:
        raise SolverError(
            f"{prefix}Integration failed at t={exc.t:.6g}: {exc.reason}. {_HINT}", t_reached=exc.t
        ) from None
    except AssertionError as exc:
        raise SolverError(
            f"{prefix}Integration failed at t={cnt.t_reached:.6g}: {_reason(str(exc))}. {_HINT}",
            t_reached=cnt.t_reached,
        ) from None
    if not bool(torch.isfinite(out).all()):
        raise SolverError(
            f"{prefix}Integration failed at t={cnt.t_reached:.6g}: the solution became non-finite. {_HINT}",
            t_reached=cnt.t_reached,
        )
    return out
