"""The one solver settings object, its method families and the default of each verb.

One :class:`SolverConfig` says how ``fit``, ``simulate`` and the analysis integrate. Its method picks
the backend: torch (``torchdiffeq`` methods, differentiable, batched) or SciPy
(:func:`scipy.integrate.solve_ivp` methods, including the implicit ones for stiff dynamics).

Defaults per verb (the one place they are written down):

- **fit**: ``rk4``, ``substeps=1``, rtol 1e-4, atol 1e-6, ``max_steps=10_000``. Fixed steps on the
  data's own grid: fast, differentiable, robust in float32; the tolerances only matter when an
  adaptive method is chosen.
- **simulate**: ``dopri5``, rtol 1e-6, atol 1e-8, ``max_steps=100_000``, in float64. Adaptive and
  accurate to about 1e-6 relative per step in every run (each run's own error is controlled);
  ``sysid.simulate`` and the ``sysid simulate`` command share it.
- **analysis** (``predict``, ``compare``, ``report``, limit cycles): ``RK45`` (SciPy), rtol 1e-8,
  atol 1e-10, ``max_steps=100_000``: the analysis measures the dynamics' error, not the solver's.
- **report**: ``RK45`` (SciPy), rtol 1e-6, atol 1e-9, ``max_steps=100_000``: far below the model
  errors a report is about, and fast (a report simulates every run several times).

``SolverConfig()`` with no arguments is the simulate default. :func:`default_solver` returns each
verb's default and :func:`solver_from` reads the shorthands (``"dopri5"`` means that method with the
verb's other defaults).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, final

from sysid.errors import ConfigError

__all__ = [
    "SolverConfig",
    "ADAPTIVE_METHODS",
    "FIXED_METHODS",
    "SCIPY_METHODS",
    "METHODS",
    "VERBS",
    "default_solver",
    "solver_from",
    "STIFF_REMEDY",
]

# torchdiffeq's adaptive methods (names kept: ADAPTIVE_METHODS / FIXED_METHODS are public)
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
# torch fixed-step methods: explicit Runge-Kutta, stepped by sysid itself (sysid.solvers.steps).
# torchdiffeq's Adams multistep methods are not offered: their fixed coefficients assume equal
# steps, and output grids and windows have unequal ones (they gave wrong answers silently).
FIXED_METHODS = ("rk4", "euler", "midpoint", "heun2", "heun3")
# scipy.integrate.solve_ivp methods: explicit (RK45, RK23, DOP853), implicit for stiff dynamics
# (Radau, BDF) and LSODA, which switches between the two
SCIPY_METHODS = ("RK45", "RK23", "DOP853", "LSODA", "Radau", "BDF")
SCIPY_IMPLICIT = ("LSODA", "Radau", "BDF")
METHODS = ADAPTIVE_METHODS + FIXED_METHODS + SCIPY_METHODS

VERBS = ("fit", "simulate", "analysis", "report")

STIFF_REMEDY = ('if the dynamics are stiff (fast and slow time scales together), use an implicit '
                'method: SolverConfig(method="Radau") or method="BDF" (SciPy)')


def _positive(obj: Any, name: str, *, allow_inf: bool = False) -> None:
    v = getattr(obj, name)
    ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0
          and (math.isfinite(v) or (allow_inf and v == math.inf)))
    if not ok:
        raise ConfigError(f"SolverConfig: {name} must be a positive number; got {v!r}.")
    object.__setattr__(obj, name, float(v))


def _count(obj: Any, name: str) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"SolverConfig: {name} must be an integer >= 1; got {v!r}.")


@final
@dataclass(frozen=True, kw_only=True)
class SolverConfig:
    """How to integrate: method, tolerances, steps, work budget, adjoint.

    Parameters
    ----------
    method : str
        torch, adaptive: "dopri5" (default), "dopri8", "bosh3", "fehlberg2", "adaptive_heun".
        torch, fixed step: "rk4", "euler", "midpoint", "heun2", "heun3". SciPy (:func:`scipy.integrate.solve_ivp`, NumPy float64, no gradients):
        "RK45", "RK23", "DOP853", and for stiff dynamics "Radau", "BDF", "LSODA".
    rtol, atol : float
        Relative and absolute tolerances of adaptive methods (positive). See the module docstring
        for each verb's defaults. A solve of many runs (``simulate``, :func:`sysid.solvers.solve`,
        :func:`sysid.solvers.ivp.solve_scipy_runs`) keeps **each run's own** error norm within them
        at every accepted step, as a solve of that run alone would (the runs share the steps of
        the most demanding one). The adaptive solves of a fit (:func:`sysid.solvers.solve_windows`)
        control the root mean square over all the windows of a batch instead.
    step : float or None
        torch fixed-step methods in ``simulate``: the largest step, in the model's time units; each
        interval between consecutive output times is split into ``ceil(gap / step)`` equal steps,
        so every output time is hit exactly. ``None``: ``substeps`` steps per interval.
    substeps : int
        torch fixed-step methods with ``step=None``: steps between two consecutive output times
        (``simulate``) or samples (``fit``), >= 1.
    max_steps : int
        Work budget of one solve: torch methods at most this many steps (adaptive ones count
        rejected steps too); SciPy methods at most ``max_steps * (12 + n_states)`` evaluations of
        the right-hand side (SciPy does not report its steps; an implicit step evaluates it about
        ``n_states`` times for its Jacobian). Exceeding it is a :class:`~sysid.errors.SolverError`,
        never a hang.
    max_step : float or None
        SciPy methods: the largest step in time units (default None: no limit).
    adjoint : bool
        torch methods: differentiate with the adjoint method (``torchdiffeq.odeint_adjoint``):
        memory flat in the number of steps, somewhat slower for short horizons.
    checkpoint_steps : int or None
        torch fixed-step methods, with gradients (a fit's long windows): gradient checkpointing
        over segments of this many steps (:func:`torch.utils.checkpoint.checkpoint`). Only each
        segment's first state and the output states are kept; a segment's steps are recomputed
        during the backward pass. Memory stays bounded by one segment's activations however long
        the horizon, for about one more forward pass of time (``benchmarks/bench_memory.py``).
        ``None`` (default): every step's activations are kept (fastest). Unlike ``adjoint``, the
        gradient is exactly that of direct backpropagation.

    Raises
    ------
    ConfigError
        For an unknown method (listing the valid ones), an out-of-range value, or an option that
        does not apply to the method's family (``step`` or ``adjoint`` with a SciPy method,
        ``max_step`` with a torch method, ``checkpoint_steps`` with an adaptive method or the adjoint).

    Examples
    --------
    >>> SolverConfig(method="rk4", step=0.01).method
    'rk4'
    >>> SolverConfig(method="Radau").backend
    'scipy'
    """

    method: str = "dopri5"
    rtol: float = 1e-6
    atol: float = 1e-8
    step: float | None = None
    substeps: int = 1
    max_steps: int = 100_000
    max_step: float | None = None
    adjoint: bool = False
    checkpoint_steps: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            note = (" (torchdiffeq's Adams methods assume equal steps, which output grids and "
                    "windows do not have)" if str(self.method).endswith("_adams") else "")
            raise ConfigError(
                f"SolverConfig: unknown method {self.method!r}; adaptive methods are "
                f"{list(ADAPTIVE_METHODS)}, fixed-step methods {list(FIXED_METHODS)} (torch), "
                f"SciPy methods {list(SCIPY_METHODS)}{note}."
            )
        _positive(self, "rtol")
        _positive(self, "atol")
        if self.step is not None:
            s = self.step
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s > 0):
                raise ConfigError(f"SolverConfig: step must be a positive number or None; got {s!r}.")
            object.__setattr__(self, "step", float(s))
        _count(self, "substeps")
        _count(self, "max_steps")
        if self.max_step is not None:
            _positive(self, "max_step", allow_inf=True)
        if not isinstance(self.adjoint, bool):
            raise ConfigError(f"SolverConfig: adjoint must be True or False; got {self.adjoint!r}.")
        if self.checkpoint_steps is not None:
            _count(self, "checkpoint_steps")
            if self.adaptive or self.adjoint:
                raise ConfigError(
                    f"SolverConfig: checkpoint_steps={self.checkpoint_steps} applies to the torch "
                    f"fixed-step methods {list(FIXED_METHODS)} without the adjoint; got method "
                    f"{self.method!r}{' with adjoint=True' if self.adjoint else ''}. Use "
                    f"method='rk4' with checkpoint_steps=..., or adjoint=True alone.")
        self._check_family()

    def _check_family(self) -> None:
        if self.backend == "scipy":
            if self.step is not None:
                raise ConfigError(
                    f"SolverConfig: step={self.step} applies to torch fixed-step methods; SciPy's "
                    f"{self.method!r} chooses its own steps (bound them with max_step=...)."
                )
            if self.adjoint:
                raise ConfigError(
                    f"SolverConfig: adjoint=True needs a torch method; SciPy's {self.method!r} "
                    "computes no gradients."
                )
        elif self.max_step is not None:
            raise ConfigError(
                f"SolverConfig: max_step applies to SciPy methods {list(SCIPY_METHODS)}; got "
                f"method {self.method!r} (fixed-step torch methods take step=...)."
            )

    @property
    def backend(self) -> str:
        """``"torch"`` (torchdiffeq and sysid's own steppers) or ``"scipy"`` (``solve_ivp``)."""
        return "scipy" if self.method in SCIPY_METHODS else "torch"

    @property
    def adaptive(self) -> bool:
        """Whether the method chooses its own steps (every SciPy method does)."""
        return self.method not in FIXED_METHODS

    @property
    def implicit(self) -> bool:
        """Whether the method can take stiff dynamics in stride (SciPy's Radau, BDF, LSODA)."""
        return self.method in SCIPY_IMPLICIT

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: SolverConfig | None = None) -> SolverConfig:
        """Settings from a mapping over ``base`` (default ``SolverConfig()``); unknown keys are a
        ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"SolverConfig: unknown keys {unknown}; valid keys are {sorted(known)}.")
        return dataclasses.replace(base if base is not None else cls(), **dict(data))


_DEFAULTS = {
    "fit": SolverConfig(method="rk4", substeps=1, rtol=1e-4, atol=1e-6, max_steps=10_000),
    "simulate": SolverConfig(),
    "analysis": SolverConfig(method="RK45", rtol=1e-8, atol=1e-10, max_steps=100_000),
    "report": SolverConfig(method="RK45", rtol=1e-6, atol=1e-9, max_steps=100_000),
}


def default_solver(verb: str) -> SolverConfig:
    """The default :class:`SolverConfig` of ``"fit"``, ``"simulate"``, ``"analysis"`` or ``"report"``.

    Examples
    --------
    >>> default_solver("fit").method, default_solver("analysis").method
    ('rk4', 'RK45')
    """
    if verb not in _DEFAULTS:
        raise ConfigError(f"default_solver: verb must be one of {list(VERBS)}; got {verb!r}.")
    return _DEFAULTS[verb]


def solver_from(value: SolverConfig | str | Mapping[str, Any] | None, verb: str) -> SolverConfig:
    """A :class:`SolverConfig` from a config, a method name or a mapping, over ``verb``'s defaults.

    ``None`` gives the verb's default; ``"dopri5"`` the verb's default with that method; a mapping
    (a TOML table) the verb's default with those keys replaced.

    Examples
    --------
    >>> solver_from("dopri5", "fit").max_steps
    10000
    """
    base = default_solver(verb)
    if value is None:
        return base
    if isinstance(value, SolverConfig):
        return value
    if isinstance(value, str):
        return dataclasses.replace(base, method=value)
    if isinstance(value, Mapping):
        return SolverConfig.from_dict(value, base=base)
    raise ConfigError(
        f"{verb}: solver must be a SolverConfig, a method name or a table of settings; got "
        f"{type(value).__name__}."
    )
