"""Local polynomial smoothing of trajectories: values and first and second derivatives.

Each measured state is smoothed by local polynomial fits (Savitzky-Golay generalised to irregular
grids and missing samples: a weighted least-squares polynomial through the ``points`` nearest
samples of the same run), which gives the state, its first and its second time derivative at every
sample. Used by :func:`sysid.data.compute_scaling` (the characteristic time) and by training
(smoothed initial guesses and the derivative-based warm start). NumPy only.
"""

from __future__ import annotations

import numpy as np

from sysid import budget

__all__ = ["local_polynomial", "smooth_runs"]


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
                points: int, *, second: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`local_polynomial` for every run and state of padded arrays, vectorised.

    The same fits as calling :func:`local_polynomial` run by run and state by state (equal to
    rounding), without a Python loop over runs or states: a window whose samples are all
    measured is a fixed linear filter of the run's time grid (computed once per run and sample,
    shared by every state); only the windows with missing samples solve their own weighted fit.

    Parameters
    ----------
    t : ndarray (R, N); y, mask : ndarray (R, N, S); lengths : ndarray (R,)
    points : int
        Samples per local fit.
    second : bool
        Compute the second derivatives (a cubic fit over a wider window); when False, the
        third array is all NaN.

    Returns
    -------
    value, first, second : ndarray (R, N, S)
        Smoothed values and derivatives (degree 2 fits for values and first derivatives,
        degree 3 over a wider window for second derivatives); NaN on padding.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    val, d1, d2 = (np.full(y.shape, np.nan) for _ in range(3))
    wide = points + points // 2 * 2
    for k, (runs, a, b) in enumerate(_pieces(lengths, y.shape[1], max(points, wide))):
        if k:  # a deadline (max_time) or a stop request holds between pieces
            budget.check("smoothing the data")
        # degree 2 for values and first derivatives, degree 3 over a wider window for second ones
        for p, degree, keep in ((points, 2, ((0, val), (1, d1))), (wide, 3, ((2, d2),)))[:1 + second]:
            lo, hi = max(a - p, 0), b + p  # the windows of samples a..b-1 lie inside lo..hi-1
            fits = _local_fits(t[runs, lo:hi], y[runs, lo:hi], mask[runs, lo:hi],
                               np.clip(lengths[runs] - lo, 0, hi - lo), p, degree)
            for which, out in keep:
                out[runs, a:b] = fits[which][:, a - lo:b - lo]
    return val, d1, d2


#: samples smoothed at once (runs of a piece x samples): bounds the temporary arrays (about
#: 50 floats per sample and state) and the time between two checks of the deadline
_PIECE = 1 << 17


def _pieces(lengths: np.ndarray, width: int, margin: int) -> list[tuple[slice, int, int]]:
    """Split the padded ``(R, width)`` samples into pieces of at most about :data:`_PIECE`:
    ``(runs, a, b)`` = consecutive runs, samples ``a..b-1`` of each. A run longer than a piece
    is cut along time; each cut is smoothed with ``margin`` samples of its neighbours, so every
    window sees exactly the samples it would see in the whole run."""
    R = len(lengths)
    used = int(lengths.max()) if R else 0
    if R == 0 or used == 0:
        return []
    if used > _PIECE:  # long runs: one run at a time, cut along time
        step = max(_PIECE, 4 * margin)
        return [(slice(r, r + 1), a, min(a + step, used)) for r in range(R)
                for a in range(0, max(int(lengths[r]), 1), step)]
    per = max(1, _PIECE // used)
    return [(slice(r, min(r + per, R)), 0, used) for r in range(0, R, per)]


# rows (windows) gathered per block when a window's samples are read one by one: bounds the
# temporary arrays to about _BLOCK * points * states floats
_BLOCK = 8192


def _local_fits(t: np.ndarray, y: np.ndarray, mask: np.ndarray, lengths: np.ndarray,
                points: int, degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`local_polynomial` of every run and state at once: ``(R, N, S)`` value, first and
    second derivative. The window of sample ``i`` of a run of ``n`` samples starts at
    ``clip(i - points // 2, 0, n - points)``; a run shorter than ``points`` uses all its samples
    (the window's positions past its end get weight 0, as if the window were shorter)."""
    R, N, S = y.shape
    D = degree + 1
    if R == 0 or N == 0 or S == 0:
        nan = np.full((R, N, S), np.nan)
        return nan, nan.copy(), nan.copy()
    P = min(points, N)
    n = lengths[:, None]
    lo = np.clip(np.arange(N)[None, :] - P // 2, 0, np.maximum(n - P, 0))  # (R, N)
    raw = lo[..., None] + np.arange(P)  # (R, N, P)
    inrun = raw < n[..., None]
    idx = np.minimum(raw, np.maximum(n - 1, 0)[..., None])
    dt = np.where(inrun, t[np.arange(R)[:, None, None], idx] - t[:, :, None], 0.0)
    dt = np.where(np.isfinite(dt), dt, 0.0)  # padded samples (i >= n) hold NaN times
    span = np.abs(dt).max(axis=-1)
    span = np.where(span > 0, span, 1.0)
    A = (dt / span[..., None])[..., None] ** np.arange(D)  # (R, N, P, D)
    Aw = A * inrun[..., None]
    # a fully measured window's fit is coef = (A'A + eps I)^-1 A' y: a filter X (D, P) per sample
    G = np.swapaxes(Aw, -1, -2) @ Aw + 1e-12 * np.eye(D)
    X = np.linalg.solve(G, np.swapaxes(Aw, -1, -2))  # (R, N, D, P)
    y0 = np.where(mask, y, 0.0)
    # measured samples per window from a running count (no gather of the windows)
    cm = np.concatenate([np.zeros((R, 1, S), np.int64), np.cumsum(mask, axis=1, dtype=np.int64)], 1)
    end = np.minimum(lo + P, n)
    count = (np.take_along_axis(cm, end[..., None], 1) - np.take_along_axis(cm, lo[..., None], 1))
    gaps = count < (end - lo)[..., None]  # a window with a missing sample
    coef = _filter(X, y0, idx, lengths, P)
    _gap_fits(coef, A, inrun, idx, y, mask, gaps & (count >= D))
    bad = (count < D) | (np.arange(N)[None, :] >= n)[..., None]
    sp = span[..., None]
    value = coef[:, :, 0].copy()
    first = coef[:, :, 1] / sp
    second = 2.0 * coef[:, :, 2] / sp**2 if degree >= 2 else np.zeros((R, N, S))
    for a in (value, first, second):
        np.copyto(a, np.nan, where=bad)
    return value, first, second


def _filter(X: np.ndarray, y0: np.ndarray, idx: np.ndarray, lengths: np.ndarray,
            P: int) -> np.ndarray:
    """``coef[r, i] = X[r, i] @ y0[r, idx[r, i]]``, ``(R, N, D, S)``, for every window as if all
    its samples were measured (``y0`` is 0 where they are not).

    On a run whose interior windows share one filter (a regular grid), the interior is a sum of
    ``P`` shifted copies of the run per coefficient; the other windows (the run's ends, irregular
    grids) gather their samples block by block.
    """
    R, N, D, _ = X.shape
    S = y0.shape[-1]
    h = P // 2
    coef = np.zeros((R, N, D, S))
    todo = np.arange(N)[None, :] < lengths[:, None]  # rows still to compute
    for r in range(R):
        n = int(lengths[r])
        m = n - P + 1  # windows that start h samples before their sample: rows h .. h + m - 1
        inner = X[r, h:h + m]
        if m < 2 or not np.allclose(inner, inner[:1], rtol=1e-9,
                                    atol=1e-12 * abs(inner[0]).max()):
            continue
        out = coef[r, h:h + m]  # (m, D, S)
        for j in range(P):
            out += inner[0, :, j, None] * y0[r, j:j + m, None, :]
        todo[r, h:h + m] = False
    rr, ii = np.nonzero(todo)
    block = max(1, _BLOCK * 4 // max(S, 1))
    for a in range(0, rr.size, block):
        r_, i_ = rr[a:a + block], ii[a:a + block]
        coef[r_, i_] = X[r_, i_] @ y0[r_[:, None], idx[r_, i_]]
    return coef


def _gap_fits(coef: np.ndarray, A: np.ndarray, inrun: np.ndarray, idx: np.ndarray,
              y: np.ndarray, mask: np.ndarray, which: np.ndarray) -> None:
    """Weighted fits (weight 0 on the missing samples) of the windows ``which (R, N, S)``, in
    place in ``coef``."""
    D = A.shape[-1]
    rk, ik, sk = np.nonzero(which)
    for b in range(0, rk.size, _BLOCK):
        r_, i_, s_ = rk[b:b + _BLOCK], ik[b:b + _BLOCK], sk[b:b + _BLOCK]
        pos = idx[r_, i_]  # (K, P)
        w = (mask[r_[:, None], pos, s_[:, None]] & inrun[r_, i_]).astype(float)
        yy = np.where(w > 0, y[r_[:, None], pos, s_[:, None]], 0.0)
        Ak = A[r_, i_]  # (K, P, D)
        AtW = np.swapaxes(Ak, -1, -2) * w[:, None, :]
        M = AtW @ Ak + 1e-12 * np.eye(D)
        coef[r_, i_, :, s_] = np.linalg.solve(M, AtW @ yy[..., None])[..., 0]
