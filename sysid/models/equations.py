"""Models from equations written as text: a ``[model]`` table in TOML, no Python needed.

An equations file declares states (with units), inputs, parameters (value, bounds, units, fixed
or free), one right-hand side per state, optional neural terms added to chosen equations, and
optional measurement equations::

    [model]
    name = "driven pendulum"
    time_units = "s"

    [model.states]
    theta = "rad"                       # name = units (measured)
    v = { units = "rad/s" }

    [model.inputs]
    u = "rad/s^2"

    [model.parameters]
    w2 = { value = 9.0, bounds = [0, 100], units = "1/s^2" }
    c = { value = 0.1, bounds = [0, 10], units = "1/s" }

    [model.equations]
    dtheta = "v"
    dv = "-w2*sin(theta) - c*v + u + nn(theta, v)"   # nn(...): a network of theta and v

    [model.outputs]                      # optional: what the sensors report
    # y = { equation = "clip(h2, 0, 0.5)", units = "m" }

    [model.neural]                       # optional: size of the nn(...) networks
    width = 32

:func:`from_toml` builds an ordinary :class:`~sysid.models.Model`: a
:class:`~sysid.models.PhysicsField` whose function is an :class:`EquationsRhs` (the equations
compiled by :mod:`sysid.expressions`, never evaluated as Python), wrapped in a
:class:`~sysid.models.HybridField` per ``nn(...)`` argument list, with
:class:`~sysid.models.Outputs` for the measurement equations. Model files store the equations as
text, so loading one needs no ``allow_import``.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sysid.errors import ConfigError, ParameterError
from sysid.expressions import FUNCTIONS, NEURAL, ExpressionError, parse
from sysid.models.base import VectorField
from sysid.models.composite import HybridField
from sysid.models.equations_rhs import EquationsRhs
from sysid.models.interpolation import INTERPOLATIONS
from sysid.models.model import Model
from sysid.models.neural import ACTIVATIONS, NeuralField
from sysid.models.outputs import TIME_NAME, Outputs
from sysid.models.parameters import Parameter
from sysid.models.physics import PhysicsField

__all__ = ["EquationsRhs", "from_toml", "from_dict", "MODEL_KEYS"]

MODEL_KEYS = ("kind", "name", "description", "time_units", "input_interpolation", "states",
              "inputs", "parameters", "equations", "outputs", "neural")
STATE_KEYS = ("units", "measured", "initial", "description")
INPUT_KEYS = ("units", "description")
PARAMETER_KEYS = ("value", "bounds", "units", "fixed", "scale", "description")
OUTPUT_KEYS = ("equation", "units", "description")
NEURAL_KEYS = ("width", "depth", "activation", "seed")
_RESERVED = (*FUNCTIONS, NEURAL, TIME_NAME)


# ------------------------------------------------------------------------------------------------
# reading the [model] table


class _Reader:
    """Checks one ``[model]`` table and collects what the model needs (errors name the key)."""

    def __init__(self, table: Mapping[str, Any], source: str) -> None:
        self.t = table
        self.source = source

    def keys(self, table: Any, allowed: Sequence[str], where: str) -> dict[str, Any]:
        if not isinstance(table, Mapping):
            raise ConfigError(f"{self.source}: [{where}] must be a table; got {table!r}.")
        for k in table:
            if k not in allowed:
                import difflib

                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{self.source}: unknown key {k!r} in [{where}]; it accepts "
                                  f"{list(allowed)}.{hint}")
        return dict(table)

    def name(self, name: Any, where: str, taken: Mapping[str, str]) -> str:
        name = str(name)
        if not name.isidentifier() or "__" in name:
            raise ConfigError(f"{self.source}: [{where}] {name!r} is not a usable name (letters, "
                              "digits and _, not starting with a digit, no double underscore).")
        if name in _RESERVED:
            raise ConfigError(f"{self.source}: [{where}] {name!r} is reserved (a function or the "
                              "time t); choose another name.")
        if name in taken:
            raise ConfigError(f"{self.source}: [{where}] {name!r} is already {taken[name]}; names "
                              "must be unique across states, inputs, parameters and outputs.")
        return name

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise ConfigError(f"{self.source}: {where} must be text; got {value!r}.")
        return value

    def names_units(self, key: str, allowed: Sequence[str], taken: dict[str, str],
                    what: str) -> dict[str, dict[str, Any]]:
        """``states``/``inputs``: a list of names, a table name -> units, or name -> table."""
        raw = self.t.get(key, [] if key == "inputs" else None)
        if raw is None:
            raise ConfigError(f"{self.source}: [model] needs a [model.states] table, e.g. "
                              "states = { x = \"m\", v = \"m/s\" }.")
        out: dict[str, dict[str, Any]] = {}
        where = f"model.{key}"
        if isinstance(raw, list):
            items: list[tuple[Any, Any]] = [(n, {}) for n in raw]
        elif isinstance(raw, Mapping):
            items = list(raw.items())
        else:
            raise ConfigError(f"{self.source}: [{where}] must be a list of names or a table "
                              f"name = units; got {raw!r}.")
        for name, value in items:
            name = self.name(name, where, taken)
            if isinstance(value, str):
                entry: dict[str, Any] = {"units": value}
            else:
                entry = self.keys(value, allowed, f"{where}.{name}")
            if not isinstance(entry.get("units", ""), str):
                raise ConfigError(f"{self.source}: [{where}.{name}] units must be text; got "
                                  f"{entry['units']!r}.")
            out[name] = entry
            taken[name] = what
        if key == "states" and not out:
            raise ConfigError(f"{self.source}: [model.states] is empty; declare at least one state.")
        return out

    def parameters(self, taken: dict[str, str]) -> dict[str, Parameter]:
        raw = self.t.get("parameters", {})
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{self.source}: [model.parameters] must be a table name = value or "
                              f"name = {{ value = ..., bounds = [lo, hi] }}; got {raw!r}.")
        out: dict[str, Parameter] = {}
        for name, value in raw.items():
            where = f"model.parameters.{name}"
            name = self.name(name, "model.parameters", taken)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                entry: dict[str, Any] = {"value": value}
            else:
                entry = self.keys(value, PARAMETER_KEYS, where)
            if "value" not in entry:
                raise ConfigError(f"{self.source}: [{where}] needs a value, as in "
                                  f"{name} = {{ value = 1.0, bounds = [0, 10] }}.")
            bounds = entry.get("bounds", [-math.inf, math.inf])
            if (not isinstance(bounds, list) or len(bounds) != 2
                    or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
                raise ConfigError(f"{self.source}: [{where}] bounds must be [lower, upper] numbers "
                                  f"(inf allowed, e.g. [0, inf]); got {bounds!r}.")
            fixed = entry.get("fixed", False)
            if not isinstance(fixed, bool):
                raise ConfigError(f"{self.source}: [{where}] fixed must be true or false; got {fixed!r}.")
            value = entry["value"]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{self.source}: [{where}] value must be a number; got {value!r}.")
            try:
                out[name] = Parameter(float(value), bounds=(float(bounds[0]), float(bounds[1])),
                                      vary=not fixed, units=str(entry.get("units", "")),
                                      scale=entry.get("scale"),
                                      description=str(entry.get("description", "")))
            except ParameterError as exc:
                raise ParameterError(f"{self.source}: [{where}] {exc}") from None
            taken[name] = "a parameter"
        return out

    def equations(self, states: Sequence[str]) -> dict[str, str]:
        raw = self.t.get("equations")
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError(f"{self.source}: [model] needs a [model.equations] table with one "
                              f"right-hand side per state, e.g. d{states[0]} = \"...\".")
        out: dict[str, str] = {}
        for key, text in raw.items():
            key = str(key)
            state = key[1:] if key.startswith("d") else None
            if state not in states:
                hint = (f" write d{key} = \"...\" for the derivative of {key}" if key in states
                        else f" the states are {list(states)}")
                raise ConfigError(f"{self.source}: [model.equations] {key!r} is not d<state>;{hint}.")
            out[state] = self.text(text, f"[model.equations] {key}")
        missing = [s for s in states if s not in out]
        if missing:
            raise ConfigError(f"{self.source}: [model.equations] has no equation for "
                              f"{missing}; add " + ", ".join(f"d{s} = \"...\"" for s in missing) + ".")
        return out

    def outputs(self, taken: dict[str, str]) -> dict[str, dict[str, Any]]:
        raw = self.t.get("outputs", {})
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{self.source}: [model.outputs] must be a table name = \"equation\"; "
                              f"got {raw!r}.")
        out: dict[str, dict[str, Any]] = {}
        for name, value in raw.items():
            name = self.name(name, "model.outputs", taken)
            where = f"model.outputs.{name}"
            entry = {"equation": value} if isinstance(value, str) else self.keys(value, OUTPUT_KEYS, where)
            if "equation" not in entry:
                raise ConfigError(f"{self.source}: [{where}] needs an equation, as in "
                                  f"{name} = {{ equation = \"clip(h2, 0, 0.5)\", units = \"m\" }}.")
            entry["equation"] = self.text(entry["equation"], f"[{where}] equation")
            out[name] = entry
            taken[name] = "an output"
        return out


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"equations file '{path}' does not exist (or is not a file).")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"equations file '{path}' is not valid TOML: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"equations file '{path}' is not UTF-8 text; save it as UTF-8.") from None


def from_toml(path_or_dict: str | os.PathLike[str] | Mapping[str, Any], *,
              observed: Sequence[str] | None = None, dtype: torch.dtype | None = None) -> Model:
    """Build a :class:`~sysid.models.Model` from an equations file (or its parsed content).

    Parameters
    ----------
    path_or_dict : path-like or mapping
        A TOML file with a ``[model]`` table (other tables such as ``[data]`` and ``[fit]`` are
        left to their readers), or the parsed content: a mapping with a ``"model"`` key or the
        ``[model]`` table itself.
    observed : sequence of str, optional
        The measured states, overriding the file's ``measured`` flags.
    dtype : torch.dtype, optional
        Dtype of the parameters and networks (default: torch's default dtype).

    Returns
    -------
    Model
        Physics (and, with ``nn(...)`` terms, hybrid) model with outputs when declared; its
        ``metadata["equations"]`` holds the ``[model]`` table as read.

    Raises
    ------
    ConfigError
        For a missing file, invalid TOML, unknown keys (with a "did you mean"), a missing
        equation, and any expression the whitelist refuses (quoted with a caret).
    ParameterError
        For parameter values outside their bounds, or parameters no equation reads.

    Examples
    --------
    >>> m = from_toml({"states": {"x": "m"}, "parameters": {"k": 0.5},
    ...                "equations": {"dx": "-k*x"}})
    >>> m.parameter_table()["value"].tolist()
    [0.5]
    """
    if isinstance(path_or_dict, Mapping):
        content, source = dict(path_or_dict), "equations"
    else:
        path = Path(path_or_dict)
        content, source = _read_toml(path), f"equations file '{path}'"
    table = content.get("model", content) if "model" in content else content
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [model] must be a table; got {table!r}.")
    return from_dict(table, source=source, observed=observed, dtype=dtype)


def from_dict(table: Mapping[str, Any], *, source: str = "equations",
              observed: Sequence[str] | None = None, dtype: torch.dtype | None = None) -> Model:
    """Build a model from a ``[model]`` table already read (see :func:`from_toml`)."""
    r = _Reader(table, source)
    r.keys(table, MODEL_KEYS, "model")
    kind = table.get("kind", "equations")
    if kind != "equations":
        raise ConfigError(f"{source}: [model] kind is {kind!r}; an equations file has kind = "
                          "\"equations\" (or no kind).")
    taken: dict[str, str] = {}
    states = r.names_units("states", STATE_KEYS, taken, "a state")
    inputs = r.names_units("inputs", INPUT_KEYS, taken, "an input")
    params = r.parameters(taken)
    outputs = r.outputs(taken)
    texts = r.equations(list(states))
    time_units = table.get("time_units", "")
    interp = table.get("input_interpolation", "linear")
    if not isinstance(time_units, str):
        raise ConfigError(f"{source}: [model] time_units must be text; got {time_units!r}.")
    if interp not in INTERPOLATIONS:
        raise ConfigError(f"{source}: [model] input_interpolation must be one of "
                          f"{list(INTERPOLATIONS)}; got {interp!r}.")
    neural = r.keys(table.get("neural", {}), NEURAL_KEYS, "model.neural")
    state_names, input_names = list(states), list(inputs)
    try:
        rhs = EquationsRhs(texts, states=state_names, inputs=input_names, parameters=list(params))
    except ExpressionError as exc:
        raise ExpressionError(f"{source}: {exc.reason}", expression=exc.expression,
                              column=exc.column, line=exc.line) from None
    read_rhs = {n for e in rhs.expressions.values() for n in e.names if n in params}
    out_units = {n: str(o.get("units", "")) for n, o in outputs.items()}
    state_units = [str(states[s].get("units", "")) for s in state_names]
    input_units = [str(inputs[n].get("units", "")) for n in input_names]
    phys_params = {n: p for n, p in params.items() if n in read_rhs}
    field: VectorField = PhysicsField(rhs, phys_params, state_names, input_names,
                                      state_units=state_units, input_units=input_units,
                                      time_units=time_units, dtype=dtype)
    field = _add_networks(field, rhs, neural, source, dtype)
    outs = None
    if outputs:
        known = (*state_names, *input_names, *params, TIME_NAME)
        try:
            read_out = {n for name, o in outputs.items()
                        for n in parse(o["equation"], names=known, where=f"output {name!r}").names}
            own = {n: p for n, p in params.items() if n not in read_rhs and n in read_out}
            outs = Outputs({n: o["equation"] for n, o in outputs.items()}, states=state_names,
                           inputs=input_names, parameters=own, shared=sorted(read_rhs),
                           units=out_units, dtype=dtype)
        except ExpressionError as exc:
            raise ExpressionError(f"{source}: [model.outputs] {exc.reason}", expression=exc.expression,
                                  column=exc.column, line=exc.line) from None
        except ParameterError as exc:
            raise ParameterError(f"{source}: {exc}") from None
        read = set(read_rhs) | {n for e in outs.expressions.values() for n in e.names}
    else:
        read = set(read_rhs)
    unused = [n for n in params if n not in read]
    if unused:
        raise ParameterError(f"{source}: [model.parameters] {unused} are declared but no equation "
                             "reads them; remove them or use them.")
    measured, latent = _measured(states, observed, bool(outputs), source)
    metadata = {"equations": _normalised(table, states, inputs, params, outputs, texts)}
    if "name" in table:
        metadata["name"] = str(table["name"])
    return Model(field, observed=measured, outputs=outs, latent_initial=latent,
                 input_interpolation=interp, metadata=metadata)


def _measured(states: Mapping[str, Mapping[str, Any]], observed: Sequence[str] | None,
              has_outputs: bool, source: str) -> tuple[list[str], dict[str, float]]:
    """Measured states (the flags, or ``observed``) and starting guesses of the others."""
    if observed is not None:
        unknown = [n for n in observed if n not in states]
        if unknown:
            raise ConfigError(f"{source}: observed names {unknown} are not states {list(states)}.")
        measured = [s for s in states if s in observed]
    else:
        measured = []
        for s, entry in states.items():
            flag = entry.get("measured", not has_outputs)
            if not isinstance(flag, bool):
                raise ConfigError(f"{source}: [model.states.{s}] measured must be true or false; "
                                  f"got {flag!r}.")
            if flag:
                measured.append(s)
    latent: dict[str, float] = {}
    for s, entry in states.items():
        if "initial" not in entry:
            continue
        value = entry["initial"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: [model.states.{s}] initial must be a finite number; "
                              f"got {value!r}.")
        if s in measured:
            raise ConfigError(f"{source}: [model.states.{s}] initial is the starting guess of an "
                              f"unmeasured state, but {s!r} is measured (its data give the start); "
                              "set measured = false or remove initial.")
        latent[s] = float(value)
    if not measured and not has_outputs:
        raise ConfigError(f"{source}: no state is measured and there are no [model.outputs]; the "
                          "fit needs something to compare with data.")
    return measured, latent


def _add_networks(field: VectorField, rhs: EquationsRhs, neural: Mapping[str, Any], source: str,
                  dtype: torch.dtype | None) -> VectorField:
    """Wrap the physics in one HybridField per distinct ``nn(...)`` argument list."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for s, e in rhs.expressions.items():
        for term in e.neural:
            if term.sign < 0:
                raise ExpressionError(f"{source}: equation d{s}: write '+ nn(...)': the network "
                                      "learns the sign of its correction", expression=e.text,
                                      column=term.column)
            groups.setdefault(term.arguments, []).append(s)
    if not groups:
        if neural:
            raise ConfigError(f"{source}: [model.neural] sizes the nn(...) terms, but no equation "
                              "has one; add '+ nn(x, ...)' to an equation or remove [model.neural].")
        return field
    width = neural.get("width", 32)
    depth = neural.get("depth", 2)
    activation = neural.get("activation", "tanh")
    seed = neural.get("seed", 0)
    for key, value in (("width", width), ("depth", depth), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "width" else 0):
            raise ConfigError(f"{source}: [model.neural] {key} must be a whole number"
                              f"{' >= 1' if key == 'width' else ' >= 0'}; got {value!r}.")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"{source}: [model.neural] activation must be one of {sorted(ACTIVATIONS)}; "
                          f"got {activation!r}.")
    states, inputs = field.state_names, field.input_names
    for k, (args, outs) in enumerate(groups.items()):
        net = NeuralField(states, [a for a in args if a in inputs], outputs=outs,
                          arguments=[a for a in args if a in states], width=width, depth=depth,
                          activation=activation, time_dependent=TIME_NAME in args, seed=seed + k,
                          state_units=field.state_units,
                          input_units=[field.input_units[inputs.index(a)] for a in args if a in inputs],
                          time_units=field.time_units)
        if dtype is not None:
            net = net.to(dtype)
        field = HybridField(field, net, outs)
    return field


def _normalised(table: Mapping[str, Any], states: Mapping[str, Any], inputs: Mapping[str, Any],
                params: Mapping[str, Parameter], outputs: Mapping[str, Any],
                texts: Mapping[str, str]) -> dict[str, Any]:
    """The ``[model]`` table in one canonical, JSON-able form (for model metadata)."""
    def finite(b: float) -> float | str:
        return b if math.isfinite(b) else ("inf" if b > 0 else "-inf")

    out: dict[str, Any] = {"kind": "equations"}
    for key in ("name", "description", "time_units", "input_interpolation"):
        if key in table:
            out[key] = table[key]
    out["states"] = {s: dict(e) for s, e in states.items()}
    out["inputs"] = {n: dict(e) for n, e in inputs.items()}
    out["parameters"] = {n: {"value": p.value, "bounds": [finite(b) for b in p.bounds],
                             "units": p.units, "fixed": not p.vary} for n, p in params.items()}
    out["equations"] = {f"d{s}": t for s, t in texts.items()}
    if outputs:
        out["outputs"] = {n: dict(o) for n, o in outputs.items()}
    if "neural" in table:
        out["neural"] = dict(table["neural"])
    return out
