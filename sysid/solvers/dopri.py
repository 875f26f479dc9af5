"""A lean Dormand-Prince 5(4) stepper for solves that need no gradient (``simulate``'s default).

torchdiffeq's ``dopri5`` is built for training: every step goes through autograd-aware
bookkeeping (an ``_UncheckedAssign`` per stage, tensor-valued step-size arithmetic, a fitted
interpolation polynomial per step, one ``_interp_evaluate`` per output time), which costs several
times the field's own evaluations on the small batches sysid simulates (issue #13: ``simulate``
was 10-39x one vectorised ``scipy.integrate.solve_ivp``). When nothing is differentiated,
:func:`dopri5` takes the same steps with the least work per step:

- the seven stages live in one preallocated ``(7, n)`` buffer; each stage's state is one
  ``addmm`` of the tableau row with the earlier stages (NumPy: one ``dot`` of ``[1, h a_i]``
  with ``[y; K]``, the step's start kept above the stages), the error estimate one ``mm``;
- on NumPy, a field with an in-place form (``into``) writes each stage into its row of the
  buffer: no allocation per evaluation;
- the step-size control is plain Python float arithmetic (one synchronisation per step, to read
  the error ratio);
- every output time inside an accepted step is interpolated at once: one ``(4, n)`` product of the
  continuous extension's coefficients with the stages, one ``addmm`` for all those times.

The numerics are those of torchdiffeq's and SciPy's ``dopri5``/``RK45`` with one difference, the
error norm of a batch of runs. A step's error ratio is the largest over the runs of each run's own
root mean square of ``err / (atol + rtol * max(abs(y0), abs(y1)))`` (:func:`run_norm`; the runs
are the first axis of a state with two or more axes, ``(R, S)`` in ``simulate``, latent and
velocity states included; a 1-D state is one run), so **every run's own error norm is within
rtol/atol at every accepted step**, as in a solve of its own: the runs share one step size, that
of the most demanding run. (SciPy and torchdiffeq take one root mean square over all elements, in
which one demanding run's error is diluted by the others': up to sqrt(R) times the tolerance,
and a run's result would depend on which runs were simulated with it. One run, or runs that are
all alike, take exactly SciPy's steps.) A step is accepted when the ratio is <= 1, the next step
is ``h * min(10, max(0.2, 0.9 * ratio**(-1/5)))`` (no growth right after a rejection), the first
step is chosen as in Hairer, Norsett & Wanner (Solving ODE I, sec. II.4) with the same norm.
Stages at the step's end are evaluated just before it (the left limit) and, after landing on a
jump time, the derivative is evaluated just after it (the right limit), as torchdiffeq does with
``jump_t``.

Coefficients: J. R. Dormand and P. J. Prince, "A family of embedded Runge-Kutta formulae",
J. Comput. Appl. Math. 6 (1980); the 4th-order continuous extension of L. F. Shampine, "Some
practical Runge-Kutta formulas", Math. Comp. 46 (1986), as tabulated in Hairer, Norsett & Wanner,
sec. II.6.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
from collections.abc import Callable, Sequence
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from sysid import budget as time_budget
from sysid.solvers.config import STIFF_REMEDY

if TYPE_CHECKING:
    import torch

__all__ = ["dopri5", "StepAbort", "run_norm", "runs_of"]

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),  # = the 5th-order weights
)
# 5th-order weights minus the embedded 4th-order ones (the error estimate, per unit step)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
# y(t + theta h) = y + h * sum_i k_i * sum_j P[i][j] theta**(j+1)  (Shampine's dense output)
_P = (
    (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
    (0.0, 0.0, 0.0, 0.0),
    (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
    (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
    (0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632),
    (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
    (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
)
_SAFETY, _MIN_FACTOR, _MAX_FACTOR, _EXPONENT = 0.9, 0.2, 10.0, -1.0 / 5.0
#: Most output values (times x states) whose NumPy dense output is computed at the end in one
#: batch (its temporaries hold four times as many; larger solves write each step's outputs).
_BATCHED_OUTPUTS = 50_000
_STAGES = 6  # new evaluations per step (the first stage is the last one of the previous step)

Array = Any  # a torch.Tensor, or a float64 numpy.ndarray
Field = Callable[[Any, Any], Any]


class StepAbort(Exception):
    """A failed :func:`dopri5` solve: why, and the furthest time the field was evaluated at."""

    def __init__(self, reason: str, t: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.t = t


def _import_torch() -> None:
    """Bind the module name ``torch`` for :class:`_TorchOps` (a torch solve already imported
    torch; a NumPy solve never does, so this module does not import it at its own import)."""
    global torch
    import torch


class _TorchOps:
    """The stepper's array operations on torch tensors (one fused op where torch has one)."""

    def __init__(self, like: torch.Tensor) -> None:
        _import_torch()
        self.dtype, self.device = like.dtype, like.device
        self.exponents = torch.arange(1, 5, dtype=like.dtype, device=like.device)

    def const(self, rows: Sequence[Sequence[float]]) -> torch.Tensor:
        return torch.tensor(rows, dtype=self.dtype, device=self.device)

    def tableau(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        return _tableau(self)

    def stages(self, run: _Run, y: torch.Tensor, K: torch.Tensor, a_rows: list[torch.Tensor], t: float,
               h: float, t1_left: float) -> torch.Tensor:
        """Stages 1..6 of a step from ``t`` of size ``h`` into ``K[1:]``; the last stage's state
        (the 5th-order solution)."""
        z = y
        for i in range(1, 7):
            z = torch.addmm(y, a_rows[i - 1], K[:i], alpha=h)
            K[i] = run.field(t1_left if _C[i] == 1.0 else t + _C[i] * h, z)
        return z

    def empty(self, rows: int, n: int) -> torch.Tensor:
        return torch.empty(rows, n, dtype=self.dtype, device=self.device)

    def flat(self, y0: torch.Tensor) -> torch.Tensor:
        return y0.detach().reshape(1, -1).clone()

    def time(self, t: float) -> torch.Tensor:
        return torch.tensor(t, dtype=self.dtype, device=self.device)

    def nextafter(self, t: float, direction: float) -> float:
        """The neighbour of ``t`` in the state's dtype (torchdiffeq's one-ulp perturbation)."""
        if self.dtype == torch.float64:
            return math.nextafter(t, direction)
        tt = torch.tensor(t, dtype=self.dtype)
        return float(torch.nextafter(tt, torch.tensor(direction, dtype=self.dtype)))

    def dense(self, out: torch.Tensor, t_out: np.ndarray, i0: int, i1: int, t: float, h: float,
              y: torch.Tensor, q: torch.Tensor) -> None:
        """The outputs ``i0:i1`` inside the step from ``t`` of size ``h``: ``y + h * theta @ q``
        with ``theta`` the powers 1..4 of their fractions of the step, ``q = P^T K``."""
        theta = torch.as_tensor((t_out[i0:i1] - t) / h, dtype=self.dtype, device=self.device)
        torch.addmm(y, theta[:, None] ** self.exponents, q, alpha=h, out=out[i0:i1])

    def finish(self, out: torch.Tensor, t_out: np.ndarray) -> None:
        """Outputs :meth:`dense` left to the end (none here)."""

    def outputs(self, count: int, y: torch.Tensor, shape: tuple[int, ...], given: Any) -> torch.Tensor:
        """The solution at the output times, one row ``(n,)`` per time, the first ``y``."""
        out = torch.empty(count, y.shape[1], dtype=self.dtype, device=self.device)
        out[0] = y[0]
        return out

    def result(self, out: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return out.reshape(out.shape[0], *shape)

    def ratio(self, e_row: torch.Tensor, k: torch.Tensor, y: torch.Tensor, z: torch.Tensor, h: float,
              rtol: float, atol: float, runs: int) -> float:
        """The step's error ratio (:func:`run_norm` of the scaled error estimate)."""
        scale = torch.maximum(y.abs(), z.abs()).mul_(rtol).add_(atol)
        return h * float(run_norm(torch.mm(e_row, k).div_(scale), runs))

    def finite(self, x: torch.Tensor) -> bool:
        return bool(torch.isfinite(x).all())

    def first_bad_row(self, k: torch.Tensor) -> int:
        return int(torch.nonzero(~torch.isfinite(k).all(dim=1))[0, 0])


class _NumpyOps:
    """The same operations on float64 NumPy arrays (a field evaluated by NumPy: no torch dispatch)."""

    dtype = np.float64
    exponents = np.arange(1, 5, dtype=float)

    def __init__(self, like: np.ndarray | None, outputs: int = 0) -> None:
        n = 0 if like is None else like.size
        self.pending: list | None = [] if n * outputs <= _BATCHED_OUTPUTS else None
        # the step's start above its stages, ``ky = [y; K]`` (8, n) (:meth:`empty`), and each
        # stage's coefficients on its first rows, ``[1, h a_i]``: a stage's state is one product
        self.ky = np.empty((8, 0))
        self.ky_rows: list[np.ndarray] = []
        self.coef = np.zeros((6, 7))
        self.coef[:, 0] = 1.0
        self.coef_rows = [self.coef[i - 1, :i + 1] for i in range(1, 7)]

    def const(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        return np.array(rows, dtype=float)

    def tableau(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """:func:`_tableau`, made once (read-only arrays shared by every solve: a NumPy solve of
        a few steps spent a tenth of its time building them); the stage rows flat ``(i,)``."""
        return _numpy_tableau()

    def stages(self, run: _Run, y: np.ndarray, K: np.ndarray, a_rows: list[np.ndarray], t: float,
               h: float, t1_left: float) -> np.ndarray:
        """:meth:`_TorchOps.stages` with the field called directly and the step's evaluations
        counted once (on a few runs the wrappers of each call were a tenth of a step)."""
        f, into, shape = run.func, run.into, run.shape
        self.ky[0] = y[0]
        np.multiply(_numpy_a(), h, out=self.coef[:, 1:])
        z = y
        for i, c, rows in zip(range(1, 7), self.coef_rows, self.ky_rows):
            z = np.dot(c, rows)  # y + h * sum_j a_ij K_j
            if into is not None:  # the field writes the stage into K[i] itself
                into(t1_left if _C[i] == 1.0 else t + _C[i] * h, z.reshape(shape), run.k_rows[i])
            else:
                K[i] = f(t1_left if _C[i] == 1.0 else t + _C[i] * h, z.reshape(shape)).reshape(-1)
        run.nfe += 6
        run.t_reached = max(run.t_reached, t1_left)
        return z.reshape(1, -1)

    def empty(self, rows: int, n: int) -> np.ndarray:
        """The stages ``K`` (7, n): the rows after the first of :attr:`ky` (which holds the
        step's start while :meth:`stages` runs)."""
        self.ky = np.empty((rows + 1, n))
        self.ky_rows = [self.ky[:i + 1] for i in range(1, 7)]
        return self.ky[1:]

    def flat(self, y0: np.ndarray) -> np.ndarray:
        return np.array(y0, dtype=float).reshape(1, -1)

    def time(self, t: float) -> float:
        return t

    def nextafter(self, t: float, direction: float) -> float:
        return math.nextafter(t, direction)

    def dense(self, out: np.ndarray, t_out: np.ndarray, i0: int, i1: int, t: float, h: float,
              y: np.ndarray, q: np.ndarray) -> None:
        """:meth:`_TorchOps.dense`; on a small problem (at most :data:`_BATCHED_OUTPUTS` output
        values) the step is kept and every output is computed at the end in one batch
        (:meth:`finish`): a handful of array operations per step were a fifth of a short solve."""
        if self.pending is not None:
            self.pending.append((i0, i1, t, h, y, q))
            return
        seg = ((t_out[i0:i1] - t) / h)[:, None] ** self.exponents @ q
        seg *= h
        seg += y
        out[i0:i1] = seg.reshape(i1 - i0, *out.shape[1:])

    def finish(self, out: np.ndarray, t_out: np.ndarray) -> None:
        """The outputs :meth:`dense` kept, all at once."""
        if not self.pending:
            return
        i0s, i1s, ts, hs, ys, qs = zip(*self.pending)
        self.pending = []
        first, last = i0s[0], i1s[-1]  # the steps' outputs follow each other
        step = np.arange(len(i0s)).repeat(np.subtract(i1s, i0s))  # each output's step
        h = np.array(hs)[step]
        theta = ((t_out[first:last] - np.array(ts)[step]) / h)[:, None] ** self.exponents
        seg = np.einsum("mk,mkn->mn", theta, np.array(qs)[step])
        seg *= h[:, None]
        seg += np.concatenate(ys)[step]
        out[first:last] = seg.reshape(last - first, *out.shape[1:])

    def outputs(self, count: int, y: np.ndarray, shape: tuple[int, ...],
                given: np.ndarray | None) -> np.ndarray:
        """The solution at the output times, ``(count, *shape)``, the first ``y``: ``given``
        (any strides: the caller's final layout, so the solution is not copied again) or new."""
        out = np.empty((count, *shape)) if given is None else given
        out[0] = y.reshape(shape)
        return out

    def result(self, out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return out

    def ratio(self, e_row: np.ndarray, k: np.ndarray, y: np.ndarray, z: np.ndarray, h: float,
              rtol: float, atol: float, runs: int) -> float:
        """The step's error ratio (:func:`run_norm` of the scaled error estimate)."""
        scale = np.maximum(np.abs(y), np.abs(z))
        scale *= rtol
        scale += atol
        err = e_row @ k
        err /= scale
        return h * run_norm(err, runs)

    def finite(self, x: np.ndarray) -> bool:
        return bool(np.isfinite(x).all())

    def first_bad_row(self, k: np.ndarray) -> int:
        return int(np.flatnonzero(~np.isfinite(k).all(axis=1))[0])


def _tableau(ops: Ops) -> tuple[list[Any], Any, Any]:
    """The stage rows ``(1, i)`` for i = 1..6, the error row ``(1, 7)`` and the dense output's
    ``P^T`` ``(4, 7)`` in the arrays of ``ops``."""
    return [ops.const([row]) for row in _A[1:]], ops.const([_E]), ops.const(list(zip(*_P)))


@functools.lru_cache(maxsize=1)
def _numpy_tableau() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    a_rows, e_row, p_t = _tableau(_NumpyOps(None))
    a_rows = [a[0] for a in a_rows]
    for a in (*a_rows, e_row, p_t):
        a.flags.writeable = False
    return a_rows, e_row, p_t


@functools.lru_cache(maxsize=1)
def _numpy_a() -> np.ndarray:
    """The stage rows of ``A`` as one read-only ``(6, 6)`` array, zero-padded."""
    a = np.array([[*row, *[0.0] * (6 - len(row))] for row in _A[1:]])
    a.flags.writeable = False
    return a


def runs_of(shape: Sequence[int]) -> int:
    """The runs of a batched state of this shape: its first axis when it has two or more axes
    (``(R, S)``: R runs of S states), else one."""
    return int(shape[0]) if len(shape) >= 2 else 1


def run_norm(x: Array, runs: int) -> Any:
    """The error norm of a batch of runs: the largest over the runs of each run's own root mean
    square (one run: the root mean square of all elements, SciPy's norm).

    ``x`` (NumPy or torch, any shape, ``runs * m`` elements) holds the runs one after the other:
    run ``r`` is row ``r`` of ``x.reshape(runs, -1)``, as for a state ``(R, S)`` (C order) and its
    flat copy ``(1, R * S)`` in the stepper.

    The one norm of sysid's adaptive solves of many runs (:func:`dopri5`'s step control and first
    step, and torchdiffeq's ``norm`` option in :func:`sysid.solvers.solve`): a step is accepted
    when it is <= 1, i.e. when every run's own error norm is within the tolerances.

    Returns
    -------
    float or Tensor
        A float for a NumPy ``x``; a 0-d tensor for a torch ``x`` (torchdiffeq's norms are).
    """
    r = x.reshape(runs, -1)
    m = r.shape[1]
    if isinstance(r, np.ndarray):  # a reduction per step: one product for one run
        # the squares' row sums as a product with ones: 0.64-0.69 of einsum's time on 1000 runs
        # of 2 states, 1.03-1.14 on 8 (bench_simulate.py part 7; sum(axis=1) was slower still)
        sq = float(np.vdot(r, r)) if runs == 1 else float(((r * r) @ np.ones(m)).max())
        return math.sqrt(sq / m)
    tm = sys.modules["torch"]
    return tm.linalg.vector_norm(r, dim=1).amax() / math.sqrt(m)


Ops = _TorchOps | _NumpyOps


class _Run:
    """The state of one solve: the field with its work budget, and the time reached."""

    def __init__(self, func: Field, shape: tuple[int, ...], ops: Ops, budget: int, max_steps: int,
                 pace: time_budget.Pace | None, into: Callable[[float, Any, Any], None] | None = None) -> None:
        self.func, self.shape, self.ops, self.into = func, shape, ops, into
        self.runs = runs_of(shape)  # the error norm's runs (run_norm)
        self.k_rows: list[Any] = []  # with ``into``: each stage's row of K shaped like the state
        self.budget, self.max_steps, self.pace = budget, max_steps, pace
        self.nfe = 0
        self.t_reached = -math.inf

    def field(self, t: float, z: Any) -> Any:
        self.nfe += 1
        if t > self.t_reached:
            self.t_reached = t
        return self.func(self.ops.time(t), z.reshape(self.shape)).reshape(-1)

    def into_row(self, K: Any, i: int, t: float, z: Any) -> Any:
        """``K[i] = field(t, z)`` (through ``into`` when the solve has it); ``K[i:i + 1]``."""
        if self.into is None:
            K[i] = self.field(t, z)
        else:
            self.nfe += 1
            if t > self.t_reached:
                self.t_reached = t
            self.into(t, z.reshape(self.shape), self.k_rows[i])
        return K[i:i + 1]

    def check(self, steps: int) -> None:
        """Before each step: the time budget, the step budget, a collapsing pace."""
        time_budget.check("integration")  # max_time and stop requests hold inside long solves
        if steps >= self.max_steps or self.nfe + _STAGES > self.budget:
            raise StepAbort(f"the solver took more steps than max_steps={self.max_steps}; {STIFF_REMEDY}",
                            self.t_reached)
        if self.pace is not None and self.pace.hopeless(self.nfe, self.t_reached):
            raise StepAbort(self.pace.message(self.nfe, self.t_reached), self.t_reached)


def _first_step(run: _Run, t0: float, span: float, y: Any, K: Any, rtol: float, atol: float) -> float:
    """Hairer, Norsett & Wanner's starting step for a method of order 5 with a 4th-order estimate,
    with the step control's norm (:func:`run_norm`): ``d1``, ``d2`` are the largest of the runs'
    own, so the step is the smallest of the runs' own ``(0.01 / max(d1, d2))**(1/5)`` (a run at
    rest, with nothing to measure, imposes no tiny step). ``K[0]`` is the derivative at ``y``;
    ``K[1]`` is scratch."""
    f0 = K[0:1]
    scale = atol + rtol * abs(y)

    def norm(x: Any) -> float:
        return float(run_norm(x, run.runs))

    d0, d1 = norm(y / scale), norm(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    f1 = run.into_row(K, 1, t0 + h0, y + h0 * f0)
    d2 = norm((f1 - f0) / scale) / h0
    if not (math.isfinite(d1) and math.isfinite(d2)):
        return h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / 5)
    return min(100 * h0, h1, span)


def dopri5(func: Field, y0: Array, times: Sequence[float], *, rtol: float, atol: float,
           max_steps: int, budget: int, jumps: Sequence[float] = (),
           pace: time_budget.Pace | None = None, out: np.ndarray | None = None,
           into: Callable[[float, np.ndarray, np.ndarray], None] | None = None) -> tuple[Array, int, float]:
    """Integrate ``dy/dt = func(t, y)`` from ``y0`` at ``times[0]`` without autograd.

    Parameters
    ----------
    func : callable
        ``func(t, y) -> dy/dt`` with ``y`` shaped like ``y0``: for a torch ``y0``, ``t`` is a 0-d
        tensor of its dtype; for a NumPy ``y0`` (float64), ``t`` is a float and ``func`` returns
        a NumPy array.
    y0 : Tensor or numpy.ndarray
        Initial state: ``(R, ...)`` for R runs (the first axis of a state with two or more axes;
        a 1-D state is one run). The runs share one step size, that of the most demanding run.
    times : sequence of float
        Output times, strictly increasing, at least two.
    rtol, atol : float
        Tolerances of each run's own error norm at every accepted step (:func:`run_norm`; see
        the module docstring): a run's local error is controlled as in a solve of its own.
    max_steps : int
        Steps (accepted and rejected) the whole solve may take.
    budget : int
        Evaluations of ``func`` the whole solve may make.
    jumps : sequence of float
        Times where ``func`` jumps or kinks: steps end exactly on them (left limit before, right
        limit after), as on the last output time.
    pace : budget.Pace, optional
        Stops a solve whose steps collapse early (stiffness), with its message.
    out : numpy.ndarray, optional
        For a NumPy ``y0``: a float64 array ``(len(times), *y0.shape)`` of any strides to write
        the solution into (and return), e.g. a view in the caller's final layout.
    into : callable, optional
        For a NumPy ``y0``: the same field in place, ``into(t, y, out)`` writing ``func(t, y)``
        into ``out`` (a C-contiguous float64 array shaped like ``y0``). The stages of every step
        are evaluated through it, the first ones and those after a jump too (a network's
        in-place form, :func:`sysid.models.numpy_fields.in_place`, allocates nothing and folds
        its scalings: issue #13).

    Returns
    -------
    (Tensor or numpy.ndarray, int, float)
        ``y`` at ``times`` ``(len(times), *y0.shape)`` (the type of ``y0``), the number of
        evaluations and the furthest time reached.

    Raises
    ------
    StepAbort
        With the reason and the furthest time reached, when the field returns NaN or inf, the
        step size underflows or a budget is spent. The caller words the error.
    """
    tm = sys.modules.get("torch")  # not imported: y0 is NumPy and func needs no torch
    ops: Ops = _TorchOps(y0) if tm is not None and isinstance(y0, tm.Tensor) else _NumpyOps(y0, len(times))
    # NaN and inf are found by the step control and raised as StepAbort: no NumPy warnings
    with tm.no_grad() if tm is not None else contextlib.nullcontext(), np.errstate(all="ignore"):
        t_out = np.asarray(times, dtype=float)
        return _integrate(func, y0, ops, t_out, rtol, atol, max_steps, budget, jumps, pace, out,
                          into if isinstance(ops, _NumpyOps) else None)


def _integrate(func: Field, y0: Array, ops: Ops, t_out: np.ndarray, rtol: float, atol: float,
               max_steps: int, budget: int, jumps: Sequence[float],
               pace: time_budget.Pace | None, given: Any = None,
               into: Callable[[float, Any, Any], None] | None = None) -> tuple[Array, int, float]:
    """The step loop (long: one loop with its control, kept together for speed and reading)."""
    times = t_out.tolist()
    n, t0, t_end = math.prod(y0.shape), times[0], times[-1]
    run = _Run(func, tuple(y0.shape), ops, budget, max_steps, pace, into)
    stops = sorted({float(s) for s in jumps if t0 < s < t_end} | {t_end})
    jump_set = set(stops[:-1])
    a_rows, e_row, p_t = ops.tableau()  # (1, i) each (NumPy: (i,)), (1, 7), (4, 7)
    K, y = ops.empty(7, n), ops.flat(y0)
    if into is not None:
        run.k_rows = [K[i].reshape(run.shape) for i in range(7)]
    out = ops.outputs(len(times), y, run.shape, given)
    run.into_row(K, 0, t0, y)
    if not ops.finite(K[0]):
        raise StepAbort("the vector field returned NaN or inf (the state blew up or left the region "
                        "where the model is defined)", t0)
    t, i_out, steps, stop_i, rejected = t0, 1, 0, 0, False
    h = _first_step(run, t0, t_end - t0, y, K, rtol, atol)
    while i_out < len(times):
        run.check(steps)
        steps += 1
        if not h >= 10.0 * (math.nextafter(t, math.inf) - t):  # SciPy's smallest step
            raise StepAbort("the step size fell below the float resolution (the system became stiff "
                            f"or blew up); {STIFF_REMEDY}", run.t_reached)
        stop = stops[stop_i]
        t1 = t + h
        landing = t1 >= stop
        if landing:
            t1 = stop
        h = t1 - t
        t1_left = ops.nextafter(t1, -math.inf)
        z = ops.stages(run, y, K, a_rows, t, h, t1_left)
        ratio = ops.ratio(e_row, K, y, z, h, rtol, atol, run.runs)
        if not ratio <= 1.0:
            if not math.isfinite(ratio) and not ops.finite(K):
                bad = ops.first_bad_row(K)
                t_bad = t0 if bad == 0 else (t1_left if _C[bad] == 1.0 else t + _C[bad] * h)
                raise StepAbort("the vector field returned NaN or inf (the state blew up or left the "
                                "region where the model is defined)", t_bad)
            factor = _MIN_FACTOR if not math.isfinite(ratio) else max(_MIN_FACTOR, _SAFETY * ratio ** _EXPONENT)
            h *= factor
            rejected = True
            continue
        i_end = bisect.bisect_right(times, t1, lo=i_out)
        if i_end > i_out:  # the outputs inside this step, all at once
            ops.dense(out, t_out, i_out, i_end, t, h, y, p_t @ K)
            i_out = i_end
        y, t = z, t1
        if landing and t1 in jump_set:  # the right limit after a jump
            stop_i += 1
            run.into_row(K, 0, ops.nextafter(t1, math.inf), y)
        else:
            if landing:
                stop_i += 1
            K[0] = K[6]
        factor = _MAX_FACTOR if ratio == 0.0 else min(_MAX_FACTOR, _SAFETY * ratio ** _EXPONENT)
        h *= min(1.0, factor) if rejected else factor
        rejected = False
    ops.finish(out, t_out)
    return ops.result(out, run.shape), run.nfe, max(run.t_reached, t_end)  # t_end: not its left limit
