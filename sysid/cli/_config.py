"""The ``fit`` configuration file: TOML read with :mod:`tomllib`, flags on top, resolved copy written.

A config file holds every option of ``sysid fit`` in three tables::

    [data]                      # how to read the measurements
    path = "pendulum.csv"       # optional when DATA is given on the command line
    time = "t"
    states = ["theta", "omega"]
    inputs = []
    run = "run"                 # column with the run id (long format)
    sep = ","                   # delimiter; default: detected
    decimal = "."               # "," for decimal-comma files
    encoding = "latin-1"        # default UTF-8
    missing_values = ["-999"]   # extra cell texts meaning "not measured"
    sort = false                # sort each run by time instead of refusing unsorted time
    drop_duplicates = false     # drop repeated times (first kept) instead of refusing them
    rename = { angle = "theta" }  # DATA=SYSTEM: which catalogue state a column is (the data
                                  # keeps its name; a neural fit renames the column)
    holdout = 0.25              # fraction of runs, or a list of run ids
    where = "condition == 'mixture'"  # keep only the rows where this holds (any columns)
    constant_inputs = { u = 0.0 }     # inputs the data lacks, held constant

    [model]
    kind = "hybrid:pendulum"    # "neural", "physics:SYSTEM", "hybrid:SYSTEM",
                                # "equations:FILE.toml" or "equations" (the equations below)
    free = ["g_over_l"]         # physical parameters to fit (physics/hybrid)
    params = { damping = 0.1 }  # fixed/initial parameter values
    latent = { S = 990.0 }      # starting guesses of states the data does not measure
    hidden = ["h"]              # hidden states of a neural model (not in the data)
    encoder = 10                # estimate hidden states from the last 10 samples (Encoder(past=10))
    outputs = { cases = "gamma*I" }   # measurement equations (outputs the data measures)
    # with kind = "equations": states, inputs, parameters, equations, outputs, neural tables
    # as in an equations file (see sysid.models.from_toml)

    [fit]                       # top-level fields of sysid.training.FitConfig
    epochs = 200
    seed = 0
    initial_states = "free"
    [fit.optimizer]             # one table per part: optimizer, shooting, solver, loss,
    lr = 0.005                  # warm_start, validation, checkpoint, refine
    [fit.loss]
    kind = "sse"
    weights = { x = 2.0 }

Unknown tables or keys are errors naming the key; a key of the former flat ``[fit]`` layout
(``lr``, ``horizons``, ...) is an error naming its new table. Command-line flags override the
file; ``--set PART.KEY=VALUE`` changes one field of a ``[fit.PART]`` table.
"""

from __future__ import annotations

import math
import stat
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sysid.errors import ConfigError

__all__ = ["CliFitOptions", "DATA_KEYS", "MODEL_KEYS", "read_config", "dumps_toml"]

DATA_KEYS = ("path", "time", "states", "inputs", "run", "sep", "decimal", "encoding",
             "missing_values", "sort", "drop_duplicates", "rename", "holdout", "where",
             "constant_inputs")
MODEL_KEYS = ("kind", "free", "params", "width", "depth", "latent", "outputs", "hidden", "encoder")
SECTIONS = ("data", "model", "fit")
INLINE_TABLES = ("params", "rename", "weights", "sigma", "latent", "constant_inputs")
EQUATIONS = "equations"
MAX_CONFIG_BYTES = 1024 * 1024  # a config file is a few lines; /dev/zero is refused


@dataclass(frozen=True, kw_only=True)
class CliFitOptions:
    """Everything ``sysid fit`` needs, after merging the config file and the flags.

    ``fit`` holds the ``[fit]`` table: top-level keys of ``sysid.training.FitConfig``, one
    sub-table per part and dotted ``PART.KEY`` overrides from ``--set`` (all checked by
    ``FitConfig.from_dict``); the rest is how to read the data and which model to build.
    """

    path: str | None = None
    time: str | None = None
    states: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    run: str | None = None
    sep: str | None = None
    decimal: str = "."
    encoding: str | None = None
    missing_values: tuple[str, ...] = ()
    sort: bool = False
    drop_duplicates: bool = False
    rename: dict[str, str] = field(default_factory=dict)
    holdout: float | tuple[str, ...] | None = None
    kind: str = "neural"
    free: tuple[str, ...] | None = None
    params: dict[str, float] = field(default_factory=dict)
    width: int | None = None
    depth: int | None = None
    where: str | None = None
    constant_inputs: dict[str, float] = field(default_factory=dict)
    latent: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()
    encoder: int | None = None
    equations: dict[str, Any] | None = None
    fit: dict[str, Any] = field(default_factory=dict)

    def merged(self, **overrides: Any) -> CliFitOptions:
        """A copy with the given values replaced; ``None`` means "not given on the command line"."""
        fit = dict(self.fit)
        fit.update(overrides.pop("settings", None) or {})
        for key in ("epochs", "seed"):
            value = overrides.pop(key, None)
            if value is not None:
                fit[key] = value
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, fit=fit, **overrides)

    def to_toml_dict(self) -> dict[str, Any]:
        """The resolved configuration as nested tables, ready for :func:`dumps_toml`."""
        data: dict[str, Any] = {
            "path": self.path, "time": self.time, "states": list(self.states),
            "inputs": list(self.inputs), "run": self.run, "sep": self.sep, "decimal": self.decimal,
            "encoding": self.encoding, "missing_values": list(self.missing_values),
            "sort": self.sort, "drop_duplicates": self.drop_duplicates,
            "rename": dict(self.rename),
            "holdout": list(self.holdout) if isinstance(self.holdout, tuple) else self.holdout,
            "where": self.where, "constant_inputs": dict(self.constant_inputs),
        }
        model: dict[str, Any] = {"kind": self.kind,
                                 "free": list(self.free) if self.free is not None else None,
                                 "params": dict(self.params), "width": self.width,
                                 "depth": self.depth, "latent": dict(self.latent),
                                 "outputs": dict(self.outputs), "hidden": list(self.hidden),
                                 "encoder": self.encoder}
        if self.equations is not None:  # the equations themselves: the file stands alone
            model = {"kind": EQUATIONS, **{k: v for k, v in self.equations.items() if k != "kind"}}
            if self.latent:
                model["latent"] = dict(self.latent)
            if self.encoder is not None:
                model["encoder"] = self.encoder
        return {"data": data, "model": model, "fit": dict(self.fit)}


def _names(value: Any, key: str, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: '{key}' must be a list of names such as [\"x\", \"v\"], "
                          f"got {value!r}.")
    return tuple(value)


def _opt_str(value: Any, key: str, source: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}.")
    return value


def _opt_int(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source}: '{key}' must be a positive integer, got {value!r}.")
    return value


def read_config(path: Path, *, extra: tuple[str, ...] = ()) -> CliFitOptions:
    """Read a ``fit`` config file (``extra``: more tables allowed and left to the caller, such as
    ``sysid sweep``'s ``[sweep]``).

    Raises
    ------
    ConfigError
        When the file is not valid TOML, has an unknown table or key (named with its table,
        e.g. ``data.tme``), or a value of the wrong type.
    """
    # Local import: the CLI's helpers live in _support; the parsing rules are shared with flags.
    from sysid.cli._support import (
        existing_file,
        parse_assignments,
        parse_holdout,
        parse_outputs,
        parse_renames,
    )

    existing_file(path, what="config file")
    source = f"config file '{path}'"
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{source} is not a regular file (a device, pipe or folder); give a "
                          f"TOML file.")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source} has {st.st_size} bytes; a config file is a few lines of TOML "
                          f"(at most {MAX_CONFIG_BYTES} bytes are read).")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.loads(fh.read(MAX_CONFIG_BYTES + 1).decode("utf-8"))
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source} is not UTF-8 text; save it as UTF-8.") from None
    for key, value in raw.items():
        if key not in SECTIONS + tuple(extra):
            raise ConfigError(f"{source}: unknown key '{key}'; the file may hold the tables "
                              f"{list(SECTIONS)} (see 'sysid fit --help').")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a table ([{key}]), got {value!r}.")
    kwargs: dict[str, Any] = {}
    model_table = dict(raw.get("model", {}))
    if model_table.get("kind") == EQUATIONS or (EQUATIONS in model_table and "kind" not in model_table):
        # the [model] table is an equations table (read by sysid.models.from_toml); --latent
        # may sit beside it
        if "latent" in model_table:
            kwargs["latent"] = parse_assignments(model_table.pop("latent"),
                                                 option=f"{source}, [model] latent")
        if "encoder" in model_table:
            kwargs["encoder"] = _opt_int(model_table.pop("encoder"), "encoder", f"{source}, [model]")
        kwargs["kind"] = EQUATIONS
        kwargs["equations"] = model_table
        raw = {**raw, "model": {}}
    elif str(model_table.get("kind", "")).startswith(EQUATIONS + ":"):
        file = Path(str(model_table["kind"]).partition(":")[2].strip())
        if not file.is_absolute():  # relative to the config file, like [data] path
            model_table["kind"] = f"{EQUATIONS}:{path.parent / file}"
        raw = {**raw, "model": model_table}
    for section, allowed in (("data", DATA_KEYS), ("model", MODEL_KEYS)):
        for key, value in raw.get(section, {}).items():
            if key not in allowed:
                raise ConfigError(f"{source}: unknown key '{section}.{key}'; [{section}] accepts "
                                  f"{list(allowed)}.")
            where = f"{source}, [{section}]"
            if key in ("states", "inputs", "free", "missing_values", "hidden"):
                kwargs[key] = _names(value, key, where)
            elif key in ("params", "latent", "constant_inputs"):
                kwargs[key] = parse_assignments(value, option=f"{where} {key}")
            elif key == "outputs":
                kwargs[key] = parse_outputs(value, option=f"{where} outputs")
            elif key == "rename":
                kwargs[key] = parse_renames(value, option=f"{where} rename")
            elif key == "holdout":
                kwargs[key] = parse_holdout(value, option=f"{where} holdout")
            elif key in ("width", "depth", "encoder"):
                kwargs[key] = _opt_int(value, key, where)
            elif key in ("sort", "drop_duplicates"):
                if not isinstance(value, bool):
                    raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}.")
                kwargs[key] = value
            else:
                kwargs[key] = _opt_str(value, key, where)
    if ("path" in kwargs and not kwargs["path"].startswith("dataset:")
            and not Path(kwargs["path"]).is_absolute()):
        # relative to the config file, so a config copied with its data still works
        kwargs["path"] = str((path.parent / kwargs["path"]))
    return CliFitOptions(fit=dict(raw.get("fit", {})), **kwargs)


# ----------------------------------------------------------------------------------------------
# Writing TOML (tomllib reads only)


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return _toml_str(key)


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{_toml_key(str(k))} = {_toml_value(v, k)}" for k, v in value.items()
                 if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if hasattr(value, "item"):  # NumPy scalar
        return _toml_value(value.item(), key)
    raise ConfigError(f"cannot write the value of '{key}' ({type(value).__name__}) to TOML.")


def dumps_toml(tables: dict[str, dict[str, Any]], *, header: str = "") -> str:
    """Write nested tables as TOML (``None`` values are left out: TOML has no null).

    Sub-dicts of a table become ``[table.sub]`` sections so the result reads back with
    :func:`tomllib.loads` to the same values.
    """
    lines: list[str] = [f"# {line}" for line in header.splitlines()]

    def emit(name: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if v is not None and not
                   (isinstance(v, dict) and k not in INLINE_TABLES)}
        subs = {k: v for k, v in table.items() if isinstance(v, dict) and k not in INLINE_TABLES}
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        for k, v in scalars.items():
            lines.append(f"{_toml_key(str(k))} = {_toml_value(v, str(k))}")
        for k, v in subs.items():
            emit(f"{name}.{_toml_key(str(k))}", v)

    for name, table in tables.items():
        emit(_toml_key(name), table)
    return "\n".join(lines) + "\n"
