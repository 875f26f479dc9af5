"""Local polynomial smoothing of trajectories: values and first and second derivatives.

Each measured state is smoothed by local polynomial fits (Savitzky-Golay generalised to irregular
grids and missing samples: a weighted least-squares polynomial through the ``points`` nearest
samples of the same run), which gives the state, its first and its second time derivative at every
sample. Used by :func:`sysid.data.compute_scaling` (the characteristic time) and by training
(smoothed initial guesses and the derivative-based warm start). NumPy only.
"""

from __future__ import annotations

import numpy as np

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
