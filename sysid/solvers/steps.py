"""Fixed-step explicit Runge-Kutta stepping in plain torch, shared by single runs and windows.

One loop, :func:`march`, serves both torch integrators: :func:`sysid.solvers.solve` (one time grid
for a batch of runs) and :func:`sysid.solvers.solve_windows` (a time grid per window). It takes a
given number of equal steps in each interval between consecutive output times, so output times are
hit exactly (no interpolation), and calls the vector field once per stage for the whole batch
(PERFORMANCE.md: a hand-written batched RK4 costs 0.19-0.28x the torchdiffeq dopri5 loop).

:func:`march_numpy` is the same stepping on float64 NumPy arrays with a grid per row, for small
batches without a gradient (a fit's held-out checks), where torch's dispatch per operation costs
more than the arithmetic.

The Butcher tableaus are the textbook ones (Hairer, Norsett & Wanner, *Solving Ordinary
Differential Equations I*, sec. II.1); "rk4" is the classical 1/6-1/3-1/3-1/6 rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import final

import numpy as np
import torch

from sysid import budget as time_budget

__all__ = ["Tableau", "TABLEAUS", "rk_step", "march", "march_numpy", "steps_per_gap", "grid_between"]

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
          inputs: GapInputs | None = None, checkpoint: int | None = None) -> list[torch.Tensor]:
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
    checkpoint : int, optional
        With gradients: run the steps in segments of this many under
        :func:`torch.utils.checkpoint.checkpoint`, which keeps only each segment's first state
        and the output states and recomputes a segment's steps during the backward pass (memory
        bounded by one segment's activations, for about one more forward pass of time). ``t`` 1-D
        or 2-D.

    Returns
    -------
    list of Tensor
        The state at every output time (the first is ``z0``).

    Notes
    -----
    The stage times and step sizes of each output interval are made up front in a few vectorised
    operations (memory of the order of the output, whatever the substeps). With one grid for the batch (``t`` 1-D) the step sizes are Python numbers and every
    update ``z + w h k`` is one ``torch.add(z, k, alpha=w * h)``; with a grid per row it is one
    ``torch.addcmul`` with the precomputed column ``w h``. That removes the ~20 small tensor
    operations per RK4 step that stepping with :func:`rk_step` costs, which dominate when the
    batch is small (validation runs) and are a visible share of a training step.
    """
    if t.ndim == 1:
        return _march_grid(rhs, z0, t, counts, tab, inputs, checkpoint)
    if t.ndim == 2:  # its tables are made per output interval, not per step (substeps=200000
        # once spent 88 s and GBs on tables of every step before the first budget check)
        return _march_rows(rhs, z0, t, counts, tab, inputs, checkpoint)
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
                inputs: GapInputs | None, checkpoint: int | None) -> list[torch.Tensor]:
    """:func:`march` on one time grid ``t (N,)``: float step sizes; the stage times of each
    interval's first step are made up front (later substeps add ``j h``)."""
    cs = sorted(set(tab.c))
    which = [cs.index(c) for c in tab.c]
    tl = t.detach().tolist()
    hs = [(tl[k + 1] - tl[k]) / m for k, m in enumerate(counts)]
    first = torch.tensor([[tl[k] + c * h for c in cs] for k, h in enumerate(hs)], dtype=t.dtype,
                         device=t.device) if hs else None
    starts = first.unbind(0) if first is not None else ()
    weights = [(j, w / tab.denominator) for j, w in enumerate(tab.b) if w != 0.0]
    offsets = torch.tensor([c for c in cs], dtype=t.dtype, device=t.device)

    def step(k: int, j: int, z: torch.Tensor) -> torch.Tensor:
        h = hs[k]
        times = (starts[k] if j == 0 else (tl[k] + j * h) + offsets * h).unbind(0)
        us = [inputs(ti, k) for ti in times] if inputs is not None else None
        ks: list[torch.Tensor] = []
        for i, ai in enumerate(tab.a):
            zi = z
            for w, kj in zip(ai, ks):
                if w != 0.0:
                    zi = torch.add(zi, kj, alpha=w * h)
            ks.append(rhs(times[which[i]], zi, us[which[i]] if us is not None else None))
        for j2, w in weights:
            z = torch.add(z, ks[j2], alpha=w * h)
        return z

    return _drive(step, z0, counts, checkpoint)


def _march_rows(rhs: Rhs, z0: torch.Tensor, t: torch.Tensor, counts: Sequence[int], tab: Tableau,
                inputs: GapInputs | None, checkpoint: int | None) -> list[torch.Tensor]:
    """:func:`march` with a grid per batch row, ``t (B, N)``: the stage times ``(C, B)`` of each
    interval's first step and the weighted step columns ``w h (B, 1)`` of each interval are made
    up front (memory of the order of the output, not of the number of steps)."""
    cs = sorted(set(tab.c))
    which = [cs.index(c) for c in tab.c]
    if not counts:
        return [z0]
    tt = t.detach()
    m = torch.tensor(list(counts), dtype=t.dtype, device=t.device)
    h = (tt[:, 1:] - tt[:, :-1]) / m  # (B, N-1): the step size in each interval
    c = torch.tensor(cs, dtype=t.dtype, device=t.device)
    starts = (tt[:, :-1].T[:, None, :] + c[None, :, None] * h.T[:, None, :]).unbind(0)  # (C, B)
    hT = h.T[..., None]  # (N-1, B, 1)
    hs = hT.unbind(0)
    wanted = {w for ai in tab.a for w in ai if w != 0.0}
    wanted |= {w / tab.denominator for w in tab.b if w != 0.0}
    wh = {w: (hT if w == 1.0 else w * hT).unbind(0) for w in wanted}
    final = [(j, w / tab.denominator) for j, w in enumerate(tab.b) if w != 0.0]

    def step(k: int, j: int, z: torch.Tensor) -> torch.Tensor:
        times = (starts[k] if j == 0 else starts[k] + j * hs[k][:, 0]).unbind(0)
        us = [inputs(ti, k) for ti in times] if inputs is not None else None
        ks: list[torch.Tensor] = []
        for i, ai in enumerate(tab.a):
            zi = z
            for w, kj in zip(ai, ks):
                if w != 0.0:
                    zi = torch.addcmul(zi, wh[w][k], kj)
            ks.append(rhs(times[which[i]], zi, us[which[i]] if us is not None else None))
        for j2, w in final:
            z = torch.addcmul(z, wh[w][k], ks[j2])
        return z

    return _drive(step, z0, counts, checkpoint)


def _drive(step: Callable[[int, int, torch.Tensor], torch.Tensor], z0: torch.Tensor,
           counts: Sequence[int], checkpoint: int | None) -> list[torch.Tensor]:
    """Run ``step(k, j, z)`` for substep ``j`` of every interval ``k`` and collect the state at
    the end of each interval; with gradients and ``checkpoint``, in checkpointed segments of that
    many steps."""
    out = [z0]
    z = z0
    if checkpoint is None or not torch.is_grad_enabled():
        for k, m in enumerate(counts):
            for j in range(m):
                time_budget.check("integration")  # max_time and stop requests hold in long solves
                z = step(k, j, z)
            out.append(z)
        return out
    from torch.utils.checkpoint import checkpoint as run_checkpointed

    def segment(z: torch.Tensor, k0: int, j0: int, n: int) -> tuple[torch.Tensor, ...]:
        """``n`` steps from substep ``j0`` of interval ``k0``; the states at interval ends."""
        kept = []
        k, j = k0, j0
        for _ in range(n):
            time_budget.check("integration")
            z = step(k, j, z)
            j += 1
            if j == counts[k]:
                kept.append(z)
                k, j = k + 1, 0
        return (z, *kept)

    total = sum(counts)
    k, j, done = 0, 0, 0
    while done < total:
        n = min(checkpoint, total - done)
        if not z.requires_grad:  # (the first segment from data): the outputs must carry grad
            z = z.detach().requires_grad_()
        # reentrant: the segment runs without autograd and is recomputed with it in the backward
        # pass (the non-reentrant form hooks every saved tensor: 3-7x slower on small batches)
        z, *kept = run_checkpointed(segment, z, k, j, n, use_reentrant=True,
                                    preserve_rng_state=False)
        out.extend(kept)
        done += n
        j += n
        while k < len(counts) and j >= counts[k]:
            j -= counts[k]
            k += 1
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


def march_numpy(f: Callable[[np.ndarray | None, np.ndarray], np.ndarray], z0: np.ndarray,
                t: np.ndarray, substeps: int, tab: Tableau, *, autonomous: bool = False,
                into: Callable[[np.ndarray | None, np.ndarray, np.ndarray], None] | None = None,
                ) -> np.ndarray:
    """:func:`march` on float64 NumPy arrays, with a time grid per row: no torch dispatch per
    operation, for small batches without a gradient (a fit's held-out runs).

    Parameters
    ----------
    f : callable
        ``f(t (B,), z (B, S)) -> dz/dt (B, S)``, float64.
    z0 : numpy.ndarray (B, S)
        States at ``t[:, 0]``.
    t : numpy.ndarray (B, N)
        Output times of each row (non-decreasing; a zero gap keeps the state).
    substeps : int
        Equal steps in every interval.
    tab : Tableau
        The method.
    autonomous : bool
        ``f`` does not read the time: it is given None (no stage times are made).
    into : callable, optional
        ``f`` in place: ``into(t, z, out)`` writes ``f(t, z)`` into ``out``, a C-contiguous
        ``(B, S)`` buffer (a network's in-place form, :func:`sysid.models.numpy_fields.in_place`).
        Every stage is then written into one ``(stages, B, S)`` block and the update is one
        product with the weights ``b``; the stage states go into buffers made once. Where all
        rows take the same steps, the state shares that block and each stage's state is one
        product too: 29 instead of 37 array operations and no allocation per rk4 step of the
        default network (a fit's held-out check). The same values to rounding.

    Returns
    -------
    numpy.ndarray (B, N, S)
        The state at every output time (the first is ``z0``); non-finite values are left for
        the caller to find (NumPy warnings are silenced).

    Examples
    --------
    >>> t = np.array([[0.0, 0.5, 1.0]])
    >>> z = march_numpy(lambda t, z: -z, np.ones((1, 1)), t, 4, TABLEAUS["rk4"])
    >>> abs(float(z[0, -1, 0]) - math.exp(-1.0)) < 1e-5  # 8 rk4 steps of 1/8
    True
    """
    t = np.asarray(t, dtype=float)
    z = np.asarray(z0, dtype=float)
    B, N = t.shape
    out = np.empty((B, N, z.shape[-1]))
    out[:, 0] = z
    h_all = (t[:, 1:] - t[:, :-1]) / substeps  # (B, N-1)
    cs = sorted(set(tab.c))
    which = [cs.index(c) for c in tab.c]
    # stage times of each interval's first step
    starts = [] if autonomous else [t[:, :-1] + c * h_all for c in cs]
    # the columns w h (B, 1) of every stage weight and of the update, per interval (lists: an
    # item of a list is cheaper to take than a row of an array, ~100 times per check)
    wh = {w: list(w * h_all.T[..., None]) for w in {w for ai in tab.a for w in ai if w != 0.0}}
    h_den = list(h_all.T[..., None] / tab.denominator)
    # each stage's terms (the columns of its weight, the earlier stage it multiplies)
    terms = [[(wh[w], j) for j, w in enumerate(ai) if w != 0.0] for ai in tab.a]
    if into is not None:
        with np.errstate(all="ignore"):
            _march_into(into, out, h_all, substeps, tab, starts, which, terms, h_den)
        return out
    # the update's stages grouped by weight: RK4's k1 + k4 + 2 (k2 + k3)
    groups = [(w, [j for j, b in enumerate(tab.b) if b == w]) for w in sorted(set(tab.b)) if w]
    ks: list[np.ndarray] = [z] * len(tab.a)
    with np.errstate(all="ignore"):
        for k in range(N - 1):
            time_budget.check("integration")  # max_time and stop requests hold in long solves
            for j in range(substeps):
                times = [s[:, k] + j * h_all[:, k] if j else s[:, k] for s in starts]
                for i, stage in enumerate(terms):
                    zi = z
                    for col, kj in stage:
                        zi = zi + col[k] * ks[kj]
                    ks[i] = f(times[which[i]] if starts else None, zi)
                acc = None
                for w, js in groups:
                    part = ks[js[0]]
                    for j2 in js[1:]:
                        part = part + ks[j2]
                    part = part if w == 1.0 else w * part
                    acc = part if acc is None else acc + part
                z = z + h_den[k] * acc
            out[:, k + 1] = z
    return out


def _march_into(into: Callable[[np.ndarray | None, np.ndarray, np.ndarray], None],
                out: np.ndarray, h_all: np.ndarray, substeps: int, tab: Tableau,
                starts: list[np.ndarray], which: list[int], terms: list, h_den: list) -> None:
    """:func:`march_numpy`'s steps with the field in place, from ``out[:, 0]`` into ``out``."""
    if bool((h_all == h_all[:1]).all()):  # every row the same steps (held-out runs sampled alike)
        _march_shared(into, out, h_all[0], substeps, tab, starts, which)
        return
    B, N, S = out.shape
    K = np.empty((len(tab.a), B, S))  # every stage's derivatives, written by ``into``
    flat = K.reshape(len(tab.a), B * S)
    ks = list(K)  # (views made once: a view costs about as much as a small operation)
    b = np.array(tab.b, dtype=float)
    zi, tmp, acc = np.empty((B, S)), np.empty((B, S)), np.empty(B * S)
    step = acc.reshape(B, S)
    # per stage: its buffer and its terms (the columns of a weight, the stage they multiply)
    plan = [(ks[i], [(col, ks[kj]) for col, kj in stage]) for i, stage in enumerate(terms)]
    states = list(out.transpose(1, 0, 2))  # out[:, k] for every k
    inner = [np.empty((B, S)), np.empty((B, S))]  # the states between substeps
    mul, add, dot = np.multiply, np.add, np.dot
    z = states[0]
    for k in range(N - 1):
        time_budget.check("integration")  # max_time and stop requests hold in long solves
        hk = h_den[k]
        for j in range(substeps):
            times = [s[:, k] + j * h_all[:, k] if j else s[:, k] for s in starts]
            for i, (kout, stage) in enumerate(plan):
                x = z
                for col, kj in stage:
                    mul(col[k], kj, out=tmp)
                    add(x, tmp, out=zi)
                    x = zi
                into(times[which[i]] if starts else None, x, kout)
            dot(b, flat, out=acc)
            mul(step, hk, out=step)
            z_next = states[k + 1] if j == substeps - 1 else inner[j % 2]
            add(z, step, out=z_next)
            z = z_next


def _march_shared(into: Callable[[np.ndarray | None, np.ndarray, np.ndarray], None],
                  out: np.ndarray, h: np.ndarray, substeps: int, tab: Tableau,
                  starts: list[np.ndarray], which: list[int]) -> None:
    """:func:`_march_into` where every row takes the steps ``h`` (N-1,): the state and the stages
    live in one block ``[z; k_1; ...]``, so each stage's state and the update are one product
    with a row ``[1, h a_i]`` or ``[1, h b]`` made for all intervals at once (5 instead of 9
    array operations per rk4 step besides the field's)."""
    B, N, S = out.shape
    n = len(tab.a)
    block = np.empty((1 + n, B, S))
    flat = block.reshape(1 + n, B * S)
    z, ks = block[0], list(block[1:])
    weights = np.zeros((n + 1, 1 + n))  # rows: each stage's [0, a_i], then [0, b / denominator]
    for i, ai in enumerate(tab.a):
        weights[i, 1:1 + len(ai)] = ai
    weights[n, 1:] = np.array(tab.b, dtype=float) / tab.denominator
    coef = h[:, None, None] * weights  # (N-1, n+1, 1+n)
    coef[:, :, 0] = 1.0
    rows = [list(c) for c in coef]  # per interval, per stage (and the update) one row
    needed = [bool(np.any(ai)) for ai in tab.a]  # a stage with no terms reads z itself
    history = np.empty((N, B * S))  # the states at the outputs, contiguous; copied out at the end
    history[0] = out[:, 0].reshape(-1)
    zi, nxt = np.empty(B * S), np.empty(B * S)
    zi_view = zi.reshape(B, S)
    dot = np.dot
    z[...] = out[:, 0]
    for k in range(N - 1):
        time_budget.check("integration")  # max_time and stop requests hold in long solves
        row = rows[k]
        for j in range(substeps):
            times = [s[:, k] + j * h[k] if j else s[:, k] for s in starts]
            for i in range(n):
                x = z
                if needed[i]:
                    dot(row[i], flat, out=zi)
                    x = zi_view
                into(times[which[i]] if starts else None, x, ks[i])
            dest = history[k + 1] if j == substeps - 1 else nxt
            dot(row[n], flat, out=dest)
            z.reshape(-1)[...] = dest
    out[...] = history.reshape(N, B, S).transpose(1, 0, 2)
