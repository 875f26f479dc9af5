"""Fixed-step explicit Runge-Kutta stepping in plain torch, shared by single runs and windows.

One loop, :func:`march`, serves both torch integrators: :func:`sysid.solvers.solve` (one time grid
for a batch of runs) and :func:`sysid.solvers.solve_windows` (a time grid per window). It takes a
given number of equal steps in each interval between consecutive output times, so output times are
hit exactly (no interpolation), and calls the vector field once per stage for the whole batch
(PERFORMANCE.md: a hand-written batched RK4 costs 0.19-0.28x the torchdiffeq dopri5 loop).

The Butcher tableaus are the textbook ones (Hairer, Norsett & Wanner, *Solving Ordinary
Differential Equations I*, sec. II.1); "rk4" is the classical 1/6-1/3-1/3-1/6 rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import final

import torch

from sysid import budget as time_budget

__all__ = ["Tableau", "TABLEAUS", "rk_step", "march", "steps_per_gap", "grid_between"]

# rhs(t, z, u) -> dz/dt, with t of shape () or (B,), z (B, ...) and u the inputs or None
Rhs = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
# inputs at times t inside gap k (t of the shape of one time column), or None
GapInputs = Callable[[torch.Tensor, int], torch.Tensor]


@final
@dataclass(frozen=True, kw_only=True)
class Tableau:
    """An explicit Runge-Kutta method: stage times ``c``, stage weights ``a`` (lower triangle) and
    update weights ``b / denominator`` (integers over a common denominator, so RK4's update is
    computed as ``h / 6 * (k1 + 2 k2 + 2 k3 + k4)``)."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    denominator: float = 1.0


TABLEAUS = {
    "euler": Tableau(c=(0.0,), a=((),), b=(1.0,)),
    "midpoint": Tableau(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0)),
    "heun2": Tableau(c=(0.0, 1.0), a=((), (1.0,)), b=(1.0, 1.0), denominator=2.0),
    "heun3": Tableau(c=(0.0, 1.0 / 3.0, 2.0 / 3.0), a=((), (1.0 / 3.0,), (0.0, 2.0 / 3.0)),
                     b=(1.0, 0.0, 3.0), denominator=4.0),
    "rk4": Tableau(c=(0.0, 0.5, 0.5, 1.0), a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
                   b=(1.0, 2.0, 2.0, 1.0), denominator=6.0),
}


def _scaled(w: float, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return h * k if w == 1.0 else (w * h) * k


def rk_step(rhs: Rhs, t: torch.Tensor, h: torch.Tensor, z: torch.Tensor, tab: Tableau,
            inputs: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """One step of ``tab`` from ``(t, z)`` with step ``h`` (``t`` and ``h`` of shape () or (B,)).

    The inputs are evaluated once per distinct stage time (RK4's two midpoint stages share them).
    """
    hz = h[:, None] if h.ndim == 1 else h
    ks: list[torch.Tensor] = []
    times: dict[float, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for ci, ai in zip(tab.c, tab.a):
        if ci not in times:
            ti = t if ci == 0.0 else (t + h if ci == 1.0 else t + ci * h)
            times[ci] = (ti, inputs(ti) if inputs is not None else None)
        ti, ui = times[ci]
        zi = z
        for w, kj in zip(ai, ks):
            if w != 0.0:
                zi = zi + _scaled(w, hz, kj)
        ks.append(rhs(ti, zi, ui))
    acc: torch.Tensor | None = None
    for w, kj in zip(tab.b, ks):
        if w == 0.0:
            continue
        term = kj if w == 1.0 else w * kj
        acc = term if acc is None else acc + term
    assert acc is not None  # every tableau has a non-zero weight
    return z + (hz / tab.denominator) * acc if tab.denominator != 1.0 else z + hz * acc


def march(rhs: Rhs, z0: torch.Tensor, t: torch.Tensor, counts: Sequence[int], tab: Tableau, *,
          inputs: GapInputs | None = None) -> list[torch.Tensor]:
    """Step from ``z0`` at ``t[..., 0]`` through every output time ``t[..., k]``.

    Parameters
    ----------
    rhs : callable
        ``rhs(t, z, u) -> dz/dt``.
    z0 : Tensor
        State at the first time.
    t : Tensor (N,) or (B, N)
        Output times on the last axis: one grid for the batch, or one per batch row.
    counts : sequence of int
        Equal steps in each of the ``N - 1`` intervals.
    tab : Tableau
        The method.
    inputs : callable, optional
        ``inputs(t, k)``: the inputs at times ``t`` inside interval ``k``.

    Returns
    -------
    list of Tensor
        The state at every output time (the first is ``z0``).

    Notes
    -----
    The stage times and step sizes of the whole solve are made up front in a few vectorised
    operations. With one grid for the batch (``t`` 1-D) the step sizes are Python numbers and every
    update ``z + w h k`` is one ``torch.add(z, k, alpha=w * h)``; with a grid per row it is one
    ``torch.addcmul`` with the precomputed column ``w h``. That removes the ~20 small tensor
    operations per RK4 step that stepping with :func:`rk_step` costs, which dominate when the
    batch is small (validation runs) and are a visible share of a training step.
    """
    if t.ndim == 1:
        return _march_grid(rhs, z0, t, counts, tab, inputs)
    # the up-front tables hold a few tensors per step, made outside the budget checks: beyond
    # _ROWS_UP_FRONT steps (substeps=200000 took 88 s and GBs before the first step) step as below
    if t.ndim == 2 and sum(counts) <= _ROWS_UP_FRONT:
        return _march_rows(rhs, z0, t, counts, tab, inputs)
    dt = t[..., 1:] - t[..., :-1]
    z = z0
    out = [z0]
    for k, m in enumerate(counts):
        h = dt[..., k] / m
        u_at = None if inputs is None else (lambda tt, k=k: inputs(tt, k))
        for j in range(m):
            time_budget.check("integration")  # max_time and stop requests hold inside long solves
            tk = t[..., k] + dt[..., k] * (j / m)
            z = rk_step(rhs, tk, h, z, tab, u_at)
        out.append(z)
    return out


def _march_grid(rhs: Rhs, z0: torch.Tensor, t: torch.Tensor, counts: Sequence[int], tab: Tableau,
                inputs: GapInputs | None) -> list[torch.Tensor]:
    """:func:`march` on one time grid ``t (N,)``: float step sizes, stage times made up front."""
    cs = sorted(set(tab.c))
    which = [cs.index(c) for c in tab.c]
    tl = t.detach().tolist()
    plan: list[tuple[int, float, float]] = []  # (interval, step start, step size)
    for k, m in enumerate(counts):
        gap = tl[k + 1] - tl[k]
        plan += [(k, tl[k] + gap * (j / m), gap / m) for j in range(m)]
    stage_t = torch.tensor([[s + c * h for c in cs] for _, s, h in plan], dtype=t.dtype,
                           device=t.device).reshape(-1).unbind(0) if plan else ()
    weights = [(j, w / tab.denominator) for j, w in enumerate(tab.b) if w != 0.0]
    n_c = len(cs)
    z = z0
    out = [z0]
    for n, (k, _, h) in enumerate(plan):
        time_budget.check("integration")  # max_time and stop requests hold inside long solves
        times = stage_t[n * n_c:(n + 1) * n_c]
        us = [inputs(ti, k) for ti in times] if inputs is not None else None
        ks: list[torch.Tensor] = []
        for i, ai in enumerate(tab.a):
            zi = z
            for w, kj in zip(ai, ks):
                if w != 0.0:
                    zi = torch.add(zi, kj, alpha=w * h)
            ks.append(rhs(times[which[i]], zi, us[which[i]] if us is not None else None))
        for j, w in weights:
            z = torch.add(z, ks[j], alpha=w * h)
        if n + 1 == len(plan) or plan[n + 1][0] != k:
            out.append(z)
    return out


#: Most steps for which :func:`_march_rows` makes its tables up front.
_ROWS_UP_FRONT = 50_000


def _march_rows(rhs: Rhs, z0: torch.Tensor, t: torch.Tensor, counts: Sequence[int], tab: Tableau,
                inputs: GapInputs | None) -> list[torch.Tensor]:
    """:func:`march` with a grid per batch row, ``t (B, N)``: the stage times ``(B,)`` and the
    weighted step sizes ``w h (B, 1)`` of every step are made up front."""
    cs = sorted(set(tab.c))
    which = [cs.index(c) for c in tab.c]
    gap = [k for k, m in enumerate(counts) for _ in range(m)]
    if not gap:
        return [z0]
    frac = [j / m for m in counts for j in range(m)]
    inv = [1.0 / m for m in counts for _ in range(m)]
    B = t.shape[0]
    tt = t.detach()
    dt = (tt[:, 1:] - tt[:, :-1])[:, gap]  # (B, steps): the gap of each step
    tk = tt[:, gap] + dt * torch.tensor(frac, dtype=t.dtype, device=t.device)
    h = dt * torch.tensor(inv, dtype=t.dtype, device=t.device)
    c = torch.tensor(cs, dtype=t.dtype, device=t.device)
    stage_t = (tk.T[:, None, :] + c[None, :, None] * h.T[:, None, :]).reshape(-1, B).unbind(0)
    hT = h.T[..., None]  # (steps, B, 1)
    wanted = {w for ai in tab.a for w in ai if w != 0.0}
    wanted |= {w / tab.denominator for w in tab.b if w != 0.0}
    wh = {w: (hT if w == 1.0 else w * hT).unbind(0) for w in wanted}
    final = [(j, w / tab.denominator) for j, w in enumerate(tab.b) if w != 0.0]
    n_c = len(cs)
    z = z0
    out = [z0]
    for n, k in enumerate(gap):
        time_budget.check("integration")  # max_time and stop requests hold inside long solves
        times = stage_t[n * n_c:(n + 1) * n_c]
        us = [inputs(ti, k) for ti in times] if inputs is not None else None
        ks: list[torch.Tensor] = []
        for i, ai in enumerate(tab.a):
            zi = z
            for w, kj in zip(ai, ks):
                if w != 0.0:
                    zi = torch.addcmul(zi, wh[w][n], kj)
            ks.append(rhs(times[which[i]], zi, us[which[i]] if us is not None else None))
        for j, w in final:
            z = torch.addcmul(z, wh[w][n], ks[j])
        if n + 1 == len(gap) or gap[n + 1] != k:
            out.append(z)
    return out


def grid_between(grid: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The points of an increasing step ``grid`` from ``t[0]`` to ``t[-1]``, in that direction.

    A ``grid_constructor`` for torchdiffeq's fixed-grid solvers: the adjoint's backward pass asks
    for each output interval from its end to its start.
    """
    lo, hi = torch.minimum(t[0], t[-1]), torch.maximum(t[0], t[-1])
    part = grid[(grid >= lo) & (grid <= hi)]
    return part.flip(0) if bool(t[0] > t[-1]) else part


def steps_per_gap(t: Sequence[float], step: float | None, substeps: int) -> list[int]:
    """Steps in each interval of ``t``: ``substeps``, or ``ceil(gap / step)`` for a given ``step``
    (a gap within 1e-9 relative of a whole number of steps takes that number)."""
    if step is None:
        return [substeps] * (len(t) - 1)
    return [max(1, math.ceil((b - a) / step * (1.0 - 1e-9))) for a, b in zip(t[:-1], t[1:])]
