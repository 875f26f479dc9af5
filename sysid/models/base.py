"""The abstract vector field every sysid model term implements, and scaling helpers."""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from sysid.errors import ConfigError
from sysid.models.numpy_fields import NumpyField

__all__ = ["VectorField", "ScalingLike", "scaling_arrays", "scaling_to_dict", "NumpyField"]


class ScalingLike(Protocol):
    """What :meth:`VectorField.set_scaling` reads (``sysid.data.Scaling`` satisfies it)."""

    names: Sequence[str]
    mean: Any
    scale: Any
    time_scale: float


def _names(where: str, names: Sequence[str], kind: str) -> tuple[str, ...]:
    out = tuple(str(n) for n in names)
    if isinstance(names, str):
        raise ConfigError(f"{where}: {kind} must be a list of names, not the string {names!r}.")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: {kind} names {dup} appear more than once in {list(out)}.")
    return out


def _units(where: str, units: Sequence[str] | Mapping[str, str] | None, names: tuple[str, ...],
           kind: str) -> tuple[str, ...]:
    if units is None:
        return tuple("" for _ in names)
    if isinstance(units, Mapping):
        unknown = sorted(set(units) - set(names))
        if unknown:
            raise ConfigError(f"{where}: {kind} units given for unknown names {unknown}; names are {list(names)}.")
        return tuple(str(units.get(n, "")) for n in names)
    if isinstance(units, str) or len(units) != len(names):
        raise ConfigError(
            f"{where}: {kind} units must be one string per name ({len(names)} for {list(names)}); "
            f"got {units!r}."
        )
    return tuple(str(u) for u in units)


def scaling_to_dict(scaling: ScalingLike | Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-able ``{"names", "mean", "scale", "time_scale"}`` dict from a scaling object or dict."""
    if isinstance(scaling, Mapping):
        missing = [k for k in ("names", "mean", "scale", "time_scale") if k not in scaling]
        if missing:
            raise ConfigError(f"scaling: the mapping lacks keys {missing}; it needs names, mean, scale, time_scale.")
        names, mean, scale, time_scale = (scaling["names"], scaling["mean"], scaling["scale"],
                                          scaling["time_scale"])
    else:
        try:
            names, mean, scale, time_scale = (scaling.names, scaling.mean, scaling.scale,
                                              scaling.time_scale)
        except AttributeError as exc:
            raise ConfigError(
                f"scaling: expected a sysid.data.Scaling (names, mean, scale, time_scale) or a "
                f"mapping with those keys; got {type(scaling).__name__}."
            ) from exc
    names = [str(n) for n in names]
    mean_a = np.asarray(torch.as_tensor(mean).detach().cpu().double().numpy() if isinstance(mean, torch.Tensor)
                        else mean, dtype=float).ravel()
    scale_a = np.asarray(torch.as_tensor(scale).detach().cpu().double().numpy() if isinstance(scale, torch.Tensor)
                         else scale, dtype=float).ravel()
    if len(mean_a) != len(names) or len(scale_a) != len(names):
        raise ConfigError(
            f"scaling: {len(names)} names but {len(mean_a)} means and {len(scale_a)} scales."
        )
    ts = float(time_scale)
    if not (math.isfinite(ts) and ts > 0):
        raise ConfigError(f"scaling: time_scale must be positive and finite; got {ts}.")
    if not np.all(np.isfinite(mean_a)) or not np.all(np.isfinite(scale_a)) or np.any(scale_a <= 0):
        raise ConfigError(
            f"scaling: means must be finite and scales positive and finite; got mean={mean_a.tolist()}, "
            f"scale={scale_a.tolist()} for {names}."
        )
    return {"names": names, "mean": mean_a.tolist(), "scale": scale_a.tolist(), "time_scale": ts}


def scaling_arrays(scaling: ScalingLike | Mapping[str, Any], names: Sequence[str],
                   where: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean and scale for ``names`` (in that order) and the time scale, from a scaling object."""
    d = scaling_to_dict(scaling)
    missing = [n for n in names if n not in d["names"]]
    if missing:
        raise ConfigError(
            f"{where}: the scaling has no statistics for {missing}; it covers {d['names']}. "
            "Compute it from a dataset holding these variables (sysid.data.compute_scaling)."
        )
    idx = [d["names"].index(n) for n in names]
    mean = np.asarray(d["mean"], dtype=float)[idx]
    scale = np.asarray(d["scale"], dtype=float)[idx]
    return mean, scale, float(d["time_scale"])


class VectorField(nn.Module, abc.ABC):
    """Abstract vector field ``dx/dt = f(t, x, u)`` in user units.

    Subclasses are final; build models by composing them (:class:`~sysid.models.HybridField`,
    :class:`~sysid.models.SecondOrderField`), not by subclassing.

    Attributes
    ----------
    state_names, input_names : tuple of str
        Names of the states (columns of ``x``) and inputs (columns of ``u``).
    output_names : tuple of str
        States whose derivatives ``forward`` returns, in that order. Equal to ``state_names`` for a
        complete field; a subset for a partial term (a neural correction on some states, an
        acceleration).
    state_units, input_units : tuple of str
        Units per state and input.
    time_units : str
        Units of time.
    """

    state_names: tuple[str, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    state_units: tuple[str, ...]
    input_units: tuple[str, ...]
    time_units: str

    def _init_names(self, where: str, states: Sequence[str], inputs: Sequence[str],
                    outputs: Sequence[str] | None, state_units: Any, input_units: Any,
                    time_units: str) -> None:
        self.state_names = _names(where, states, "states")
        if not self.state_names:
            raise ConfigError(f"{where}: at least one state is needed; states is empty.")
        self.input_names = _names(where, inputs, "inputs")
        clash = sorted(set(self.state_names) & set(self.input_names))
        if clash:
            raise ConfigError(f"{where}: names {clash} are both states and inputs.")
        if outputs is None:
            self.output_names = self.state_names
        else:
            self.output_names = _names(where, outputs, "outputs")
            unknown = [n for n in self.output_names if n not in self.state_names]
            if unknown or not self.output_names:
                raise ConfigError(
                    f"{where}: outputs must be a non-empty subset of the states {list(self.state_names)}; "
                    f"got {list(self.output_names)}."
                )
        self.state_units = _units(where, state_units, self.state_names, "state")
        self.input_units = _units(where, input_units, self.input_names, "input")
        self.time_units = str(time_units)

    @abc.abstractmethod
    def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Derivatives of ``output_names``: ``x`` is (B, S), ``u`` (B, I) or None, ``t`` 0-d or (B,).

        Returns a (B, len(output_names)) tensor in state units per time unit.
        """

    @abc.abstractmethod
    def numpy_function(self) -> NumpyField:
        """A pure-NumPy ``f(t, x, u)`` equal to :meth:`forward` (weights copied as float64)."""

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-able description of the structure (what :mod:`sysid.io` writes to model.json)."""

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Constrained values of the named physical parameters (empty for a neural field)."""
        return {}

    def parameter_specs(self) -> dict[str, Any]:
        """The :class:`~sysid.models.Parameter` of each named parameter (empty for a neural field)."""
        return {}

    def set_scaling(self, scaling: ScalingLike | Mapping[str, Any] | None) -> None:
        """Give neural terms the data's scaling (no-op for terms without a network)."""
        return None

    def parameter_table(self) -> pd.DataFrame:
        """One row per named parameter: name, value, lower, upper, units, vary."""
        values = self.physical_parameters()
        specs = self.parameter_specs()
        rows = []
        for name, spec in specs.items():
            rows.append({
                "name": name,
                "value": float(values[name].detach().double()),
                "lower": spec.bounds[0],
                "upper": spec.bounds[1],
                "units": spec.units,
                "vary": spec.vary,
            })
        return pd.DataFrame(rows, columns=["name", "value", "lower", "upper", "units", "vary"])

    def _select_inputs(self, u: torch.Tensor | None, names: Sequence[str]) -> torch.Tensor | None:
        """Columns ``names`` of this field's ``u`` (for a sub-term with fewer inputs)."""
        if not names:
            return None
        if u is None:
            raise ConfigError(
                f"{type(self).__name__}: inputs {list(self.input_names)} are needed but u is None."
            )
        if tuple(names) == self.input_names:
            return u
        idx = [self.input_names.index(n) for n in names]
        return u[..., idx]

    def _check_xu(self, x: torch.Tensor, u: torch.Tensor | None) -> None:
        if x.shape[-1] != len(self.state_names):
            raise ConfigError(
                f"{type(self).__name__}: x has {x.shape[-1]} states on its last axis but the field has "
                f"{len(self.state_names)} ({list(self.state_names)})."
            )
        if self.input_names:
            if u is None:
                raise ConfigError(
                    f"{type(self).__name__}: the field needs inputs {list(self.input_names)} but u is None."
                )
            if u.shape[-1] != len(self.input_names):
                raise ConfigError(
                    f"{type(self).__name__}: u has {u.shape[-1]} inputs on its last axis but the field has "
                    f"{len(self.input_names)} ({list(self.input_names)})."
                )
