"""Fields built from other fields: hybrid (physics + neural) and second-order (mechanical) form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, final

import torch

from sysid.errors import ConfigError, ParameterError
from sysid.models.base import NumpyField, ScalingLike, VectorField
from sysid.models.numpy_fields import hybrid_function, second_order_function
from sysid.models.parameters import Parameter

__all__ = ["HybridField", "SecondOrderField"]


def _merge_inputs(fields: Sequence[VectorField]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names: list[str] = []
    units: list[str] = []
    for f in fields:
        for n, un in zip(f.input_names, f.input_units):
            if n not in names:
                names.append(n)
                units.append(un)
    return tuple(names), tuple(units)


@final
class HybridField(VectorField):
    """Sum of a physics term and a neural term (a universal differential equation).

    ``dx/dt[outputs] = physics(t, x, u) + neural(t, x, u)``, where the neural term may cover only
    some of the outputs (``neural_states``; zero elsewhere).

    Parameters
    ----------
    physics : VectorField
        The known part (usually a :class:`~sysid.models.PhysicsField`); its ``output_names`` are
        the hybrid's outputs.
    neural : VectorField
        The correction (usually a :class:`~sysid.models.NeuralField`) over the same states, in
        the same order; its ``output_names`` must be ``neural_states``.
    neural_states : sequence of str, optional
        Outputs the neural term corrects (default all of the physics outputs).

    Notes
    -----
    The hybrid's inputs are the physics inputs followed by any extra inputs the neural term reads;
    each term receives only its own columns.
    """

    def __init__(self, physics: VectorField, neural: VectorField,
                 neural_states: Sequence[str] | None = None) -> None:
        super().__init__()
        for name, f in (("physics", physics), ("neural", neural)):
            if not isinstance(f, VectorField):
                raise ConfigError(f"HybridField: {name} must be a VectorField; got {type(f).__name__}.")
        if neural.state_names != physics.state_names:
            raise ConfigError(
                f"HybridField: the neural term's states {list(neural.state_names)} must equal the physics "
                f"term's states {list(physics.state_names)} (same order)."
            )
        wanted = tuple(physics.output_names) if neural_states is None else tuple(neural_states)
        if isinstance(neural_states, str):
            raise ConfigError(f"HybridField: neural_states must be a list of names, not {neural_states!r}.")
        not_out = [n for n in wanted if n not in physics.output_names]
        if not_out:
            raise ConfigError(
                f"HybridField: neural_states {not_out} are not outputs of the physics term "
                f"{list(physics.output_names)}."
            )
        if set(neural.output_names) != set(wanted) or len(neural.output_names) != len(wanted):
            raise ConfigError(
                f"HybridField: the neural term produces {list(neural.output_names)} but neural_states is "
                f"{list(wanted)}; build it with outputs={list(wanted)}."
            )
        clash = sorted(set(physics.physical_parameters()) & set(neural.physical_parameters()))
        if clash:
            raise ParameterError(f"HybridField: both terms define parameters {clash}.")
        inputs, input_units = _merge_inputs([physics, neural])
        self._init_names("HybridField", physics.state_names, inputs, physics.output_names,
                         physics.state_units, input_units, physics.time_units or neural.time_units)
        self.physics = physics
        self.neural = neural
        self.neural_states = tuple(neural.output_names)
        idx = [self.output_names.index(n) for n in self.neural_states]
        self.register_buffer("_idx", torch.tensor(idx, dtype=torch.long), persistent=False)

    def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """physics(t, x, u) + neural(t, x, u) on ``neural_states``."""
        self._check_xu(x, u)
        base = self.physics(t, x, self._select_inputs(u, self.physics.input_names))
        corr = self.neural(t, x, self._select_inputs(u, self.neural.input_names))
        return base.index_add(-1, self._idx, corr.to(base.dtype))

    def set_scaling(self, scaling: ScalingLike | Mapping[str, Any] | None) -> None:
        """Pass the scaling to both terms."""
        self.physics.set_scaling(scaling)
        self.neural.set_scaling(scaling)

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Named parameters of both terms."""
        return {**self.physics.physical_parameters(), **self.neural.physical_parameters()}

    def parameter_specs(self) -> dict[str, Parameter]:
        """Parameter specs of both terms."""
        return {**self.physics.parameter_specs(), **self.neural.parameter_specs()}

    def numpy_function(self) -> NumpyField:
        """NumPy sum of the two terms' exports."""
        return hybrid_function(self.physics.numpy_function(), self.neural.numpy_function(),
                               [self.input_names.index(n) for n in self.physics.input_names],
                               [self.input_names.index(n) for n in self.neural.input_names],
                               self._idx.tolist())

    def spec(self) -> dict[str, Any]:
        """Structure for model files."""
        return {
            "type": "HybridField",
            "physics": self.physics.spec(),
            "neural": self.neural.spec(),
            "neural_states": list(self.neural_states),
        }


@final
class SecondOrderField(VectorField):
    """Mechanical form: states ``(q..., v...)`` with ``dq/dt = v`` and ``dv/dt = acceleration``.

    Parameters
    ----------
    acceleration : VectorField
        A field over the states ``positions + velocities`` whose ``output_names`` are the
        ``velocities``: a :class:`~sysid.models.PhysicsField` (known force law), a
        :class:`~sysid.models.NeuralField` (learned) or a :class:`~sysid.models.HybridField`.
    positions, velocities : sequence of str
        Position names and their velocities, pairwise (``velocities[i]`` is d ``positions[i]``/dt).

    Examples
    --------
    >>> from sysid.models import NeuralField
    >>> acc = NeuralField(["q", "v"], outputs=["v"], width=8, depth=1)
    >>> f = SecondOrderField(acc, ["q"], ["v"])
    >>> f(torch.tensor(0.0), torch.tensor([[0.0, 2.0]]))[0, 0].item()
    2.0
    """

    def __init__(self, acceleration: VectorField, positions: Sequence[str],
                 velocities: Sequence[str]) -> None:
        super().__init__()
        if not isinstance(acceleration, VectorField):
            raise ConfigError(
                f"SecondOrderField: acceleration must be a VectorField; got {type(acceleration).__name__}."
            )
        q = tuple(positions)
        v = tuple(velocities)
        if isinstance(positions, str) or isinstance(velocities, str):
            raise ConfigError("SecondOrderField: positions and velocities must be lists of names.")
        if len(q) != len(v) or not q:
            raise ConfigError(
                f"SecondOrderField: need one velocity per position; got positions {list(q)} and "
                f"velocities {list(v)}."
            )
        if acceleration.state_names != q + v:
            raise ConfigError(
                f"SecondOrderField: the acceleration's states {list(acceleration.state_names)} must be "
                f"positions + velocities {list(q + v)}."
            )
        if acceleration.output_names != v:
            raise ConfigError(
                f"SecondOrderField: the acceleration must output the velocities' derivatives {list(v)}; "
                f"it outputs {list(acceleration.output_names)} (build it with outputs={list(v)})."
            )
        self._init_names("SecondOrderField", q + v, acceleration.input_names, None,
                         acceleration.state_units, acceleration.input_units, acceleration.time_units)
        self.acceleration = acceleration
        self.positions = q
        self.velocities = v

    def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """``[v, acceleration(t, x, u)]``."""
        self._check_xu(x, u)
        n = len(self.positions)
        acc = self.acceleration(t, x, u)
        return torch.cat([x[..., n:], acc.to(x.dtype)], dim=-1)

    def set_scaling(self, scaling: ScalingLike | Mapping[str, Any] | None) -> None:
        """Pass the scaling to the acceleration."""
        self.acceleration.set_scaling(scaling)

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Named parameters of the acceleration."""
        return self.acceleration.physical_parameters()

    def parameter_specs(self) -> dict[str, Parameter]:
        """Parameter specs of the acceleration."""
        return self.acceleration.parameter_specs()

    def numpy_function(self) -> NumpyField:
        """NumPy ``[v, acceleration]``."""
        return second_order_function(self.acceleration.numpy_function(), len(self.positions))

    def spec(self) -> dict[str, Any]:
        """Structure for model files."""
        return {
            "type": "SecondOrderField",
            "acceleration": self.acceleration.spec(),
            "positions": list(self.positions),
            "velocities": list(self.velocities),
        }
