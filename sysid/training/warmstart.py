"""Derivative-based warm start: smoothed finite differences, then regression of the vector field.

Before any trajectory is integrated, each measured state is smoothed by local polynomial fits
(:mod:`sysid.data.smoothing`), which gives the state, its first and its second time derivative
at every sample. The vector field is then fitted to
``f(t, x, u) ~ dx/dt`` by least squares over all samples: cheap (one field evaluation per sample
and step, no solver) and, for physics and hybrid models, a direct least-squares estimate of the
parameters that lands the trajectory fit close to its optimum.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from sysid import budget as time_budget
from sysid.data.smoothing import local_polynomial, smooth_runs

__all__ = ["local_polynomial", "smooth_runs", "regress_derivatives"]  # the first two re-exported


def regress_derivatives(rhs: nn.Module, t: torch.Tensor, z: torch.Tensor, u: torch.Tensor | None,
                        dz: torch.Tensor, *, epochs: int, lr: float,
                        parameters: list[nn.Parameter], use_lbfgs: bool,
                        penalty: Callable[[], torch.Tensor] | None = None) -> dict[str, float]:
    """Fit the scaled field ``rhs(t, z, u)`` to scaled derivatives ``dz`` by least squares.

    Parameters
    ----------
    rhs : nn.Module
        The field in scaled coordinates (see :class:`~sysid.training.loss.ScaledRhs`).
    t : Tensor (M,); z : Tensor (M, S); u : Tensor (M, I) or None
        Samples (smoothed states) where every state is known.
    dz : Tensor (M, S)
        Smoothed derivatives of the scaled states (per time unit).
    epochs, lr : int, float
        Adam steps and learning rate.
    parameters : list of nn.Parameter
        What to fit (the field's trainable tensors).
    use_lbfgs : bool
        Finish with L-BFGS (few parameters: physics and small hybrid models).
    penalty : callable, optional
        An extra term added to the objective (the hybrid models' neural penalty).

    Returns
    -------
    dict
        ``{"loss_before", "loss_after", "samples"}``; the parameters are left at the best
        state found (never worse than the start).
    """
    weight = 1.0 / dz.pow(2).mean(dim=0).clamp(min=1e-12)

    def objective() -> torch.Tensor:
        err = rhs(t, z, u) - dz
        value = (err.pow(2) * weight).mean()
        return value + penalty() if penalty is not None else value

    with torch.no_grad():
        start = float(objective())
    if not math.isfinite(start):
        return {"loss_before": start, "loss_after": start, "samples": float(len(t))}
    best, best_state = _adam(objective, parameters, epochs, lr, start)
    if use_lbfgs and not time_budget.expired():
        best = _lbfgs(objective, parameters, best, best_state)
    return {"loss_before": start, "loss_after": best, "samples": float(len(t))}


def _snapshot(parameters: list[nn.Parameter],
              into: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """A copy of the parameters (into ``into`` when given: one multi-tensor copy, no new tensors)."""
    if into is None:
        return [p.detach().clone() for p in parameters]
    with torch.no_grad():
        torch._foreach_copy_(into, [p.detach() for p in parameters])
    return into


def _restore(parameters: list[nn.Parameter], state: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, s in zip(parameters, state):
            p.copy_(s)


def _adam(objective: Callable[[], torch.Tensor], parameters: list[nn.Parameter], epochs: int,
          lr: float, start: float) -> tuple[float, list[torch.Tensor]]:
    """Adam with cosine decay to a tenth; the parameters end at the best state seen, returned
    with its objective value."""
    best, best_state = start, _snapshot(parameters)
    opt = torch.optim.Adam(parameters, lr=lr, foreach=True)  # one update op for all tensors
    for step in range(epochs):
        if time_budget.expired():  # max_time or a stop request: keep the best state so far
            break
        opt.zero_grad()
        loss = objective()
        value = float(loss.detach())
        if not math.isfinite(value):
            _restore(parameters, best_state)
            break
        if value < best:
            best, best_state = value, _snapshot(parameters, best_state)
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step + 1) / epochs)))
    with torch.no_grad():
        final = float(objective())
    if math.isfinite(final) and final < best:
        best, best_state = final, _snapshot(parameters)
    _restore(parameters, best_state)
    return best, best_state


def _lbfgs(objective: Callable[[], torch.Tensor], parameters: list[nn.Parameter], best: float,
           best_state: list[torch.Tensor]) -> float:
    """L-BFGS from the best state; kept only when it lowers the objective."""
    lbfgs = torch.optim.LBFGS(parameters, lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        time_budget.check("warm start")  # a spent budget ends L-BFGS (restored below)
        lbfgs.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    try:
        lbfgs.step(closure)
    except RuntimeError:
        _restore(parameters, best_state)
    with torch.no_grad():
        final = float(objective())
    if math.isfinite(final) and final < best:
        return final
    _restore(parameters, best_state)
    return best
