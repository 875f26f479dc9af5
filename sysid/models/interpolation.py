"""Measured inputs as functions of time, batched over runs that have different time grids.

torch is imported by the functions that use it (:class:`InputInterpolator`, the cubic slopes),
not with this module: :func:`numpy_interpolant` of zero-order-hold and linear inputs, and
:data:`INTERPOLATIONS`, serve NumPy simulations that never import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import numpy as np

from sysid.errors import ConfigError, DataError

if TYPE_CHECKING:  # annotations only
    import torch

__all__ = ["InputInterpolator", "INTERPOLATIONS", "pchip_slopes_numpy", "hermite", "numpy_interpolant"]

INTERPOLATIONS = ("zoh", "linear", "cubic")


def _pchip_slopes(h: torch.Tensor, d: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Fritsch-Carlson / Fritsch-Butland slopes as in SciPy's PchipInterpolator, batched.

    ``h`` (R, N-1, 1) interval widths, ``d`` (R, N-1, I) secant slopes (both padded past each
    run's end); returns slopes (R, N, I) at the knots.
    """
    import torch

    n = d.shape[1] + 1
    m = torch.zeros(d.shape[0], n, d.shape[2], dtype=d.dtype)
    if n > 2:
        h0, h1 = h[:, :-1], h[:, 1:]
        d0, d1 = d[:, :-1], d[:, 1:]
        w1 = 2 * h1 + h0
        w2 = h1 + 2 * h0
        same = (torch.sign(d0) * torch.sign(d1)) > 0
        safe0 = torch.where(same, d0, torch.ones_like(d0))
        safe1 = torch.where(same, d1, torch.ones_like(d1))
        harm = (w1 + w2) / (w1 / safe0 + w2 / safe1)
        m[:, 1:-1] = torch.where(same, harm, torch.zeros_like(harm))
    # end slopes: SciPy's one-sided three-point formula, shape-preserving; two-point runs use the
    # secant. The right end of each run sits at index length-1.
    r = torch.arange(d.shape[0])
    last = lengths - 1

    def edge(hh0: torch.Tensor, hh1: torch.Tensor, dd0: torch.Tensor, dd1: torch.Tensor) -> torch.Tensor:
        e = ((2 * hh0 + hh1) * dd0 - hh0 * dd1) / (hh0 + hh1)
        e = torch.where(torch.sign(e) != torch.sign(dd0), torch.zeros_like(e), e)
        flip = (torch.sign(dd0) != torch.sign(dd1)) & (e.abs() > 3 * dd0.abs())
        return torch.where(flip, 3 * dd0, e)

    two = (lengths == 2)[:, None]
    if n > 2:
        i1 = torch.clamp(last - 1, min=1)
        left = edge(h[:, 0], h[:, 1], d[:, 0], d[:, 1])
        right = edge(h[r, i1 - 0], h[r, i1 - 1], d[r, i1], d[r, i1 - 1])
        m[:, 0] = torch.where(two, d[:, 0], left)
        m[r, last] = torch.where(two, d[r, last - 1], right)
    else:
        m[:, 0] = d[:, 0]
        m[:, 1] = d[:, 0]
    return m


def pchip_slopes_numpy(t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The same slopes for one run in NumPy (``t`` (N,), ``u`` (N, I)); used by NumPy exports."""
    import torch

    tt = torch.as_tensor(np.asarray(t, dtype=float))[None]
    uu = torch.as_tensor(np.asarray(u, dtype=float))[None]
    h = (tt[:, 1:] - tt[:, :-1])[..., None]
    d = (uu[:, 1:] - uu[:, :-1]) / h
    return _pchip_slopes(h, d, torch.tensor([tt.shape[1]]))[0].numpy()


@final
class InputInterpolator:
    """Per-run interpolation of measured inputs, vectorised over runs with different grids.

    Parameters
    ----------
    t : Tensor (R, N)
        Sample times of each run, increasing within the first ``lengths[r]`` entries (entries past
        a run's length are ignored, whatever they hold).
    u : Tensor (R, N, I)
        Input samples; must be finite within each run's length (fill gaps before, explicitly).
    lengths : LongTensor (R,), optional
        Samples per run (default N for all). At least 1 (2 for "linear"/"cubic" to vary).
    kind : {"zoh", "linear", "cubic"}
        Zero-order hold (value of the last sample at or before t, as a sample-and-hold DAC),
        piecewise linear, or monotone piecewise-cubic Hermite (PCHIP: Fritsch-Carlson slopes with
        SciPy's end conditions, so it equals ``scipy.interpolate.PchipInterpolator`` and never
        overshoots a step in the input).

    Notes
    -----
    Outside a run's time span the input is held constant at its first / last sample. A call
    costs one batched ``torch.searchsorted``; there is no Python loop over runs.

    Examples
    --------
    >>> t = torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 2.0]])
    >>> u = torch.tensor([[[0.0], [1.0], [2.0]], [[0.0], [4.0], [4.0]]])
    >>> InputInterpolator(t, u, torch.tensor([3, 2]), "linear")(torch.tensor(0.5)).squeeze(-1)
    tensor([0.5000, 1.0000])
    """

    def __init__(self, t: torch.Tensor, u: torch.Tensor, lengths: torch.Tensor | None = None,
                 kind: str = "linear") -> None:
        import torch

        if kind not in INTERPOLATIONS:
            raise ConfigError(f"InputInterpolator: unknown kind {kind!r}; choose one of {list(INTERPOLATIONS)}.")
        t = torch.as_tensor(t)
        u = torch.as_tensor(u)
        if t.ndim != 2 or u.ndim != 3 or u.shape[:2] != t.shape:
            raise DataError(
                f"InputInterpolator: expected t (R, N) and u (R, N, I); got t {tuple(t.shape)} and "
                f"u {tuple(u.shape)}."
            )
        if not u.is_floating_point():
            u = u.to(torch.get_default_dtype())
        dtype = u.dtype
        r_, n_ = t.shape
        if lengths is None:
            lengths = torch.full((r_,), n_, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        if lengths.shape != (r_,) or bool((lengths < 1).any()) or bool((lengths > n_).any()):
            raise DataError(f"InputInterpolator: lengths must be (R,) = ({r_},) in [1, {n_}]; got {lengths.tolist()}.")
        valid = torch.arange(n_)[None, :] < lengths[:, None]
        t = t.to(dtype)
        tv = torch.where(valid, t, torch.zeros_like(t))
        if not bool(torch.isfinite(tv).all()):
            bad = int(torch.nonzero(~torch.isfinite(tv))[0, 0])
            raise DataError(f"InputInterpolator: run {bad} has non-finite times within its length.")
        steps = tv[:, 1:] - tv[:, :-1]
        inner = valid[:, 1:]
        if bool(((steps <= 0) & inner).any()):
            bad = int(torch.nonzero((steps <= 0) & inner)[0, 0])
            raise DataError(f"InputInterpolator: times of run {bad} must be strictly increasing.")
        uv = torch.where(valid[..., None], u, torch.zeros_like(u))
        if not bool(torch.isfinite(uv).all()):
            bad = torch.nonzero(~torch.isfinite(uv))[0].tolist()
            raise DataError(
                f"InputInterpolator: input {bad[2]} of run {bad[0]} is not finite at sample {bad[1]}; "
                "fill missing inputs before simulating (an explicit choice, e.g. interpolate the gaps)."
            )
        # Past each run's end: times continue by 1 per sample, values hold the last sample, so the
        # padded region is harmless to a vectorised search and to the cubic slopes.
        idx = torch.arange(n_)[None, :]
        last = (lengths - 1)[:, None]
        t_last = torch.gather(tv, 1, last)
        tp = torch.where(valid, tv, t_last + (idx - last).to(dtype))
        u_last = torch.gather(uv, 1, last[..., None].expand(-1, 1, u.shape[2]))
        up = torch.where(valid[..., None], uv, u_last)
        self.kind = kind
        self.t = tp.contiguous()
        self.u = up
        self.lengths = lengths
        self.t_first = tp[:, 0]
        self.t_last = t_last[:, 0]
        self.n_inputs = int(u.shape[2])
        if n_ > 1:
            h = (tp[:, 1:] - tp[:, :-1])[..., None]
            self._h = h
            self._d = (up[:, 1:] - up[:, :-1]) / h
            if kind == "cubic":
                self._m = _pchip_slopes(h, self._d, torch.clamp(lengths, min=2))
                one = lengths == 1
                self._m[one] = 0.0

    @property
    def n_runs(self) -> int:
        """Number of runs R."""
        return int(self.t.shape[0])

    def __call__(self, t: torch.Tensor | float) -> torch.Tensor:
        """Inputs (R, I) at a scalar time or at per-run times ``t`` (R,)."""
        import torch

        dtype = self.u.dtype
        tq = torch.as_tensor(t, dtype=dtype)
        if tq.ndim == 0:
            tq = tq.expand(self.n_runs)
        elif tq.shape != (self.n_runs,):
            raise ConfigError(
                f"InputInterpolator: t must be a scalar or one time per run ({self.n_runs},); got "
                f"shape {tuple(tq.shape)}."
            )
        tq = torch.minimum(torch.maximum(tq, self.t_first), self.t_last)
        n_ = self.t.shape[1]
        if n_ == 1:
            return self.u[:, 0]
        k = torch.searchsorted(self.t, tq[:, None].contiguous(), right=True)[:, 0] - 1
        r = torch.arange(self.n_runs)
        if self.kind == "zoh":
            return self.u[r, torch.clamp(k, 0, n_ - 1)]
        k = torch.clamp(k, 0, n_ - 2)
        t0 = self.t[r, k]
        h = self._h[r, k]
        s = ((tq - t0)[:, None] / h).clamp(0.0, 1.0)
        y0 = self.u[r, k]
        if self.kind == "linear":
            return y0 + s * (self.u[r, k + 1] - y0)
        return hermite(s, h, y0, self.u[r, k + 1], self._m[r, k], self._m[r, k + 1])

    def numpy_function(self, run: int = 0) -> Any:
        """A NumPy ``u(t) -> (I,)`` for one run (same interpolation), for NumPy exports."""
        n = int(self.lengths[run])
        t = self.t[run, :n].detach().cpu().double().numpy().copy()
        u = self.u[run, :n].detach().cpu().double().numpy().copy()
        return numpy_interpolant(t, u, self.kind)


def hermite(s: Any, h: Any, y0: Any, y1: Any, m0: Any, m1: Any) -> Any:
    """Cubic Hermite interpolation at fraction ``s`` of an interval of length ``h`` between values
    ``y0``, ``y1`` with slopes ``m0``, ``m1`` (NumPy arrays or torch tensors alike)."""
    s2 = s * s
    s3 = s2 * s
    h00 = 2 * s3 - 3 * s2 + 1
    h10 = s3 - 2 * s2 + s
    h01 = -2 * s3 + 3 * s2
    h11 = s3 - s2
    return h00 * y0 + h10 * h * m0 + h01 * y1 + h11 * h * m1


def numpy_interpolant(t: np.ndarray, u: np.ndarray, kind: str) -> Any:
    """NumPy ``u(t)`` with the same rules as :class:`InputInterpolator` (one run): for a scalar
    ``t`` an array ``(I,)``, for an array of times ``(..., I)``. Outside the samples the first/last
    value is held."""
    if kind not in INTERPOLATIONS:
        raise ConfigError(f"numpy_interpolant: unknown kind {kind!r}; choose one of {list(INTERPOLATIONS)}.")
    t = np.asarray(t, dtype=float)
    u = np.asarray(u, dtype=float).reshape(len(t), -1)
    n = len(t)
    m = pchip_slopes_numpy(t, u) if kind == "cubic" and n > 1 else None

    def u_at(tq: Any) -> np.ndarray:
        tc = np.clip(np.asarray(tq, dtype=float), t[0], t[-1])
        if n == 1:
            return np.broadcast_to(u[0], tc.shape + u.shape[1:]).copy()
        k = np.searchsorted(t, tc, side="right") - 1
        if kind == "zoh":
            return u[np.clip(k, 0, n - 1)]
        k = np.clip(k, 0, n - 2)
        h = (t[k + 1] - t[k])[..., None]
        s = np.clip((tc - t[k])[..., None] / h, 0.0, 1.0)
        if kind == "linear":
            return u[k] + s * (u[k + 1] - u[k])
        return hermite(s, h, u[k], u[k + 1], m[k], m[k + 1])  # type: ignore[index]

    return u_at
