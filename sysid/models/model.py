"""The :class:`Model` that ``fit``, ``simulate`` and model files work with, and factory helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, final

import pandas as pd
import torch
from torch import nn

from sysid.errors import ConfigError
from sysid.models.base import ScalingLike, VectorField, scaling_to_dict
from sysid.models.composite import HybridField, SecondOrderField
from sysid.models.encoder import Encoder, StateEncoder
from sysid.models.interpolation import INTERPOLATIONS
from sysid.models.neural import NeuralField
from sysid.models.outputs import Outputs
from sysid.models.parameters import Parameter
from sysid.models.physics import PhysicsField

__all__ = ["Model", "neural", "physics", "hybrid", "second_order"]


@final
class Model(nn.Module):
    """A complete vector field plus what a fit needs to know about the data it describes.

    Parameters
    ----------
    field : VectorField
        A complete field (``output_names == state_names``).
    observed : sequence of str, optional
        Measured states (default all, or none when ``outputs`` are declared). The others are
        latent: the fit engine estimates their initial values per run; :func:`sysid.simulate`
        starts them from ``latent_initial`` unless given.
    outputs : Outputs, optional
        Measurement equations ``y = g(t, x, u, p)`` (:class:`~sysid.models.Outputs`): what the
        sensors report when it is not a state itself (a saturating level, a concentration
        ``A / V``). A fit compares these outputs, and the ``observed`` states, with the data.
    input_interpolation : {"zoh", "linear", "cubic"}
        How measured inputs are turned into functions of time (see
        :class:`~sysid.models.InputInterpolator`). Default "linear".
    scaling : sysid.data.Scaling or mapping, optional
        Per-variable mean/scale and a time scale used by neural terms (see :meth:`set_scaling`).
    latent_initial : mapping, optional
        Default initial value of each latent state (default 0).
    metadata : mapping, optional
        JSON-able notes carried into model files (data source, fit settings, ...).
    encoder : Encoder or StateEncoder, optional
        Estimate the latent states at each window start from the last ``encoder.past`` measured
        samples and inputs (:mod:`sysid.models.encoder`), instead of one free value per window;
        :func:`sysid.simulate` then starts a new record from its first ``past`` samples. Needs
        at least one latent state. The built network is ``model.encoder`` (None without one).

    Examples
    --------
    >>> m = neural(["x", "v"], width=8, depth=1, observed=["x"])
    >>> m.latent_names
    ('v',)
    """

    def __init__(
        self,
        field: VectorField,
        *,
        observed: Sequence[str] | None = None,
        outputs: Outputs | None = None,
        input_interpolation: str = "linear",
        scaling: ScalingLike | Mapping[str, Any] | None = None,
        latent_initial: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        encoder: Encoder | StateEncoder | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(field, VectorField):
            raise ConfigError(f"Model: field must be a sysid VectorField; got {type(field).__name__}.")
        if field.output_names != field.state_names:
            raise ConfigError(
                f"Model: the field gives derivatives of {list(field.output_names)} only; a model needs all "
                f"its states {list(field.state_names)} (wrap a partial term in HybridField or "
                "SecondOrderField)."
            )
        self.field = field
        states = field.state_names
        if outputs is not None:
            if not isinstance(outputs, Outputs):
                raise ConfigError(f"Model: outputs must be a sysid.models.Outputs; got {type(outputs).__name__}.")
            if outputs.state_names != states or outputs.input_names != field.input_names:
                raise ConfigError(
                    f"Model: the outputs are written over states {list(outputs.state_names)} and inputs "
                    f"{list(outputs.input_names)}; the field has {list(states)} and {list(field.input_names)}."
                )
            own = set(field.physical_parameters())
            clash = sorted(own & set(outputs.parameter_specs()))
            missing = [n for n in outputs.shared_names if n not in own]
            if clash or missing:
                raise ConfigError(
                    f"Model: output parameters {clash} are also parameters of the field" if clash else
                    f"Model: the outputs read parameters {missing} that the field does not have."
                )
        self.outputs = outputs
        if observed is None:
            obs = states if outputs is None else ()
        else:
            if isinstance(observed, str):
                raise ConfigError(f"Model: observed must be a list of state names, not {observed!r}.")
            unknown = [n for n in observed if n not in states]
            if unknown or (not list(observed) and outputs is None):
                raise ConfigError(
                    f"Model: observed must be a subset of the states {list(states)}; "
                    f"unknown {unknown}." if unknown else
                    f"Model: observed is empty; at least one of {list(states)} must be measured "
                    "(or give the model output equations)."
                )
            obs = tuple(n for n in states if n in observed)
        self.observed = obs
        if input_interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"Model: input_interpolation must be one of {list(INTERPOLATIONS)}; got {input_interpolation!r}."
            )
        self.input_interpolation = input_interpolation
        latent = self.latent_names
        given = dict(latent_initial or {})
        unknown = [n for n in given if n not in latent]
        if unknown:
            raise ConfigError(
                f"Model: latent_initial names {unknown} are not latent states; latent states are {list(latent)}."
            )
        self.latent_initial = {n: float(given.get(n, 0.0)) for n in latent}
        meta = dict(metadata or {})
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Model: metadata must be JSON-serialisable: {exc}.") from exc
        self.metadata = meta
        self.scaling: Any = None
        if scaling is not None:
            self.set_scaling(scaling)
        self.encoder = self._encoder(encoder)

    def _encoder(self, encoder: Encoder | StateEncoder | None) -> StateEncoder | None:
        """The encoder network over this model's measured variables, inputs and latent states."""
        if encoder is None:
            return None
        if not isinstance(encoder, (Encoder, StateEncoder)):
            raise ConfigError(f"Model: encoder must be a sysid.models.Encoder (e.g. Encoder(past=10)); "
                              f"got {type(encoder).__name__}.")
        if not self.latent_names:
            raise ConfigError(
                f"Model: an encoder estimates hidden (unmeasured) states, but every state of this "
                f"model ({list(self.state_names)}) is measured. Add a hidden state (e.g. "
                f"neural(['x', 'h'], observed=['x'], encoder=...)) or leave encoder out.")
        names = {"measured": self.measured, "inputs": self.input_names, "latent": self.latent_names}
        if isinstance(encoder, Encoder):
            return StateEncoder(encoder, **names).to(self.dtype)
        given = {"measured": encoder.measured, "inputs": encoder.inputs, "latent": encoder.latent}
        if given != {k: tuple(v) for k, v in names.items()}:
            raise ConfigError(f"Model: the encoder reads {given}; this model needs "
                              f"{ {k: list(v) for k, v in names.items()} }.")
        return encoder

    # -- names ----------------------------------------------------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:
        """All states, in the order of ``x``'s last axis."""
        return self.field.state_names

    @property
    def input_names(self) -> tuple[str, ...]:
        """Inputs, in the order of ``u``'s last axis."""
        return self.field.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the measurement equations' outputs (empty without output equations)."""
        return () if self.outputs is None else self.outputs.output_names

    @property
    def output_units(self) -> tuple[str, ...]:
        """Units per output."""
        return () if self.outputs is None else self.outputs.output_units

    @property
    def measured(self) -> tuple[str, ...]:
        """What a fit compares with data: the observed states, then the outputs."""
        return (*self.observed, *self.output_names)

    @property
    def latent_names(self) -> tuple[str, ...]:
        """States that are not measured."""
        return tuple(n for n in self.field.state_names if n not in self.observed)

    @property
    def state_units(self) -> tuple[str, ...]:
        """Units per state."""
        return self.field.state_units

    @property
    def input_units(self) -> tuple[str, ...]:
        """Units per input."""
        return self.field.input_units

    @property
    def time_units(self) -> str:
        """Units of time."""
        return self.field.time_units

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's tensors (default dtype when it has none)."""
        for tensor in list(self.parameters()) + list(self.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.get_default_dtype()

    # -- behaviour ------------------------------------------------------------------------------
    def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """``dx/dt = field(t, x, u)`` for ``x`` (B, S), ``u`` (B, I) or None, ``t`` 0-d or (B,)."""
        return self.field(t, x, u)

    def set_scaling(self, scaling: ScalingLike | Mapping[str, Any] | None) -> None:
        """Store the scaling and give it to the field's neural terms (``None`` resets them)."""
        if scaling is not None:
            scaling_to_dict(scaling)  # validate early, with a clear message
        self.field.set_scaling(scaling)
        self.scaling = scaling

    def observe(self, t: Any, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """The outputs ``(..., O)`` of states ``x`` (..., S) at times ``t`` with inputs ``u``."""
        if self.outputs is None:
            raise ConfigError("Model.observe: the model has no output equations (outputs=None).")
        return self.outputs(t, x, u, self.field.physical_parameters())

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Constrained values of the named parameters (the field's, then the outputs')."""
        values = self.field.physical_parameters()
        if self.outputs is not None:
            values.update(self.outputs.physical_parameters())
        return values

    def parameter_specs(self) -> dict[str, Parameter]:
        """The :class:`Parameter` of every named parameter (field and outputs)."""
        specs = dict(self.field.parameter_specs())
        if self.outputs is not None:
            specs.update(self.outputs.parameter_specs())
        return specs

    def parameter_table(self) -> pd.DataFrame:
        """Name, value, bounds, units and vary of each named parameter."""
        table = self.field.parameter_table()
        if self.outputs is None or not self.outputs.parameter_specs():
            return table
        values = self.outputs.physical_parameters()
        rows = [{"name": n, "value": float(values[n].detach().double()), "lower": p.bounds[0],
                 "upper": p.bounds[1], "units": p.units, "vary": p.vary}
                for n, p in self.outputs.parameter_specs().items()]
        extra = pd.DataFrame(rows, columns=table.columns)
        return extra if table.empty else pd.concat([table, extra], ignore_index=True)

    def extra_repr(self) -> str:
        text = (f"states={list(self.state_names)}, inputs={list(self.input_names)}, "
                f"observed={list(self.observed)}, input_interpolation={self.input_interpolation!r}")
        if self.encoder is not None:
            text += f", encoder past={self.encoder.past}"
        return text + (f", outputs={list(self.output_names)}" if self.outputs is not None else "")


# -- factory helpers ------------------------------------------------------------------------------
def _physics_field(system_or_fn: Any, parameters: Mapping[str, Parameter | float] | None,
                   states: Sequence[str] | None, inputs: Sequence[str], free: Iterable[str] | None,
                   values: Mapping[str, float] | None, outputs: Sequence[str] | None,
                   units: dict[str, Any], dtype: torch.dtype | None) -> PhysicsField:
    if callable(system_or_fn) and not isinstance(system_or_fn, str):
        if parameters is None or states is None:
            raise ConfigError(
                "sysid.models: a physics function needs parameters={name: Parameter(...)} and states=[...]."
            )
        if free is not None or values is not None:
            raise ConfigError(
                "sysid.models: free= and values= apply to catalogue systems; for a function set "
                "Parameter(value, vary=...) in parameters."
            )
        return PhysicsField(system_or_fn, parameters, states, inputs, outputs=outputs, dtype=dtype, **units)
    if parameters is not None:
        raise ConfigError(
            "sysid.models: a catalogue system brings its own parameters; choose which are free "
            "with free=[...] and their starting values with values={...}."
        )
    system = system_or_fn
    if isinstance(system, str):
        from sysid import systems as catalogue

        system = catalogue.get(system)
    names = {"state_units": tuple(states) if states is not None else system.states,
             "input_units": tuple(inputs) or system.inputs}
    new_units: dict[str, str] = {}
    for key, given in units.items():
        if key == "time_units":
            if given:
                new_units["time"] = str(given)
        elif isinstance(given, Mapping):
            new_units.update({str(k): str(v) for k, v in given.items()})
        elif given is not None:
            given = [str(v) for v in given]
            if len(given) != len(names[key]):
                raise ConfigError(f"sysid.models: {key} has {len(given)} entries for {list(names[key])}.")
            new_units.update(zip(names[key], given))
    return PhysicsField.from_system(system, free=free, values=values, states=states,
                                    inputs=tuple(inputs) or None, units=new_units or None, dtype=dtype)


def _system_latent_initial(system_or_fn: Any, field: PhysicsField, observed: Sequence[str] | None,
                           given: Mapping[str, float] | None) -> Mapping[str, float] | None:
    """Starting values of unmeasured states: the user's, else a catalogue system's typical
    initial state (a SIR fit with S unmeasured starts near S0 = N, not at 0)."""
    if given is not None or observed is None:
        return given
    system = system_or_fn
    if isinstance(system, str):
        from sysid import systems as catalogue

        system = catalogue.get(system)
    y0 = getattr(system, "y0", None)  # None for a user's function
    if y0 is None or len(y0) != len(field.state_names):
        return given
    return {n: float(v) for n, v in zip(field.state_names, y0) if n not in observed}


OutputsLike = Mapping[str, str] | Outputs | None


def _outputs(outputs: OutputsLike, field: VectorField, parameters: Mapping[str, Parameter | float] | None,
             units: Sequence[str] | Mapping[str, str] | None, dtype: torch.dtype | None) -> Outputs | None:
    """The factories' ``outputs=`` as an :class:`Outputs` over the field's names and parameters."""
    if outputs is None or isinstance(outputs, Outputs):
        if parameters or units:
            raise ConfigError("sysid.models: output_parameters= and output_units= belong to output "
                              "equations given as outputs={name: expression}.")
        return outputs
    if not isinstance(outputs, Mapping):
        raise ConfigError(f"sysid.models: outputs must map output names to expressions, e.g. "
                          f"{{'y': 'clip(h2, 0, 0.5)'}}; got {type(outputs).__name__}.")
    return Outputs(outputs, states=field.state_names, inputs=field.input_names, parameters=parameters,
                   shared=tuple(field.physical_parameters()), units=units, dtype=dtype)


def _observed(observed: Sequence[str] | None, outputs: Outputs | None) -> Sequence[str] | None:
    """The measured states as the Model will take them (none by default with outputs)."""
    return () if observed is None and outputs is not None else observed


def neural(
    states: Sequence[str],
    inputs: Sequence[str] = (),
    *,
    width: int = 64,
    depth: int = 2,
    activation: str = "tanh",
    time_dependent: bool = False,
    seed: int = 0,
    observed: Sequence[str] | None = None,
    latent_initial: Mapping[str, float] | None = None,
    input_interpolation: str = "linear",
    scaling: ScalingLike | Mapping[str, Any] | None = None,
    state_units: Sequence[str] | Mapping[str, str] | None = None,
    input_units: Sequence[str] | Mapping[str, str] | None = None,
    time_units: str = "",
    metadata: Mapping[str, Any] | None = None,
    outputs: OutputsLike = None,
    output_parameters: Mapping[str, Parameter | float] | None = None,
    output_units: Sequence[str] | Mapping[str, str] | None = None,
    encoder: Encoder | None = None,
) -> Model:
    """A black-box model: a :class:`NeuralField` over ``states`` (reading ``inputs``).

    ``outputs``, ``output_parameters``, ``output_units``: measurement equations (see
    :func:`physics`). States left out of ``observed`` are hidden; ``encoder=Encoder(past=N)``
    estimates them at every window start from the last ``N`` measured samples and inputs
    (a state-space model with a subspace encoder, :mod:`sysid.models.encoder`), and lets
    :func:`sysid.simulate` start a new record from its first ``N`` samples.

    Examples
    --------
    >>> neural(["x", "y"], width=16).state_names
    ('x', 'y')
    """
    field = NeuralField(states, inputs, width=width, depth=depth, activation=activation,
                        time_dependent=time_dependent, seed=seed, state_units=state_units,
                        input_units=input_units, time_units=time_units)
    return Model(field, observed=observed, latent_initial=latent_initial,
                 input_interpolation=input_interpolation, scaling=scaling,
                 metadata=metadata, encoder=encoder,
                 outputs=_outputs(outputs, field, output_parameters, output_units, None))


def physics(
    system_or_fn: Any,
    parameters: Mapping[str, Parameter | float] | None = None,
    states: Sequence[str] | None = None,
    inputs: Sequence[str] = (),
    *,
    free: Iterable[str] | None = None,
    values: Mapping[str, float] | None = None,
    observed: Sequence[str] | None = None,
    latent_initial: Mapping[str, float] | None = None,
    input_interpolation: str = "linear",
    state_units: Sequence[str] | Mapping[str, str] | None = None,
    input_units: Sequence[str] | Mapping[str, str] | None = None,
    time_units: str = "",
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, Any] | None = None,
    outputs: OutputsLike = None,
    output_parameters: Mapping[str, Parameter | float] | None = None,
    output_units: Sequence[str] | Mapping[str, str] | None = None,
    encoder: Encoder | None = None,
) -> Model:
    """A grey-box model from a catalogue system (or its name) or a right-hand-side function.

    Parameters
    ----------
    system_or_fn : sysid.systems.System, str or callable
        A catalogue system (all parameters free unless ``free`` lists some; ``values`` replaces
        defaults), or ``fn(t, x, u, p, xp)`` with ``parameters`` and ``states`` (and ``inputs``).
        With a catalogue system, ``states``/``inputs`` rename its states and inputs to the names
        in your data, in the system's order (``physics("lotka_volterra", states=["hare", "lynx"])``).
    outputs : mapping of str to str, or Outputs, optional
        Measurement equations, output name -> expression over states, inputs, ``t`` and
        parameters (``{"y": "clip(h2, 0, 0.5)"}``); the fit then compares these outputs (and the
        ``observed`` states, by default none) with the data's variables of the same names.
    output_parameters : mapping, optional
        Parameters only the output equations read (gain, offset, volume), as ``Parameter`` or
        numbers.
    output_units : mapping or sequence of str, optional
        Units of the outputs.

    Examples
    --------
    >>> def decay(t, x, u, p, xp):
    ...     return xp.stack([-p["k"] * x[..., 0]])
    >>> physics(decay, {"k": Parameter(0.3, bounds=(0, 5), units="1/s")}, ["c"]).parameter_table()["units"][0]
    '1/s'
    """
    units = {"state_units": state_units, "input_units": input_units, "time_units": time_units}
    field = _physics_field(system_or_fn, parameters, states, inputs, free, values, None, units, dtype)
    outs = _outputs(outputs, field, output_parameters, output_units, dtype)
    latent_initial = _system_latent_initial(system_or_fn, field, _observed(observed, outs), latent_initial)
    return Model(field, observed=observed, latent_initial=latent_initial,
                 input_interpolation=input_interpolation, metadata=metadata, outputs=outs,
                 encoder=encoder)


def hybrid(
    system_or_fn: Any,
    parameters: Mapping[str, Parameter | float] | None = None,
    states: Sequence[str] | None = None,
    inputs: Sequence[str] = (),
    *,
    free: Iterable[str] | None = None,
    values: Mapping[str, float] | None = None,
    neural_states: Sequence[str] | None = None,
    neural_inputs: Sequence[str] | None = None,
    width: int = 32,
    depth: int = 2,
    activation: str = "tanh",
    time_dependent: bool = False,
    seed: int = 0,
    observed: Sequence[str] | None = None,
    latent_initial: Mapping[str, float] | None = None,
    input_interpolation: str = "linear",
    scaling: ScalingLike | Mapping[str, Any] | None = None,
    state_units: Sequence[str] | Mapping[str, str] | None = None,
    input_units: Sequence[str] | Mapping[str, str] | None = None,
    time_units: str = "",
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, Any] | None = None,
    outputs: OutputsLike = None,
    output_parameters: Mapping[str, Parameter | float] | None = None,
    output_units: Sequence[str] | Mapping[str, str] | None = None,
    encoder: Encoder | None = None,
) -> Model:
    """Physics (as in :func:`physics`) plus a neural correction on ``neural_states`` (default all).

    ``neural_inputs`` selects the inputs the network reads (default all of the physics inputs);
    ``outputs``, ``output_parameters``, ``output_units`` declare measurement equations (see
    :func:`physics`); ``encoder`` estimates hidden states from past samples (see :func:`neural`).
    """
    units = {"state_units": state_units, "input_units": input_units, "time_units": time_units}
    phys = _physics_field(system_or_fn, parameters, states, inputs, free, values, None, units, dtype)
    n_inputs = phys.input_names if neural_inputs is None else tuple(neural_inputs)
    unknown = [n for n in n_inputs if n not in phys.input_names]
    if unknown:
        raise ConfigError(f"hybrid: neural_inputs {unknown} are not inputs of the physics term {list(phys.input_names)}.")
    net = NeuralField(phys.state_names, n_inputs, outputs=neural_states, width=width, depth=depth,
                      activation=activation, time_dependent=time_dependent, seed=seed,
                      state_units=phys.state_units,
                      input_units=[phys.input_units[phys.input_names.index(n)] for n in n_inputs],
                      time_units=phys.time_units)
    if dtype is not None:
        net = net.to(dtype)
    field = HybridField(phys, net, neural_states)
    outs = _outputs(outputs, field, output_parameters, output_units, dtype)
    latent_initial = _system_latent_initial(system_or_fn, phys, _observed(observed, outs), latent_initial)
    return Model(field, observed=observed, latent_initial=latent_initial,
                 input_interpolation=input_interpolation, scaling=scaling,
                 metadata=metadata, outputs=outs, encoder=encoder)


def second_order(
    positions: Sequence[str],
    velocities: Sequence[str],
    *,
    acceleration: Callable[..., Any] | None = None,
    parameters: Mapping[str, Parameter | float] | None = None,
    inputs: Sequence[str] = (),
    neural: bool | None = None,
    width: int = 32,
    depth: int = 2,
    activation: str = "tanh",
    time_dependent: bool = False,
    seed: int = 0,
    observed: Sequence[str] | None = None,
    latent_initial: Mapping[str, float] | None = None,
    input_interpolation: str = "linear",
    scaling: ScalingLike | Mapping[str, Any] | None = None,
    state_units: Sequence[str] | Mapping[str, str] | None = None,
    input_units: Sequence[str] | Mapping[str, str] | None = None,
    time_units: str = "",
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, Any] | None = None,
    outputs: OutputsLike = None,
    output_parameters: Mapping[str, Parameter | float] | None = None,
    output_units: Sequence[str] | Mapping[str, str] | None = None,
    encoder: Encoder | None = None,
) -> Model:
    """A mechanical model ``dq/dt = v``, ``dv/dt = a(t, q, v, u)``.

    The acceleration is ``acceleration(t, x, u, p, xp)`` (returning one entry per velocity, with
    ``x = [q..., v...]``) with ``parameters``; a neural network (``neural=True``, the default when
    no function is given); or both summed (a hybrid acceleration). ``outputs``,
    ``output_parameters``, ``output_units`` declare measurement equations (see :func:`physics`);
    ``encoder`` estimates hidden states (unmeasured velocities) from past samples (see
    :func:`neural`).

    Examples
    --------
    >>> def spring(t, x, u, p, xp):
    ...     return xp.stack([-p["k"] * x[..., 0]])
    >>> m = second_order(["q"], ["v"], acceleration=spring, parameters={"k": 4.0})
    >>> m(torch.tensor(0.0), torch.tensor([[1.0, 0.5]])).tolist()
    [[0.5, -4.0]]
    """
    states = tuple(positions) + tuple(velocities)
    use_net = acceleration is None if neural is None else bool(neural)
    if acceleration is None and not use_net:
        raise ConfigError("second_order: give an acceleration function, neural=True, or both.")
    units = {"state_units": state_units, "input_units": input_units, "time_units": time_units}
    phys = None
    if acceleration is not None:
        if parameters is None:
            raise ConfigError("second_order: an acceleration function needs parameters={name: Parameter(...)}.")
        phys = PhysicsField(acceleration, parameters, states, inputs, outputs=velocities, dtype=dtype, **units)
    net = None
    if use_net:
        net = NeuralField(states, inputs, outputs=velocities, width=width, depth=depth,
                          activation=activation, time_dependent=time_dependent, seed=seed, **units)
        if dtype is not None:
            net = net.to(dtype)
    acc: VectorField
    if phys is not None and net is not None:
        acc = HybridField(phys, net)
    else:
        acc = phys if phys is not None else net  # type: ignore[assignment]
    field = SecondOrderField(acc, positions, velocities)
    return Model(field, observed=observed, latent_initial=latent_initial,
                 input_interpolation=input_interpolation, scaling=scaling,
                 metadata=metadata, encoder=encoder,
                 outputs=_outputs(outputs, field, output_parameters, output_units, dtype))
