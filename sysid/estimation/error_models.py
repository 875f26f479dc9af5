"""Error models: what a fit minimises, written as a statistical model of the measurement noise.

Every error model turns predictions ``yhat`` and measurements ``y`` of the observed states into
per-sample residuals whose sum of squares is (up to constants) the negative log-likelihood, so every
fit is a least-squares problem a Levenberg-Marquardt solver can finish. All tensors here are in the
user's units, with the observed states on the last axis; ``mask`` marks the measured entries (missing
values and padding are False and contribute nothing). ``spread`` is each state's standard deviation in
the training data (the unit of ``"nmse"`` and of the positivity floors).

The Gaussian family (everything but ``"poisson"``) reads::

    g(y_i) = g(yhat_i) + a_i * c_s * eps_i,    eps_i ~ N(0, 1)

with ``g`` the identity (``"lognormal"``: the logarithm), ``a_i`` a known scale per entry and ``c_s``
the noise level: known (``"wls"``), one value for all states (``"sse"``, ``"nmse"``, ``"relative"``,
``"lognormal"``) or one per state (``"gaussian"``), estimated by maximum likelihood. Per-state
``weights`` ``w_s`` divide ``a_i`` by ``sqrt(w_s)`` (weight 0 drops the state).

============  ==========================  ==============  ======================================
kind          residual ``e_i``            scale ``a_i``   noise level
============  ==========================  ==============  ======================================
sse           ``y - yhat``                1               one sigma (data units), estimated
wls           ``y - yhat``                sigma_s (given) known
gaussian      ``y - yhat``                1               sigma_s per state, estimated
lognormal     ``log y - log yhat``        1               one sigma (log units), estimated
nmse          ``y - yhat``                spread_s        one factor of the spread, estimated
relative      ``y - yhat``                ``|y| + floor`` one factor (a fraction), estimated
poisson       deviance residual           --              none (variance = mean)
============  ==========================  ==============  ======================================

``"gaussian"`` is the concentrated likelihood: with ``sigma_s^2 = SSE_s / n_s`` the negative
log-likelihood is ``sum_s n_s/2 log(SSE_s / n_s)`` plus constants; as a least-squares problem it is
solved by re-weighting (residuals ``e / sigma_s`` with ``sigma_s`` fixed, then ``sigma_s`` updated),
whose fixed points are its stationary points.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, final

import torch
from torch.nn import functional as F

from sysid.errors import ConfigError, DataError

__all__ = [
    "ErrorModel",
    "SSE",
    "WLS",
    "Gaussian",
    "Lognormal",
    "Poisson",
    "NMSE",
    "Relative",
    "KINDS",
    "ALIASES",
    "make_error_model",
    "information_criteria",
]

KINDS = ("sse", "wls", "gaussian", "lognormal", "poisson", "nmse", "relative")
ALIASES = {"log": "lognormal"}

# predictions enter logs (lognormal) and Poisson means through a smooth positive floor of this
# fraction of each state's spread: floor * softplus(yhat / floor) equals yhat to 1e-4 relative once
# yhat > 10 floor, and keeps a gradient when a prediction dips below zero
_FLOOR = 1e-3
# below this, log(softplus(z)) equals z to float64 precision (softplus(z) = exp(z) (1 + O(exp(z))))
_LOG_SOFTPLUS_CUT = -30.0
_LOG_2PI = math.log(2.0 * math.pi)


def _log_positive(x: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """``log(floor * softplus(x / floor))`` without underflow far below the floor."""
    z = x / floor
    log_sp = torch.where(z > _LOG_SOFTPLUS_CUT,
                         torch.log(F.softplus(z.clamp(min=_LOG_SOFTPLUS_CUT))), z)
    return torch.log(floor) + log_sp


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.zeros_like(x))


def _per_state(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the last of the masked entries: ``(S,)``."""
    flat = _masked(x, mask).reshape(-1, x.shape[-1])
    return flat.sum(0)


@dataclass(frozen=True, kw_only=True)
class ErrorModel(abc.ABC):
    """A measurement-noise model of the observed states (abstract; see the module docstring).

    Parameters
    ----------
    states : tuple of str
        The observed states, in the order of the last axis of every tensor passed in.
    weights : tuple of float or None
        Per-state weights (>= 0; 0 leaves the state out of the fit), or None for all 1.
    """

    states: tuple[str, ...]
    weights: tuple[float, ...] | None = None

    kind: ClassVar[str] = ""
    #: "none" (known scale), "common" (one estimated level) or "state" (one per state)
    sigma_kind: ClassVar[str] = "common"
    #: whether ``sigma`` is in the data's units (else dimensionless: log units or a fraction)
    sigma_in_data_units: ClassVar[bool] = True

    def __post_init__(self) -> None:
        states = tuple(self.states)
        if not states or not all(isinstance(s, str) for s in states):
            raise ConfigError(f"{type(self).__name__}: states must be a non-empty list of names; "
                              f"got {self.states!r}.")
        object.__setattr__(self, "states", states)
        if self.weights is not None:
            w = tuple(float(v) for v in self.weights)
            if len(w) != len(states) or not all(math.isfinite(v) and v >= 0 for v in w):
                raise ConfigError(
                    f"{type(self).__name__}: weights must be one finite number >= 0 per state "
                    f"{list(states)}; got {self.weights!r}."
                )
            object.__setattr__(self, "weights", w)

    # -- pieces each model defines ------------------------------------------------------------
    @abc.abstractmethod
    def _residual(self, pred: torch.Tensor, obs: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        """Unscaled residual ``e`` (Gaussian family) or deviance residual (Poisson)."""

    def _scale(self, obs: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        """Known scale ``a`` of each entry (before weights); 1 unless a model says otherwise."""
        return torch.ones_like(obs)

    def _log_jacobian(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``log |dg/dy|`` summed over measured entries (the change of variables to ``y``)."""
        return torch.zeros((), dtype=obs.dtype)

    def _normaliser(self, obs: torch.Tensor, mask: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        """Constant dividing the mean squared residual in :meth:`objective` (O(1) values)."""
        return torch.ones((), dtype=obs.dtype)

    # -- shared machinery ---------------------------------------------------------------------
    def weight_vector(self, like: torch.Tensor) -> torch.Tensor:
        """Per-state weights ``(S,)`` as a tensor like ``like``."""
        if self.weights is None:
            return torch.ones(len(self.states), dtype=like.dtype)
        return torch.tensor(self.weights, dtype=like.dtype)

    def active(self, mask: torch.Tensor) -> torch.Tensor:
        """The entries that count: measured and of a state with weight > 0."""
        return mask & (self.weight_vector(torch.zeros((), dtype=torch.float64)) > 0)

    def count(self, mask: torch.Tensor) -> int:
        """Number of residuals (measured entries of weighted states)."""
        return int(self.active(mask).sum())

    def n_sigma(self, mask: torch.Tensor) -> int:
        """Number of estimated noise levels (counted by AIC and BIC)."""
        act = self.active(mask)
        if self.sigma_kind == "none" or not bool(act.any()):
            return 0
        if self.sigma_kind == "common":
            return 1
        return int((act.reshape(-1, act.shape[-1]).sum(0) > 0).sum())

    def check(self, obs: torch.Tensor, mask: torch.Tensor, runs: Sequence[str] | None = None) -> None:
        """Raise :class:`DataError` when a measurement is impossible under this model."""
        del obs, mask, runs

    def scaled_residuals(self, pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor,
                         spread: torch.Tensor) -> torch.Tensor:
        """``e / a`` (weights included), 0 where not measured: residuals before the noise level."""
        act = self.active(mask)
        obs_safe = torch.where(act, obs, pred.detach())
        e = self._residual(pred, obs_safe, spread)
        a = self._scale(obs_safe, spread) / torch.sqrt(self.weight_vector(obs).clamp(min=1e-300))
        return _masked(e / a, act)

    def residuals(self, pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor,
                  spread: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised residuals ``e / (a c)``: ``0.5 * sum(r**2)`` is the negative log-likelihood
        up to terms that do not depend on the predictions (``c`` = 1 when ``sigma`` is None).

        Parameters
        ----------
        pred, obs : Tensor (..., S)
            Predictions and measurements (user units).
        mask : BoolTensor (..., S)
            Measured entries.
        spread : Tensor (S,)
            Spread of each state in the training data.
        sigma : Tensor (S,), optional
            Noise level per state (the common level repeated for "common" models).
        """
        r = self.scaled_residuals(pred, obs, mask, spread)
        if sigma is None or self.sigma_kind == "none":
            return r
        return r / sigma

    def fisher_residuals(self, pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor,
                         spread: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Residuals whose Jacobian gives the Fisher information (``J^T J``) of the parameters.

        For the Gaussian family these are :meth:`residuals` (Gauss-Newton is the Fisher
        information); the Poisson model overrides it.
        """
        return self.residuals(pred, obs, mask, spread, sigma)

    def sigma(self, pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor,
              spread: torch.Tensor, *, dof: int = 0) -> torch.Tensor:
        """Noise level per state ``(S,)``: maximum likelihood (``dof`` = 0) or with ``dof``
        estimated quantities subtracted from the residual count (``SSE / (n - dof)``).

        "common" models repeat their single level; a state without residuals gets NaN.
        """
        with torch.no_grad():
            r = self.scaled_residuals(pred, obs, mask, spread)
            act = self.active(mask)
            ss = _per_state(r * r, act)
            n = _per_state(torch.ones_like(r), act)
            nan = torch.full_like(ss, math.nan)
            if self.sigma_kind == "state":
                return torch.where(n > 0, torch.sqrt(ss / (n - dof).clamp(min=1)), nan)
            total = float(n.sum())
            level = math.sqrt(float(ss.sum()) / max(total - dof, 1.0)) if total else math.nan
            return torch.where(n > 0, torch.full_like(ss, level), nan)

    def nll(self, pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor, spread: torch.Tensor,
            sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of the measurements (a scalar tensor, differentiable).

        ``sigma`` None: the maximum-likelihood noise level (the concentrated likelihood).
        """
        act = self.active(mask)
        r = self.scaled_residuals(pred, obs, mask, spread)
        ss = _per_state(r * r, act)
        n = _per_state(torch.ones_like(r), act)
        if self.sigma_kind == "none":
            c2 = torch.ones_like(ss)
        elif sigma is None:
            if self.sigma_kind == "state":
                c2 = ss / n.clamp(min=1)
            else:
                c2 = (ss.sum() / n.sum().clamp(min=1)).expand_as(ss)
        else:
            c2 = sigma.to(ss.dtype) ** 2
        c2 = torch.where(n > 0, c2, torch.ones_like(c2))
        obs_safe = torch.where(act, obs, torch.ones_like(obs))
        a = self._scale(obs_safe, spread) / torch.sqrt(self.weight_vector(obs).clamp(min=1e-300))
        log_a = _per_state(torch.log(a.expand_as(obs)), act).sum()
        return (0.5 * (ss / c2).sum() + 0.5 * (n * torch.log(c2)).sum() + log_a
                + 0.5 * n.sum() * _LOG_2PI + self._log_jacobian(obs, act))

    def loglik(self, pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor, spread: torch.Tensor,
               sigma: torch.Tensor | None = None) -> float:
        """Log-likelihood (float) at the maximum-likelihood noise level or at ``sigma``."""
        with torch.no_grad():
            return -float(self.nll(pred, obs, mask, spread, sigma))

    def objective(self, pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor,
                  spread: torch.Tensor) -> torch.Tensor:
        """Training loss for first-order optimisers: a positive, O(1), increasing function of the
        concentrated negative log-likelihood (same minimiser), differentiable."""
        act = self.active(mask)
        r = self.scaled_residuals(pred, obs, mask, spread)
        n = act.sum().clamp(min=1)
        return (r * r).sum() / n / self._normaliser(obs, act, spread)


def _spread_normaliser(a_inv2: torch.Tensor, obs: torch.Tensor, act: torch.Tensor,
                       spread: torch.Tensor) -> torch.Tensor:
    """Mean over measured entries of ``(spread / a)^2``: the squared residual of predicting the mean."""
    vals = (spread**2 * a_inv2).expand_as(obs)
    n = act.sum().clamp(min=1)
    return (_masked(vals, act).sum() / n).clamp(min=1e-300)


@final
@dataclass(frozen=True, kw_only=True)
class SSE(ErrorModel):
    """Plain least squares in data units: ``y = yhat + sigma * eps``, one sigma estimated."""

    kind: ClassVar[str] = "sse"

    def _residual(self, pred, obs, spread):  # noqa: D102
        return obs - pred

    def _normaliser(self, obs, mask, spread):  # noqa: D102
        return _spread_normaliser(self.weight_vector(obs), obs, mask, spread)


@final
@dataclass(frozen=True, kw_only=True)
class WLS(ErrorModel):
    """Weighted least squares with a known noise level ``sigma`` per state (data units)."""

    sigma_values: tuple[float, ...] = field(default=())

    kind: ClassVar[str] = "wls"
    sigma_kind: ClassVar[str] = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        values = tuple(self.sigma_values)
        bad = [v for v in values if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)]
        if len(values) != len(self.states) or bad:
            raise ConfigError(
                f"WLS: sigma must give one positive, finite noise level per measured state "
                f"{list(self.states)}; got {self.sigma_values!r}."
            )
        object.__setattr__(self, "sigma_values", tuple(float(v) for v in values))

    def _residual(self, pred, obs, spread):  # noqa: D102
        return obs - pred

    def _scale(self, obs, spread):  # noqa: D102
        return torch.tensor(self.sigma_values, dtype=obs.dtype).expand_as(obs)

    def _normaliser(self, obs, mask, spread):  # noqa: D102
        s = torch.tensor(self.sigma_values, dtype=obs.dtype)
        return _spread_normaliser(self.weight_vector(obs) / s**2, obs, mask, spread)

    def sigma(self, pred, obs, mask, spread, *, dof=0):  # noqa: D102
        n = _per_state(torch.ones_like(obs), self.active(mask))
        s = torch.tensor(self.sigma_values, dtype=obs.dtype)
        return torch.where(n > 0, s, torch.full_like(s, math.nan))


@final
@dataclass(frozen=True, kw_only=True)
class Gaussian(ErrorModel):
    """Gaussian maximum likelihood with an unknown sigma per state, estimated (scale-free)."""

    kind: ClassVar[str] = "gaussian"
    sigma_kind: ClassVar[str] = "state"

    def _residual(self, pred, obs, spread):  # noqa: D102
        return obs - pred

    def objective(self, pred, obs, mask, spread):
        """Weighted geometric mean over states of ``MSE_s / spread_s^2`` (exponent ``n_s / n``):
        ``exp(2 NLL / n)`` up to a constant factor."""
        act = self.active(mask)
        r = self.scaled_residuals(pred, obs, mask, spread)
        ss = _per_state(r * r, act)
        n = _per_state(torch.ones_like(r), act)
        keep = n > 0
        scale2 = (spread**2 * self.weight_vector(obs)).clamp(min=1e-300)
        mse = ss / n.clamp(min=1) / scale2 + 1e-12  # the floor keeps a perfectly fitted state finite
        logs = torch.where(keep, n * torch.log(mse), torch.zeros_like(mse))
        return torch.exp(logs.sum() / n.sum().clamp(min=1))


@final
@dataclass(frozen=True, kw_only=True)
class Lognormal(ErrorModel):
    """Multiplicative noise: ``log y = log yhat + sigma * eps``, one sigma (log units) estimated.

    Needs positive measurements; predictions pass through a smooth positive floor.
    """

    kind: ClassVar[str] = "lognormal"
    sigma_in_data_units: ClassVar[bool] = False

    def _residual(self, pred, obs, spread):  # noqa: D102
        floor = _FLOOR * spread
        return torch.log(obs.clamp(min=1e-300)) - _log_positive(pred, floor)

    def _log_jacobian(self, obs, mask):  # noqa: D102
        return _masked(torch.log(torch.where(mask, obs, torch.ones_like(obs))), mask).sum()

    def check(self, obs, mask, runs=None):  # noqa: D102
        _check_sign(self, obs, mask, runs, strict=True)


@final
@dataclass(frozen=True, kw_only=True)
class NMSE(ErrorModel):
    """Squared error relative to each state's spread: ``y = yhat + c * spread_s * eps``, ``c``
    estimated (the spread-normalised loss the trainer used before error models had names)."""

    kind: ClassVar[str] = "nmse"

    def _residual(self, pred, obs, spread):  # noqa: D102
        return obs - pred

    def _scale(self, obs, spread):  # noqa: D102
        return spread.expand_as(obs)


@final
@dataclass(frozen=True, kw_only=True)
class Relative(ErrorModel):
    """Error relative to the measured magnitude: ``y = yhat + c (|y| + floor) eps``, ``c`` (a
    fraction) estimated; ``floor`` is 1e-3 of the state's spread."""

    kind: ClassVar[str] = "relative"
    sigma_in_data_units: ClassVar[bool] = False

    def _residual(self, pred, obs, spread):  # noqa: D102
        return obs - pred

    def _scale(self, obs, spread):  # noqa: D102
        return obs.abs() + _FLOOR * spread


@final
@dataclass(frozen=True, kw_only=True)
class Poisson(ErrorModel):
    """Counts: ``y ~ Poisson(yhat)``; residuals are deviance residuals (``sum r^2`` = deviance).

    Needs measurements >= 0 (non-integer values are allowed: a quasi-likelihood); predictions
    pass through a smooth positive floor. No noise level is estimated (variance = mean).
    """

    kind: ClassVar[str] = "poisson"
    sigma_kind: ClassVar[str] = "none"

    def _mean(self, pred: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        return torch.exp(_log_positive(pred, _FLOOR * spread))

    def _residual(self, pred, obs, spread):
        """``sign(y - mu) sqrt(2 (y log(y/mu) - y + mu))`` written as ``(y - mu) / sqrt(mu) *
        sqrt(phi(y / mu))`` with ``phi(q) = 2 (q log q - q + 1) / (q - 1)^2`` (smooth, phi(1) = 1),
        so the residual is differentiable where ``y = mu``."""
        mu = self._mean(pred, spread)
        q = obs / mu
        d = q - 1.0
        near = d.abs() < 1e-3
        d_far = torch.where(near, torch.ones_like(d), d)
        q_far = torch.where(near, torch.full_like(q, 2.0), q)
        xlogx = torch.where(q_far > 0, q_far * torch.log(q_far.clamp(min=1e-300)), torch.zeros_like(q))
        phi_far = 2.0 * (xlogx - q_far + 1.0) / (d_far * d_far)
        phi_near = 1.0 - d / 3.0 + d * d / 6.0
        phi = torch.where(near, phi_near, phi_far)
        return (obs - mu) / torch.sqrt(mu) * torch.sqrt(phi.clamp(min=0.0))

    def fisher_residuals(self, pred, obs, mask, spread, sigma=None):
        """``(y - mu) / sqrt(mu_0)`` with ``mu_0`` held fixed: its Jacobian is ``-dmu / sqrt(mu)``,
        whose ``J^T J`` is the expected Fisher information of the Poisson model."""
        act = self.active(mask)
        mu = self._mean(pred, spread)
        r = (obs - mu) / torch.sqrt(mu.detach()) * torch.sqrt(self.weight_vector(obs))
        return _masked(r, act)

    def nll(self, pred, obs, mask, spread, sigma=None):
        """``sum w_s (mu - y log mu + lgamma(y + 1))``."""
        act = self.active(mask)
        mu = self._mean(pred, spread)
        y = torch.where(act, obs, torch.zeros_like(obs))
        terms = mu - y * torch.log(mu) + torch.lgamma(y + 1.0)
        return _masked(terms * self.weight_vector(obs), act).sum()

    def sigma(self, pred, obs, mask, spread, *, dof=0):  # noqa: D102
        return torch.full((obs.shape[-1],), math.nan, dtype=obs.dtype)

    def _normaliser(self, obs, mask, spread):
        """Deviance per entry of a model at the mean is about variance / mean."""
        y = _masked(obs, mask).reshape(-1, obs.shape[-1])
        n = mask.reshape(-1, obs.shape[-1]).sum(0).clamp(min=1)
        mean = (y.sum(0) / n).abs().clamp(min=_FLOOR)
        return _spread_normaliser(self.weight_vector(obs) / mean, obs, mask, spread)

    def check(self, obs, mask, runs=None):  # noqa: D102
        _check_sign(self, obs, mask, runs, strict=False)


def _check_sign(model: ErrorModel, obs: torch.Tensor, mask: torch.Tensor,
                runs: Sequence[str] | None, *, strict: bool) -> None:
    act = model.active(mask)
    bad = act & ((obs <= 0) if strict else (obs < 0))
    if not bool(bad.any()):
        return
    pos = [int(v) for v in bad.nonzero()[0]]
    j = pos[-1]
    where = ""
    if obs.dim() == 3:
        run = runs[pos[0]] if runs is not None else str(pos[0])
        where = f" of run {run!r} at sample {pos[1] + 1}"
    need = "positive" if strict else "non-negative (counts)"
    raise DataError(
        f"fit: the {model.kind!r} error model needs {need} measurements, but state "
        f"{model.states[j]!r}{where} is {float(obs[tuple(pos)]):.6g}. Use loss='sse' or "
        f"'gaussian', or shift the variable."
    )


_CLASSES: dict[str, type[ErrorModel]] = {
    "sse": SSE, "wls": WLS, "gaussian": Gaussian, "lognormal": Lognormal, "poisson": Poisson,
    "nmse": NMSE, "relative": Relative,
}


def make_error_model(kind: str, states: Sequence[str], *,
                     sigma: Mapping[str, float] | None = None,
                     weights: Mapping[str, float] | None = None) -> ErrorModel:
    """The error model named ``kind`` over the observed ``states``.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS` (or an alias in :data:`ALIASES`, e.g. "log").
    states : sequence of str
        Observed states, in the order of the tensors' last axis.
    sigma : mapping of str to float, optional
        Known noise level of every state (data units); required by "wls", refused by the others.
    weights : mapping of str to float, optional
        Per-state weights (missing states weigh 1).

    Raises
    ------
    ConfigError
        For an unknown kind, a missing, extra or non-positive sigma, or weights of unknown states.

    Examples
    --------
    >>> make_error_model("log", ["hare", "lynx"]).kind
    'lognormal'
    """
    name = ALIASES.get(kind, kind)
    if name not in _CLASSES:
        raise ConfigError(f"loss: unknown error model {kind!r}; choose one of {list(KINDS)} "
                          f"(aliases {ALIASES}).")
    states = tuple(states)
    w = None
    if weights:
        unknown = [n for n in weights if n not in states]
        if unknown:
            raise ConfigError(f"loss: weights name {unknown}, which are not measured states; "
                              f"measured states are {list(states)}.")
        w = tuple(float(weights.get(n, 1.0)) for n in states)
    if name == "wls":
        sigma = dict(sigma or {})
        missing = [n for n in states if n not in sigma]
        extra = [n for n in sigma if n not in states]
        if missing or extra:
            raise ConfigError(
                f"loss: 'wls' needs a known sigma for every measured state {list(states)}; "
                f"missing {missing}, unknown {extra}. Give sigma={{name: value, ...}}, or use "
                f"loss='gaussian' to estimate them."
            )
        return WLS(states=states, weights=w, sigma_values=tuple(sigma[n] for n in states))
    if sigma:
        raise ConfigError(f"loss: sigma is only used by loss='wls' (known noise levels); the "
                          f"{name!r} error model {'has none' if name == 'poisson' else 'estimates it'}.")
    return _CLASSES[name](states=states, weights=w)


def information_criteria(loglik: float, k: int, n: int) -> tuple[float, float]:
    """``(AIC, BIC)`` = ``(2k - 2 loglik, k log n - 2 loglik)`` for ``k`` estimated quantities
    (parameters, free initial states, noise levels) and ``n`` residuals."""
    aic = 2.0 * k - 2.0 * loglik
    bic = k * math.log(max(n, 1)) - 2.0 * loglik
    return aic, bic
