"""Named physical parameters with bounds kept by a smooth change of variables (never clamping).

A :class:`Parameter` is a frozen, lmfit-like description: a value, bounds, whether it varies in a
fit, units, and an optional scale. Inside a model each free parameter is stored as an unconstrained
"raw" tensor; its physical value is a smooth, strictly monotone function of the raw tensor that
stays inside the bounds, so the gradient never vanishes the way it does at a clamp:

=====================  ====================================  =====================================
bounds                 value(raw)                            raw(value)
=====================  ====================================  =====================================
``(lo, hi)``           ``lo + (hi - lo) * sigmoid(raw)``     ``logit((value - lo) / (hi - lo))``
``(lo, inf)``          ``lo + exp(raw)``                     ``log(value - lo)``
``(-inf, hi)``         ``hi - exp(raw)``                     ``log(hi - value)``
``(-inf, inf)``        ``scale * raw``                       ``value / scale``
=====================  ====================================  =====================================

The one-sided transform is the exponential rather than softplus because it is scale-free: a rate
constant of ``1e-5`` (raw ``-11.5``) and a stiffness of ``1e3`` (raw ``6.9``) are both a few units
of raw, and a gradient step changes the value by a fixed *relative* amount. ``scale`` only matters
for unbounded parameters; it defaults to ``|value|`` (or 1 when the value is 0) so the raw value
starts at ±1.

A free parameter must lie strictly inside its bounds (a value on a bound is the limit of the
transform, an infinite raw value); a fixed parameter (``vary=False``) may sit on a bound.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, final

from sysid.errors import ParameterError

__all__ = ["Parameter", "ReadRecorder", "as_parameter", "check_names", "raw_from_value", "value_from_raw"]


@dataclass(frozen=True)
class Parameter:
    """A named model constant: value, bounds, fixed/free, units.

    Parameters
    ----------
    value : float
        Initial (or fixed) value in the user's units.
    bounds : tuple of float, optional
        ``(lower, upper)``; use ``-inf``/``inf`` for an open side. Default unbounded.
    vary : bool, optional
        True (default) for a parameter a fit estimates; False keeps it fixed at ``value``.
    units : str, optional
        Units, carried into parameter tables and model files.
    scale : float, optional
        Typical magnitude of an unbounded parameter (raw = value / scale). Default ``|value|``
        or 1 when the value is 0. Must be positive and finite. Ignored for bounded parameters.
    description : str, optional
        Free text for reports.

    Raises
    ------
    ParameterError
        When the value is not finite, the bounds are not ordered, or the value lies outside its
        bounds (on a bound for a free parameter).

    Examples
    --------
    >>> p = Parameter(2.0, bounds=(0.0, 10.0), units="1/s")
    >>> round(value_from_raw(raw_from_value(2.0, p), p), 12)
    2.0
    """

    value: float
    _: KW_ONLY
    bounds: tuple[float, float] = (-math.inf, math.inf)
    vary: bool = True
    units: str = ""
    scale: float | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        try:
            value = float(self.value)
            lo, hi = (float(b) for b in self.bounds)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"Parameter: value must be a number and bounds a pair of numbers; got "
                f"value={self.value!r}, bounds={self.bounds!r}."
            ) from exc
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "bounds", (lo, hi))
        object.__setattr__(self, "vary", bool(self.vary))
        object.__setattr__(self, "units", str(self.units))
        if not math.isfinite(value):
            raise ParameterError(f"Parameter: value must be finite; got {value}.")
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise ParameterError(
                f"Parameter: bounds must satisfy lower < upper; got [{lo}, {hi}]."
            )
        if self.scale is not None:
            scale = float(self.scale)
            if not (math.isfinite(scale) and scale > 0):
                raise ParameterError(f"Parameter: scale must be positive and finite; got {scale}.")
            object.__setattr__(self, "scale", scale)
        if not lo <= value <= hi:
            raise ParameterError(f"Parameter: value {value} outside bounds [{lo}, {hi}].")
        if self.vary and (value == lo or value == hi):
            raise ParameterError(
                f"Parameter: a free parameter must lie strictly inside its bounds; value {value} "
                f"is on the bound of [{lo}, {hi}]. Start it inside the bounds, or fix it with "
                "vary=False."
            )

    @property
    def kind(self) -> str:
        """Which transform applies: "interval", "lower", "upper" or "free"."""
        lo, hi = self.bounds
        if math.isfinite(lo) and math.isfinite(hi):
            return "interval"
        if math.isfinite(lo):
            return "lower"
        if math.isfinite(hi):
            return "upper"
        return "free"

    @property
    def effective_scale(self) -> float:
        """Scale of an unbounded parameter: ``scale`` or ``|value|`` or 1."""
        if self.scale is not None:
            return float(self.scale)
        return abs(self.value) if self.value != 0.0 else 1.0

    def replace(self, **changes: object) -> Parameter:
        """A copy with some fields changed (validated again)."""
        data = {
            "value": self.value,
            "bounds": self.bounds,
            "vary": self.vary,
            "units": self.units,
            "scale": self.scale,
            "description": self.description,
        }
        unknown = sorted(set(changes) - set(data))
        if unknown:
            raise ParameterError(f"Parameter.replace: unknown fields {unknown}; fields are {sorted(data)}.")
        data.update(changes)
        return Parameter(**data)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """JSON-able description (infinite bounds written as None)."""
        return {
            "value": self.value,
            "bounds": [None if math.isinf(b) else b for b in self.bounds],
            "vary": self.vary,
            "units": self.units,
            "scale": self.scale,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Parameter:
        """Inverse of :meth:`to_dict`."""
        allowed = {"value", "bounds", "vary", "units", "scale", "description"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ParameterError(f"Parameter.from_dict: unknown keys {unknown}; keys are {sorted(allowed)}.")
        raw_bounds = data.get("bounds") or [None, None]
        bounds = (
            -math.inf if raw_bounds[0] is None else float(raw_bounds[0]),  # type: ignore[index]
            math.inf if raw_bounds[1] is None else float(raw_bounds[1]),  # type: ignore[index]
        )
        return cls(
            float(data["value"]),  # type: ignore[arg-type]
            bounds=bounds,
            vary=bool(data.get("vary", True)),
            units=str(data.get("units", "")),
            scale=None if data.get("scale") is None else float(data["scale"]),  # type: ignore[arg-type]
            description=str(data.get("description", "")),
        )


def as_parameter(name: str, spec: object) -> Parameter:
    """A :class:`Parameter` from a Parameter or a plain number (a free, unbounded parameter)."""
    if isinstance(spec, Parameter):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Parameter(float(spec))
    raise ParameterError(
        f"Parameter {name!r}: expected a sysid.models.Parameter or a number; got {type(spec).__name__}."
    )


def check_names(where: str, given: Iterable[str], expected: Iterable[str]) -> None:
    """Raise ParameterError listing missing and extra parameter names."""
    given_l = list(given)
    expected_l = list(expected)
    missing = [n for n in expected_l if n not in given_l]
    extra = [n for n in given_l if n not in expected_l]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unknown {extra}")
        raise ParameterError(
            f"{where}: parameter names do not match: {'; '.join(parts)}. Expected exactly "
            f"{expected_l}."
        )


def raw_from_value(value: float, param: Parameter) -> float:
    """The unconstrained raw number whose transform gives ``value`` (float64 arithmetic)."""
    lo, hi = param.bounds
    kind = param.kind
    if not lo < value < hi and kind != "free":
        raise ParameterError(f"Parameter: value {value} not strictly inside bounds [{lo}, {hi}].")
    if kind == "interval":
        frac = (value - lo) / (hi - lo)
        return math.log(frac) - math.log1p(-frac)
    if kind == "lower":
        return math.log(value - lo)
    if kind == "upper":
        return math.log(hi - value)
    return value / param.effective_scale


def value_from_raw(raw: Any, param: Parameter) -> Any:
    """The constrained value for a raw tensor (differentiable) or float."""
    lo, hi = param.bounds
    kind = param.kind
    torch = sys.modules.get("torch")  # not imported: raw cannot be a tensor (NumPy model files)
    if torch is not None and isinstance(raw, torch.Tensor):
        if kind == "interval":
            return lo + (hi - lo) * torch.sigmoid(raw)
        if kind == "lower":
            return lo + torch.exp(raw)
        if kind == "upper":
            return hi - torch.exp(raw)
        return param.effective_scale * raw
    raw_f = float(raw)
    if kind == "interval":
        if raw_f >= 0:
            s = 1.0 / (1.0 + math.exp(-raw_f))
        else:
            e = math.exp(raw_f)
            s = e / (1.0 + e)
        return lo + (hi - lo) * s
    if kind == "lower":
        return lo + math.exp(raw_f)
    if kind == "upper":
        return hi - math.exp(raw_f)
    return param.effective_scale * raw_f


@final
class ReadRecorder(Mapping[str, Any]):
    """Parameter values for a probe call of a right-hand side ``fn(t, x, u, p, xp)``: records
    which names it reads (``read``, in order) and which it asks for without their being given
    (``missing``; those read as ``missing_value()``). A physics term's parameter names must be
    exactly those its function reads (:class:`~sysid.models.PhysicsField` and
    :func:`sysid.io.load_dynamics` probe with it)."""

    def __init__(self, values: Mapping[str, Any], missing_value: Callable[[], Any]) -> None:
        self._values = dict(values)
        self._missing_value = missing_value
        self.read: list[str] = []
        self.missing: list[str] = []

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            if key not in self.missing:
                self.missing.append(key)
            return self._missing_value()
        if key not in self.read:
            self.read.append(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)
