"""Derivative-based warm start: smoothed finite differences, then regression of the vector field.

Before any trajectory is integrated, each measured state is smoothed by local polynomial fits
(Savitzky-Golay generalised to irregular grids and missing samples: a weighted least-squares
polynomial through the ``points`` nearest samples of the same run), which gives the state, its
first and its second time derivative at every sample. The vector field is then fitted to
``f(t, x, u) ~ dx/dt`` by least squares over all samples: cheap (one field evaluation per sample
and step, no solver) and, for physics and hybrid models, a direct least-squares estimate of the
parameters that lands the trajectory fit close to its optimum.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["local_polynomial", "smooth_runs", "regress_derivatives"]


def local_polynomial(t: np.ndarray, y: np.ndarray, mask: np.ndarray, points: int = 7,
                     degree: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, first and second derivative of local polynomial fits at every sample.

    Parameters
    ----------
    t : ndarray (N,)
        Sample times (increasing, irregular allowed).
    y : ndarray (N,)
        Values (anything where ``mask`` is False).
    mask : ndarray of bool (N,)
        Which samples are measured.
    points : int
        Samples per local fit (a window of consecutive samples centred where possible).
    degree : int
        Polynomial degree (>= 1; the second derivative is 0 for degree 1).

    Returns
    -------
    value, first, second : ndarray (N,)
        NaN where the window holds fewer than ``degree + 1`` measured samples.

    Examples
    --------
    >>> t = np.linspace(0, 1, 11)
    >>> v, d1, d2 = local_polynomial(t, t**2, np.ones(11, bool), points=5)
    >>> bool(np.allclose(d1, 2 * t) and np.allclose(d2, 2.0))
    True
    """
    n = len(t)
    out = np.full((3, n), np.nan)
    if n == 0:
        return out[0], out[1], out[2]
    p = min(points, n)
    half = p // 2
    lo = np.clip(np.arange(n) - half, 0, n - p)
    idx = lo[:, None] + np.arange(p)[None, :]  # (N, p)
    dt = t[idx] - t[:, None]
    span = np.abs(dt).max(axis=1)
    span = np.where(span > 0, span, 1.0)
    s = dt / span[:, None]
    w = mask[idx].astype(float)
    yy = np.where(mask[idx], y[idx], 0.0)
    A = np.stack([s**k for k in range(degree + 1)], axis=-1)  # (N, p, d+1)
    AtW = A.transpose(0, 2, 1) * w[:, None, :]
    M = AtW @ A + 1e-12 * np.eye(degree + 1)
    b = (AtW @ yy[:, :, None])[..., 0]
    enough = w.sum(axis=1) >= degree + 1
    coef = np.full((n, degree + 1), np.nan)
    if enough.any():
        coef[enough] = np.linalg.solve(M[enough], b[enough][..., None])[..., 0]
    out[0] = coef[:, 0]
    out[1] = coef[:, 1] / span if degree >= 1 else 0.0
    out[2] = 2.0 * coef[:, 2] / span**2 if degree >= 2 else np.where(enough, 0.0, np.nan)
    return out[0], out[1], out[2]


def smooth_runs(t: np.ndarray, y: np.ndarray, mask: np.ndarray, lengths: np.ndarray,
                points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`local_polynomial` for every run and state of padded arrays.

    Parameters
    ----------
    t : ndarray (R, N); y, mask : ndarray (R, N, S); lengths : ndarray (R,)

    Returns
    -------
    value, first, second : ndarray (R, N, S)
        Smoothed values and derivatives (degree 2 fits for values and first derivatives,
        degree 3 over a wider window for second derivatives); NaN on padding.
    """
    R, N, S = y.shape
    val = np.full((R, N, S), np.nan)
    d1 = np.full((R, N, S), np.nan)
    d2 = np.full((R, N, S), np.nan)
    for r in range(R):
        n = int(lengths[r])
        for j in range(S):
            v, a, _ = local_polynomial(t[r, :n], y[r, :n, j], mask[r, :n, j], points, 2)
            _, _, c = local_polynomial(t[r, :n], y[r, :n, j], mask[r, :n, j],
                                       points + points // 2 * 2, 3)
            val[r, :n, j], d1[r, :n, j], d2[r, :n, j] = v, a, c
    return val, d1, d2


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

    def snapshot() -> list[torch.Tensor]:
        return [p.detach().clone() for p in parameters]

    def restore(state: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, s in zip(parameters, state):
                p.copy_(s)

    with torch.no_grad():
        start = float(objective())
    best, best_state = start, snapshot()
    if not math.isfinite(start):
        return {"loss_before": start, "loss_after": start, "samples": float(len(t))}
    opt = torch.optim.Adam(parameters, lr=lr)
    for step in range(epochs):
        opt.zero_grad()
        loss = objective()
        value = float(loss.detach())
        if not math.isfinite(value):
            restore(best_state)
            break
        if value < best:
            best, best_state = value, snapshot()
        loss.backward()
        opt.step()
        for g in opt.param_groups:  # cosine decay to a tenth over the warm start
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step + 1) / epochs)))
    with torch.no_grad():
        final = float(objective())
    if math.isfinite(final) and final < best:
        best, best_state = final, snapshot()
    restore(best_state)
    if use_lbfgs:
        lbfgs = torch.optim.LBFGS(parameters, lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            lbfgs.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        try:
            lbfgs.step(closure)
        except RuntimeError:
            restore(best_state)
        with torch.no_grad():
            final = float(objective())
        if math.isfinite(final) and final < best:
            best = final
        else:
            restore(best_state)
    return {"loss_before": start, "loss_after": best, "samples": float(len(t))}
