"""Settings of a fit: :class:`FitConfig`, composed of small frozen parts.

A fit has a handful of top-level settings (``epochs``, ``seed``, ``dtype``, ``max_time``,
``progress``, ``initial_states``, ``known_initial``, ``time_scale``, ``starts``) and one part per
concern, each a frozen keyword-only dataclass validated where it is defined:

==============  ==========================================================================
part            holds
==============  ==========================================================================
``optimizer``   :class:`Optimizer` - first-order optimiser, learning rate and schedule
``shooting``    :class:`Shooting` - single or multiple shooting, the horizon curriculum
``solver``      :class:`~sysid.solvers.SolverConfig` - integration method and tolerances
``loss``        :class:`Loss` - the error model, per-state weights and sigmas
``warm_start``  :class:`WarmStart` - derivative regression before trajectory fitting
``validation``  :class:`Validation` - held-out checks, early stopping, target
``checkpoint``  :class:`Checkpoint` - where and how often the training state is saved
``refine``      :class:`Refine` - the refinement after the first-order stage, standard errors
==============  ==========================================================================

Short forms are accepted for parts: ``loss="sse"`` is ``Loss(kind="sse")``, ``solver="dopri5"``
is ``SolverConfig(method="dopri5")`` with the fit's solver defaults
(``sysid.solvers.config.default_solver("fit")``), ``shooting="single"`` is
``Shooting(method="single")``, ``optimizer="adamw"`` is ``Optimizer(name="adamw")``,
``warm_start=False`` is ``WarmStart(enabled=False)``, ``refine=True`` is
``Refine(enabled=True)``, ``checkpoint="fit.pt"`` is ``Checkpoint(path="fit.pt")``; a mapping is
read with the part's ``from_dict``.

In TOML, ``[fit]`` holds the top-level keys and ``[fit.optimizer]``, ``[fit.shooting]``, ... one
table per part. An unknown key is a :class:`~sysid.errors.ConfigError` naming it (with a "did you
mean"); a key of the former flat layout (``lr``, ``horizons``, ``polish``, ...) is an error
naming its new place.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, final

from sysid.errors import ConfigError
from sysid.solvers import SolverConfig
from sysid.solvers.config import ADAPTIVE_METHODS, FIXED_METHODS, default_solver, solver_from

#: torch methods a fit can differentiate through (SciPy's methods compute no gradients)
FIXED_SOLVERS = FIXED_METHODS
ADAPTIVE_SOLVERS = ADAPTIVE_METHODS
OPTIMIZERS = ("adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "plateau", "none")
SHOOTING_METHODS = ("auto", "single", "multiple")
INITIAL_STATES = ("measured", "free")
DTYPES = ("float32", "float64")
TIME_SCALES = ("characteristic", "duration")
#: Loss kinds: the error models of :mod:`sysid.estimation.error_models`. "log" is an alias of
#: "lognormal".
LOSSES = ("nmse", "sse", "wls", "gaussian", "lognormal", "log", "poisson", "relative")


# keys of the former flat FitConfig -> (part, key in that part)
MOVED_KEYS: dict[str, tuple[str, str]] = {
    **{k: ("optimizer", k) for k in ("lr", "weight_decay", "schedule", "min_lr_factor",
                                     "plateau_patience", "grad_clip", "batch_windows",
                                     "max_rollbacks")},
    **{k: ("shooting", k) for k in ("horizons", "stage_epochs", "stride", "final_stride",
                                    "continuity")},
    **{k: ("solver", k) for k in ("substeps", "rtol", "atol", "max_steps", "adjoint")},
    **{k: ("loss", k) for k in ("weights", "neural_penalty")},
    "warm_start_epochs": ("warm_start", "epochs"),
    "warm_start_lr": ("warm_start", "lr"),
    "smoothing_points": ("warm_start", "smoothing_points"),
    "validation_fraction": ("validation", "fraction"),
    "validate_every": ("validation", "every"),
    "patience": ("validation", "patience"),
    "target": ("validation", "target"),
    "checkpoint_every": ("checkpoint", "every"),
    "polish": ("refine", "enabled"),
    "polish_iterations": ("refine", "max_iterations"),
    "stderr": ("refine", "stderr"),
}


# ---------------------------------------------------------------------------------------------
# value checks shared by the parts (``owner`` names the class in the message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(owner: str, name: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{owner}: {name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _pos(owner: str, name: str, value: Any) -> float:
    if not _is_num(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{owner}: {name} must be a finite number > 0; got {value!r}.")
    return float(value)


def _nonneg(owner: str, name: str, value: Any) -> float:
    if not _is_num(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{owner}: {name} must be a finite number >= 0; got {value!r}.")
    return float(value)


def _bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}: {name} must be True or False; got {value!r}.")
    return value


def _choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{owner}: {name} must be one of {', '.join(repr(c) for c in choices)}; "
                          f"got {value!r}.{hint}")
    return value


def _ints(owner: str, name: str, value: Any, minimum: int, what: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{owner}: {name} must be a list of {what}; got {value!r}.")
    items = tuple(value)
    if not items or any(not _is_int(v) or v < minimum for v in items):
        raise ConfigError(f"{owner}: {name} must be a non-empty list of {what}; got {value!r}.")
    return tuple(int(v) for v in items)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _plain(obj: Any) -> None:
    """NumPy scalars (``np.int64(3)``, ``np.float32(0.1)``, also inside tuples and mappings) as
    the Python numbers they hold, so that settings computed with NumPy are accepted and written
    to JSON/TOML like any other."""
    import numpy as np

    def convert(v: Any) -> Any:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, (list, tuple)) and any(isinstance(x, np.generic) for x in v):
            return type(v)(convert(x) for x in v)
        if isinstance(v, Mapping) and any(isinstance(x, np.generic) for x in v.values()):
            return {k: convert(x) for k, x in v.items()}
        return v

    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        new = convert(value)
        if new is not value:
            _set(obj, f.name, new)


def _unknown_key(where: str, key: Any, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"{where}: unknown option {key!r}.{hint} Valid options: {', '.join(known)}.")


class _Part:
    """Shared conversions of the parts (``from_dict`` rejecting unknown keys, ``to_dict``)."""

    _table: ClassVar[str] = ""  # the TOML table, e.g. "fit.optimizer"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # an unknown keyword is a ConfigError naming the closest options (not a bare TypeError)
        known = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        for key in kwargs:
            if key not in known:
                raise _unknown_key(cls.__name__, key, known)
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # every part first turns NumPy scalars into Python numbers, then checks its values
        super().__init_subclass__(**kwargs)
        post = cls.__dict__.get("__post_init__")
        if post is not None:
            def __post_init__(self: Any, _check: Any = post) -> None:
                _plain(self)
                _check(self)

            cls.__post_init__ = __post_init__  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> Any:
        """The part from a mapping (e.g. a TOML table); an unknown key is a ConfigError."""
        where = f"[{cls._table}]"
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}: expected a table of options; got {options!r}.")
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        for key in options:
            if key not in known:
                raise _unknown_key(where, key, known)
        try:
            return cls(**dict(options))
        except TypeError as exc:  # pragma: no cover - a wrong type the checks let through
            raise ConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly mapping (tuples as lists); ``from_dict`` reads it back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


@final
@dataclass(frozen=True, kw_only=True)
class Optimizer(_Part):
    """The first-order optimiser of the trajectory fit.

    Parameters
    ----------
    name : {"adam", "adamw", "rmsprop"}
        The optimiser.
    lr : float
        Learning rate.
    weight_decay : float
        Weight decay of the neural weights (physical parameters and initial states never decay).
    schedule : {"cosine", "plateau", "none"}
        Cosine decay to ``lr * min_lr_factor`` over all epochs, or halving the rate when the
        monitored loss stops improving for ``plateau_patience`` epochs, or a constant rate.
    min_lr_factor : float
        Final rate of the cosine schedule as a fraction of ``lr``, in (0, 1].
    plateau_patience : int
        Epochs without improvement before the "plateau" schedule halves the rate.
    grad_clip : float or None
        Clip the global gradient norm to this value (None: no clipping).
    batch_windows : int or None
        Windows per optimiser step (a random subset without replacement); None: all windows of
        all runs in one batched solve, one step per epoch.
    max_rollbacks : int
        Failed steps (non-finite loss, solver failure, blow-up) rolled back before the fit stops
        with ``StopReason.DIVERGED``.
    """

    _table: ClassVar[str] = "fit.optimizer"

    name: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    schedule: str = "cosine"
    min_lr_factor: float = 0.05
    plateau_patience: int = 20
    grad_clip: float | None = 10.0
    batch_windows: int | None = None
    max_rollbacks: int = 8

    def __post_init__(self) -> None:
        o = "Optimizer"
        _choice(o, "name", self.name, OPTIMIZERS)
        _set(self, "lr", _pos(o, "lr", self.lr))
        _set(self, "weight_decay", _nonneg(o, "weight_decay", self.weight_decay))
        _choice(o, "schedule", self.schedule, SCHEDULES)
        if not _is_num(self.min_lr_factor) or not 0.0 < self.min_lr_factor <= 1.0:
            raise ConfigError(f"Optimizer: min_lr_factor must lie in (0, 1]; got {self.min_lr_factor!r}.")
        _int(o, "plateau_patience", self.plateau_patience, 1)
        if self.grad_clip is not None:
            _set(self, "grad_clip", _pos(o, "grad_clip", self.grad_clip))
        if self.batch_windows is not None:
            _int(o, "batch_windows", self.batch_windows, 1)
        _int(o, "max_rollbacks", self.max_rollbacks, 0)


@final
@dataclass(frozen=True, kw_only=True)
class Shooting(_Part):
    """How trajectories are cut into windows: single shooting, multiple shooting, or chosen.

    Parameters
    ----------
    method : {"auto", "single", "multiple"}
        "single": one window per run from its first sample over the whole run (the classical
        least-squares fit of an ODE; every sample counts once, the initial state is the only
        one estimated). "multiple": windows of the ``horizons`` curriculum starting every
        ``stride`` samples, tied by a ``continuity`` penalty; it fits long and oscillating series
        that single shooting would collapse to their mean. "auto" (default) picks single
        shooting for short, non-oscillating series and multiple shooting for long or oscillating
        ones, or when any of the multiple-shooting settings below differs from its default; the
        rule is :func:`sysid.training.shooting.choose_method`, and the choice is reported in
        ``FitResult.solver_stats["shooting"]`` and the fit's message.
    horizons : tuple of int
        Multiple shooting: window lengths in samples (each >= 2), used one after another; short
        windows first make long oscillating series fit without collapsing to the mean.
    stage_epochs : tuple of int or None
        Multiple shooting: epochs of each horizon (they must add up to ``FitConfig.epochs``);
        None splits the epochs evenly (the last stage takes the rest).
    stride : int
        Multiple shooting: samples between the starts of consecutive windows of a run.
    final_stride : int or None
        Stride of the last stage. None: with ``initial_states="free"``, ``horizon - 1``, so
        windows share only their end points and every sample counts once (overlapping windows
        with free starts count late samples more often and biased the hare-lynx rates by
        7-8 %); with ``initial_states="measured"``, ``stride`` (overlapping windows average out
        the noise of the measured starting points).
    continuity : float
        Multiple shooting: weight of the penalty tying each window's free initial state to the
        prediction of the windows that run through its start.
    """

    _table: ClassVar[str] = "fit.shooting"
    _MULTIPLE_ONLY: ClassVar[tuple[str, ...]] = ("horizons", "stage_epochs", "stride",
                                                  "final_stride", "continuity")

    method: str = "auto"
    horizons: tuple[int, ...] = (5, 10, 20)
    stage_epochs: tuple[int, ...] | None = None
    stride: int = 1
    final_stride: int | None = None
    continuity: float = 1.0

    def __post_init__(self) -> None:
        o = "Shooting"
        _choice(o, "method", self.method, SHOOTING_METHODS)
        _set(self, "horizons", _ints(o, "horizons", self.horizons, 2, "window lengths >= 2 samples"))
        if self.stage_epochs is not None:
            stages = _ints(o, "stage_epochs", self.stage_epochs, 1, "positive epoch counts")
            if len(stages) != len(self.horizons):
                raise ConfigError(
                    f"Shooting: stage_epochs must give one positive epoch count per horizon "
                    f"({len(self.horizons)} horizons {self.horizons}); got {self.stage_epochs!r}.")
            _set(self, "stage_epochs", stages)
        _int(o, "stride", self.stride, 1)
        if self.final_stride is not None:
            _int(o, "final_stride", self.final_stride, 1)
        _set(self, "continuity", _nonneg(o, "continuity", self.continuity))
        if self.method == "single" and self.curriculum_given:
            changed = [k for k in self._MULTIPLE_ONLY if getattr(self, k) != _SHOOTING_DEFAULTS[k]]
            raise ConfigError(
                f"Shooting: method='single' fits one window per run from its first sample, so "
                f"{changed} (settings of multiple shooting) do not apply; remove them, or use "
                f"method='multiple'.")

    @property
    def curriculum_given(self) -> bool:
        """Whether any multiple-shooting setting differs from its default."""
        return any(getattr(self, k) != _SHOOTING_DEFAULTS[k] for k in self._MULTIPLE_ONLY)


_SHOOTING_DEFAULTS = {"horizons": (5, 10, 20), "stage_epochs": None, "stride": 1,
                      "final_stride": None, "continuity": 1.0}


@final
@dataclass(frozen=True, kw_only=True)
class Loss(_Part):
    """The error model: how predictions are compared with the measurements.

    Parameters
    ----------
    kind : str
        The error model (:mod:`sysid.estimation.error_models`). "nmse": squared error of each
        state divided by its spread in the data (scale-free, the former "mse"); "sse": plain
        least squares in data units; "wls": weighted least squares with known per-state
        ``sigma``; "gaussian": Gaussian maximum likelihood with an unknown sigma per state,
        estimated; "lognormal" (alias "log"): squared error of logarithms (positive quantities
        with multiplicative noise); "poisson": Poisson counts; "relative": squared error
        relative to the measured magnitude.
    weights : mapping of str to float or None
        Per-state weights (measured states only; missing names weigh 1).
    sigma : mapping of str to float or None
        Known noise standard deviation of each measured state, in its units (required by
        "wls" and used by it only).
    neural_penalty : float
        Hybrid models: weight of the mean squared neural correction (relative to the spread of
        the measured derivatives) at the smoothed data; it keeps the physical parameters
        meaningful.
    """

    _table: ClassVar[str] = "fit.loss"

    kind: str = "nmse"
    weights: Mapping[str, float] | None = None
    sigma: Mapping[str, float] | None = None
    neural_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.kind == "mse":
            raise ConfigError(
                "Loss: kind 'mse' was renamed: use 'nmse' for the spread-normalised squared error "
                "it meant (each state's error divided by its spread), or 'sse' for plain least "
                "squares in data units.")
        _choice("Loss", "kind", self.kind, LOSSES)
        if self.kind == "log":
            _set(self, "kind", "lognormal")
        _set(self, "weights", _state_numbers("weights", self.weights, allow_zero=True))
        _set(self, "sigma", _state_numbers("sigma", self.sigma, allow_zero=False))
        if self.kind == "wls" and not self.sigma:
            raise ConfigError(
                "Loss: kind 'wls' (weighted least squares) needs the noise standard deviation of "
                "each measured state: Loss(kind='wls', sigma={'x': 0.1, ...}) or [fit.loss] "
                "sigma = { x = 0.1 }. Use kind='gaussian' to estimate the sigmas instead.")
        if self.sigma and self.kind != "wls":
            raise ConfigError(
                f"Loss: sigma is used by kind='wls' only; got kind={self.kind!r}. Remove sigma, "
                f"or use kind='wls'.")
        _set(self, "neural_penalty", _nonneg("Loss", "neural_penalty", self.neural_penalty))


def _state_numbers(name: str, value: Any, *, allow_zero: bool) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"Loss: {name} must map state names to numbers; got {value!r}.")
    clean: dict[str, float] = {}
    for key, v in value.items():
        ok = _is_num(v) and math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
        if not ok:
            need = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"Loss: {name[:-1] if name == 'weights' else name} of {key!r} must "
                              f"be a finite number {need}; got {v!r}.")
        clean[str(key)] = float(v)
    return clean


@final
@dataclass(frozen=True, kw_only=True)
class WarmStart(_Part):
    """Regression of the vector field on smoothed derivatives before trajectory fitting.

    Parameters
    ----------
    enabled : bool
        Run it (it needs every state measured, or latent velocities of a second-order model
        whose positions are measured; otherwise it is skipped and the reason recorded).
    epochs : int
        Adam steps, or with ``method="lbfgs"`` the most objective evaluations (0: skip).
    lr : float
        Adam's learning rate (cosine decay to a tenth over ``epochs``).
    smoothing_points : int
        Samples in each local polynomial fit (odd, >= 3) used for derivatives, smoothed initial
        guesses and the characteristic time.
    method : {"adam", "lbfgs"}
        "adam": Adam steps, then L-BFGS for fields of at most 64 parameters (physics and small
        hybrids); "lbfgs": full-batch L-BFGS from the start in rounds of 10 iterations (at most
        ``epochs`` evaluations). L-BFGS fits the derivatives closer in ~60 evaluations, but that
        did not bring the default network to the held-out target of ``bench_fit_speed.py`` in
        fewer trajectory epochs, so it is not the default.
    plateau : float
        For fields without physics parameters (networks): stop when 25 Adam steps (or one L-BFGS
        round) lower the best objective by less than this share of it (0: never; in [0, 1)).
        Fields with physics parameters run all ``epochs``: the warm start is their direct
        estimate, and a hybrid's drift slowly from a poor start. For a network the warm start is a
        rough start: the default network's fit to the noisy smoothed derivatives of
        ``bench_fit_speed.py``'s task gains ~30 % from step 50 to 75 and less after; stopping
        there (0.4: ~75 steps) reached the held-out target in as few trajectory epochs over 20
        seeds (median 57.5, mean 121) as stopping at ~125 steps (0.1: 67.5, 141) or after 100
        (57.5, 127); the epochs vary with the seed far more than with the warm start's length.
        Without a warm start it took longer (median 90 over 10 seeds).
    """

    _table: ClassVar[str] = "fit.warm_start"

    enabled: bool = True
    epochs: int = 300
    lr: float = 1e-2
    smoothing_points: int = 7
    method: str = "adam"
    plateau: float = 0.4

    def __post_init__(self) -> None:
        _bool("WarmStart", "enabled", self.enabled)
        _int("WarmStart", "epochs", self.epochs, 0)
        _set(self, "lr", _pos("WarmStart", "lr", self.lr))
        _int("WarmStart", "smoothing_points", self.smoothing_points, 3)
        _choice("WarmStart", "method", self.method, ("adam", "lbfgs"))
        if not _is_num(self.plateau) or not 0.0 <= self.plateau < 1.0:
            raise ConfigError(f"WarmStart: plateau must lie in [0, 1); got {self.plateau!r}. Use "
                              f"0 to run all epochs.")
        _set(self, "plateau", float(self.plateau))
        if self.smoothing_points % 2 == 0:
            raise ConfigError(
                f"WarmStart: smoothing_points must be odd (a centred window); got "
                f"{self.smoothing_points}. Use {self.smoothing_points + 1}.")


@final
@dataclass(frozen=True, kw_only=True)
class Validation(_Part):
    """Held-out checks during training.

    Parameters
    ----------
    fraction : float
        When ``fit`` gets no ``validation`` dataset: hold out this last fraction of each run's
        time span (0: no validation), in [0, 1).
    every : int
        Epochs between two validation simulations.
    patience : int or None
        Early stopping: validation checks without improvement in the final curriculum stage
        before stopping (None: never stop early).
    target : float or None
        Stop as soon as the validation NRMSE is at or below this value.
    """

    _table: ClassVar[str] = "fit.validation"

    fraction: float = 0.0
    every: int = 10
    patience: int | None = None
    target: float | None = None

    def __post_init__(self) -> None:
        if not _is_num(self.fraction) or not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"Validation: fraction must lie in [0, 1); got {self.fraction!r}.")
        _int("Validation", "every", self.every, 1)
        if self.patience is not None:
            _int("Validation", "patience", self.patience, 1)
        if self.target is not None:
            _set(self, "target", _pos("Validation", "target", self.target))


@final
@dataclass(frozen=True, kw_only=True)
class Checkpoint(_Part):
    """Periodic, atomic saves of the training state.

    Parameters
    ----------
    path : str or None
        File the training state is written to every ``every`` epochs and at the end; pass it to
        ``fit(..., resume_from=...)`` to continue. None: no checkpoints.
    every : int
        Epochs between checkpoints.
    """

    _table: ClassVar[str] = "fit.checkpoint"

    path: str | None = None
    every: int = 50

    def __post_init__(self) -> None:
        if self.path is not None:
            if not isinstance(self.path, (str, os.PathLike)):
                raise ConfigError(f"Checkpoint: path must be a file name or None; got {self.path!r}.")
            _set(self, "path", os.fspath(self.path))
        _int("Checkpoint", "every", self.every, 1)


@final
@dataclass(frozen=True, kw_only=True)
class Refine(_Part):
    """The joint least-squares refinement after (or, for small physics models, instead of) the
    first-order stage, and the standard errors (see :mod:`sysid.estimation`).

    Every estimated quantity that is not a network weight - free physical parameters, free and
    latent initial states, noise levels - is refined together by single-shooting least squares
    (SciPy's Levenberg-Marquardt / trust-region method, Jacobians by torch), network weights held
    fixed; the fit reports how it converged.

    Parameters
    ----------
    enabled : bool
        Run the refinement.
    first_order : {"auto", "always"}
        "auto": a model without network weights goes straight to the least-squares estimator from
        its starting values; the first-order stage (warm start and epochs) runs only when that fit
        is poor (not converged, or explaining less than 75 % of the data's variation as the error
        model weighs it), and the better of the two is kept; a first-order setting changed from
        its default (``epochs``, ``optimizer``, ``shooting``, ``warm_start``, ``validation``,
        ``checkpoint``) means a planned first-order stage, which then runs first. "always": run
        the first-order stage first.
    method : {"auto", "lm", "trf"}
        SciPy's least-squares method ("lm" needs at least as many residuals as unknowns; "auto"
        uses it then and "trf" otherwise).
    max_iterations : int
        Budget of residual evaluations (SciPy's ``max_nfev``; one per iteration plus rejected steps).
    ftol : float
        Converged when a full Gauss-Newton step would lower the cost by less than this fraction.
    accuracy : float
        The RK4 step of the refinement is halved until the predictions change by less than this
        fraction of each state's residual noise level.
    max_unknowns : int
        Refine only problems with at most this many unknowns.
    stderr : bool
        Covariance, standard errors and 95 % intervals from the Jacobian at the optimum.
    """

    _table: ClassVar[str] = "fit.refine"

    enabled: bool = True
    first_order: str = "auto"
    method: str = "auto"
    max_iterations: int = 400
    ftol: float = 1e-10
    accuracy: float = 1e-2
    max_unknowns: int = 400
    stderr: bool = True

    def __post_init__(self) -> None:
        _bool("Refine", "enabled", self.enabled)
        _choice("Refine", "first_order", self.first_order, ("auto", "always"))
        _choice("Refine", "method", self.method, ("auto", "lm", "trf"))
        _int("Refine", "max_iterations", self.max_iterations, 1)
        _set(self, "ftol", _pos("Refine", "ftol", self.ftol))
        _set(self, "accuracy", _pos("Refine", "accuracy", self.accuracy))
        _int("Refine", "max_unknowns", self.max_unknowns, 1)
        _bool("Refine", "stderr", self.stderr)


# how each part field is built from a short form, and its TOML table
_PARTS: dict[str, type] = {"optimizer": Optimizer, "shooting": Shooting, "solver": SolverConfig,
                           "loss": Loss, "warm_start": WarmStart, "validation": Validation,
                           "checkpoint": Checkpoint, "refine": Refine}
_SHORT_KEY = {"optimizer": ("name", str), "shooting": ("method", str), "solver": ("method", str),
              "loss": ("kind", str), "warm_start": ("enabled", bool), "refine": ("enabled", bool),
              "checkpoint": ("path", (str, os.PathLike))}


def _fit_solver() -> SolverConfig:
    return default_solver("fit")


def _coerce_part(name: str, value: Any) -> Any:
    """A part from its object, short form or mapping (the fit's solver defaults for ``solver``)."""
    cls = _PARTS[name]
    if isinstance(value, cls):
        return value
    short = _SHORT_KEY.get(name)
    if short is not None and isinstance(value, short[1]) and not (
            short[1] is str and isinstance(value, bool)):
        value = {short[0]: value}
    if isinstance(value, Mapping):
        if name == "solver":
            known = [f.name for f in dataclasses.fields(SolverConfig)]
            for key in value:
                if key not in known:
                    raise _unknown_key("[fit.solver]", key, known)
            return solver_from(value, "fit")
        return cls.from_dict(value)
    forms = f"a {cls.__name__}" + (f", a {short[1].__name__ if isinstance(short[1], type) else 'str'}"
                                   if short else "") + " or a mapping"
    raise ConfigError(f"FitConfig: {name} must be {forms}; got {value!r}.")


def _moved_message(key: str) -> str:
    part, new = MOVED_KEYS[key]
    cls = _PARTS[part].__name__
    return (f"FitConfig: {key!r} moved to the {part} part: [fit.{part}] {new} in TOML, "
            f"FitConfig({part}={cls}({new}=...)) in Python, --set {part}.{new}=... on the "
            f"command line.")


@final
@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """All options of :func:`sysid.fit`.

    Parameters
    ----------
    epochs : int
        Number of epochs. One epoch is one pass over all windows of all runs.
    seed : int
        Seed of every random choice of the fit (window batches); same seed, same result.
    dtype : {"float32", "float64"}
        Floating-point type of the training tensors and of the trained model.
    max_time : float or None
        Wall-clock budget in seconds; the fit stops (keeping the best model) when it is spent.
    progress : bool
        Show progress: a tqdm bar when stderr is a terminal, else one line on stderr about
        every 10 s. ``TQDM_DISABLE=1`` silences both.
    initial_states : {"measured", "free"}
        How each window starts for the measured states: from the measurement (missing values
        from a local polynomial smoother), or as free parameters estimated with the model.
        Unmeasured (latent) states always start from a free value per window start.
    known_initial : tuple of str
        States whose value at each run's first sample is known, so it is not estimated: a
        measured state starts from its measurement, an unmeasured one from the model's
        ``latent_initial``.
    time_scale : {"characteristic", "duration"} or float
        Time unit of neural terms (see :func:`sysid.data.compute_scaling`).
    starts : int
        Number of starting points of a multi-start fit (1: the model's own values only).
    optimizer, shooting, solver, loss, warm_start, validation, checkpoint, refine
        The parts (see the module docstring for their short forms).

    Examples
    --------
    >>> cfg = FitConfig(epochs=50, loss="sse", shooting="single", optimizer=Optimizer(lr=0.05))
    >>> cfg.loss.kind, cfg.shooting.method, cfg.optimizer.lr, cfg.solver.method
    ('sse', 'single', 0.05, 'rk4')
    >>> FitConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    epochs: int = 300
    seed: int = 0
    dtype: str = "float32"
    max_time: float | None = None
    progress: bool = True
    initial_states: str = "measured"
    known_initial: tuple[str, ...] = ()
    time_scale: str | float = "characteristic"
    starts: int = 1
    optimizer: Optimizer = field(default_factory=Optimizer)
    shooting: Shooting = field(default_factory=Shooting)
    solver: SolverConfig = field(default_factory=_fit_solver)
    loss: Loss = field(default_factory=Loss)
    warm_start: WarmStart = field(default_factory=WarmStart)
    validation: Validation = field(default_factory=Validation)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    refine: Refine = field(default_factory=Refine)

    def __new__(cls, *args: Any, **kwargs: Any) -> FitConfig:
        # a keyword of the former flat layout: say where it went (instead of a bare TypeError)
        known = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        for key in kwargs:
            if key in MOVED_KEYS:
                raise ConfigError(_moved_message(key))
            if key not in known:
                raise _unknown_key("FitConfig", key, known)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        o = "FitConfig"
        _plain(self)
        for name in _PARTS:
            _set(self, name, _coerce_part(name, getattr(self, name)))
        _int(o, "epochs", self.epochs, 1)
        _int(o, "seed", self.seed, 0)
        if self.seed > 2**63 - 1:
            raise ConfigError(f"FitConfig: seed must be at most 2**63 - 1 (a 64-bit seed); got "
                              f"{self.seed}.")
        _choice(o, "dtype", self.dtype, DTYPES)
        if self.max_time is not None:
            _set(self, "max_time", _pos(o, "max_time", self.max_time))
        _bool(o, "progress", self.progress)
        _choice(o, "initial_states", self.initial_states, INITIAL_STATES)
        known = self.known_initial
        if isinstance(known, str) or not hasattr(known, "__iter__") or not all(
                isinstance(n, str) for n in known):
            raise ConfigError(f"FitConfig: known_initial must be a list of state names; got {known!r}.")
        _set(self, "known_initial", tuple(known))
        ts = self.time_scale
        if isinstance(ts, str) and ts not in TIME_SCALES or not isinstance(ts, str) and not (
                _is_num(ts) and math.isfinite(ts) and ts > 0):
            raise ConfigError(f"FitConfig: time_scale must be one of {list(TIME_SCALES)} or a "
                              f"positive number; got {ts!r}.")
        if not isinstance(ts, str) and not 1e-150 <= ts <= 1e150:
            raise ConfigError(f"FitConfig: time_scale {ts!r} is outside 1e-150 to 1e150, where "
                              f"float64 time steps and their squares stay finite; give the time "
                              f"unit of the dynamics in the data's time units.")
        _int(o, "starts", self.starts, 1)
        self._check_across_parts()

    def _check_across_parts(self) -> None:
        solver = self.solver
        if solver.method not in FIXED_SOLVERS + ADAPTIVE_SOLVERS:
            raise ConfigError(
                f"FitConfig: solver method {solver.method!r} is a SciPy method, which computes no "
                f"gradients; a fit needs a torch method: fixed-step {list(FIXED_SOLVERS)} or "
                f"adaptive {list(ADAPTIVE_SOLVERS)}.")
        if solver.step is not None:
            raise ConfigError(
                f"FitConfig: solver step={solver.step} is not used by fit, whose fixed-step "
                f"solvers take `substeps` steps between consecutive samples of each window; set "
                f"SolverConfig(substeps=...) instead.")
        if solver.adjoint and not solver.adaptive:
            raise ConfigError(
                f"FitConfig: solver adjoint=True needs an adaptive method "
                f"({', '.join(ADAPTIVE_SOLVERS)}); got method={solver.method!r}. Fixed-step "
                f"solvers backpropagate directly.")
        stages = self.shooting.stage_epochs
        if stages is not None and sum(stages) != self.epochs:
            raise ConfigError(
                f"FitConfig: shooting.stage_epochs {stages} add up to {sum(stages)} but epochs is "
                f"{self.epochs}; make them agree.")

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> FitConfig:
        """Build a config from a mapping (e.g. the ``[fit]`` TOML table with its sub-tables).

        Parts are given as nested mappings (``{"optimizer": {"lr": 0.01}}``) or short forms
        (``{"loss": "sse"}``); a dotted key changes one field of a part on top of what the
        mapping gives for it (``{"solver": "dopri5", "solver.rtol": 1e-6}``, as ``--set`` does).

        Raises
        ------
        ConfigError
            For an unknown key (with the closest valid names), a key of the former flat layout
            (naming its new place) or an invalid value.

        Examples
        --------
        >>> FitConfig.from_dict({"epochs": 10, "shooting": {"horizons": [4, 8]}}).shooting.horizons
        (4, 8)
        """
        if not isinstance(options, Mapping):
            raise ConfigError(f"FitConfig.from_dict: expected a mapping; got {type(options).__name__}.")
        known = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        dotted: dict[str, dict[str, Any]] = {}
        for key, value in options.items():
            head, dot, rest = str(key).partition(".")
            if head in MOVED_KEYS and not dot:
                raise ConfigError(_moved_message(head))
            if head not in known or dot and (head not in _PARTS or not rest):
                raise _unknown_key("[fit]", key, known)
            if dot:
                dotted.setdefault(head, {})[rest] = value
            else:
                values[head] = value
        for part, changes in dotted.items():  # "optimizer.lr" on top of the optimizer given
            base = _coerce_part(part, values.get(part, {})).to_dict()
            values[part] = {**base, **changes}
        if isinstance(values.get("known_initial"), list):
            values["known_initial"] = tuple(values["known_initial"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain mapping (one dict per part); ``FitConfig.from_dict(c.to_dict()) == c``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _PARTS:
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def flatten(options: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 1}}`` -> ``{"optimizer.lr": 1}`` (to compare two configs key by key)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and key in _PARTS and not prefix:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


__all__ = ["FitConfig", "Optimizer", "Shooting", "Loss", "WarmStart", "Validation", "Checkpoint",
           "Refine", "SolverConfig", "FIXED_SOLVERS", "ADAPTIVE_SOLVERS", "LOSSES", "MOVED_KEYS",
           "flatten"]
