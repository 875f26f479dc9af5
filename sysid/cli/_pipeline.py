"""The steps the commands chain: read data, build a model from ``--model``, record a manifest.

Everything here calls sysid's public Python API; the commands add only option handling and files.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sysid.cli._config import CliFitOptions
from sysid.errors import ConfigError, DataError

__all__ = [
    "DATASET_PREFIX",
    "ModelSpec",
    "parse_model_spec",
    "read_data",
    "data_source_files",
    "sha256_file",
    "versions",
    "write_json",
    "find_model_dir",
]

DATASET_PREFIX = "dataset:"
CSV_SUFFIXES = (".csv", ".txt", ".tsv", ".dat")
MODEL_KINDS = ("neural", "physics", "hybrid", "equations")
CATALOGUE_KINDS = ("physics", "hybrid")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A parsed ``--model`` value: ``neural``, ``physics:SYSTEM``, ``hybrid:SYSTEM``,
    ``equations:FILE.toml`` (``file``), or ``equations`` (the ``[model]`` table of the config)."""

    kind: str
    system: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        tail = self.system or self.file
        return self.kind if tail is None else f"{self.kind}:{tail}"


def is_catalogue(kind: str) -> bool:
    """Whether a ``--model`` value names a catalogue system (physics:SYSTEM or hybrid:SYSTEM)."""
    return str(kind).partition(":")[0].strip().lower() in CATALOGUE_KINDS


def parse_model_spec(text: str) -> ModelSpec:
    """Parse ``--model``; the system name is checked against the catalogue.

    Raises
    ------
    ConfigError
        On an unknown kind, or physics/hybrid without a system name.
    KeyError (a SysidError)
        From :func:`sysid.systems.get` on an unknown system, with a "did you mean".
    """
    s = str(text).strip()
    kind, sep, system = s.partition(":")
    kind, system = kind.strip().lower(), system.strip()
    if kind not in MODEL_KINDS:
        raise ConfigError(f"--model: expected 'neural', 'physics:SYSTEM', 'hybrid:SYSTEM' or "
                          f"'equations:FILE.toml', got '{text}'. List the systems with 'sysid "
                          f"systems list'.")
    if kind == "equations":
        if sep and not system:
            raise ConfigError("--model: 'equations:' needs the equations file, as in "
                              "'equations:pendulum.toml'.")
        if system and not Path(system).is_file():
            raise ConfigError(f"--model {text}: the equations file '{system}' does not exist.")
        return ModelSpec(kind="equations", file=system or None)
    if kind == "neural":
        if sep:
            raise ConfigError(f"--model: 'neural' takes no system name; got '{text}'. Use "
                              f"'hybrid:{system}' for physics plus a neural correction.")
        return ModelSpec(kind="neural")
    if not system:
        raise ConfigError(f"--model: '{kind}' needs a reference system, as in "
                          f"'{kind}:lotka_volterra'; see 'sysid systems list'.")
    import sysid.systems  # imported only now: it loads torch

    sysid.systems.get(system)  # raises with the list of known systems
    return ModelSpec(kind=kind, system=system)


def _csv_columns(path: Path, sep: str | None) -> list[str]:
    """The header of a CSV file, to name the available columns in an error message."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            header = fh.readline().strip()
    except OSError:
        return []
    if not header:
        return []
    for delim in ([sep] if sep else [",", ";", "\t"]):
        if delim in header:
            return [c.strip() for c in header.split(delim)]
    return [header]


def read_data(source: str, opts: CliFitOptions, *, what: str = "DATA") -> Any:
    """Load and validate the measurements a command works on.

    ``source`` is a CSV file or a glob of CSV files, one per run (``time`` and ``states``
    needed), a netCDF (``.nc``) or zarr
    (``.zarr``) file written by sysid, or ``dataset:NAME`` for a shipped dataset.

    Returns
    -------
    xarray.Dataset
        The trajectory dataset, validated.
    """
    import sysid.data

    if source.startswith(DATASET_PREFIX):
        import sysid.datasets

        ds = sysid.datasets.load(source[len(DATASET_PREFIX):])
        return _select(ds, opts, source)
    path = Path(source)
    is_glob = any(c in source for c in "*?[")
    if not path.exists() and not is_glob:
        raise DataError(f"{what} file '{path}' does not exist (for a shipped dataset write "
                        f"'dataset:NAME'; see 'sysid datasets list').")
    suffix = path.suffix.lower()
    if suffix == ".nc":
        return _select(sysid.data.load_netcdf(path), opts, str(path))
    if suffix == ".zarr":
        return _select(sysid.data.load_zarr(path), opts, str(path))
    if path.is_dir() and not is_glob:
        raise DataError(f"{what} '{path}' is a directory; give a CSV, .nc or .zarr file.")
    if not opts.time or not opts.states:
        missing = " and ".join(f for f, v in (("--time", opts.time), ("--states", opts.states))
                               if not v)
        cols = _csv_columns(path, opts.sep)
        raise ConfigError(f"{what} '{path}' is a CSV file: {missing} must name its columns "
                          f"(its columns are {cols}).")
    kwargs: dict[str, Any] = {"time": opts.time, "states": list(opts.states),
                              "inputs": list(opts.inputs), "trajectory": opts.run,
                              "decimal": opts.decimal, "encoding": opts.encoding,
                              "missing_values": list(opts.missing_values), "sort": opts.sort,
                              "drop_duplicates": opts.drop_duplicates, "where": opts.where}
    if opts.sep is not None:
        kwargs["sep"] = opts.sep
    try:
        ds = sysid.data.load_csv(source if is_glob else path, **kwargs)
    except DataError as exc:
        raise DataError(cli_hints(str(exc))) from None
    return _constant_inputs(_rename(sysid.data.validate(ds), opts, source), opts, source)


_HINTS = (
    (re.compile(r"\(in trajectory=\)"), "(in --run)"),
    (re.compile(r"\(in (time|states|inputs|where)=\)"), r"(in --\1)"),
    (re.compile(r"\bdrop_duplicates=True"), "--drop-duplicates"),
    (re.compile(r"\bsort=True"), "--sort"),
    (re.compile(r"\bdecimal='([^']*)'"), r"--decimal '\1'"),
    (re.compile(r"\(or sep=None to detect it\)"), "(or leave --sep out to detect it)"),
    (re.compile(r"\bsep='([^']*)'"), r"--sep '\1'"),
    (re.compile(r"\bmissing_values=\[([^\]]*)\]"),
     lambda m: "--missing-values " + ",".join(x.strip().strip("'\"") for x in m.group(1).split(","))),
    (re.compile(r"\bencoding='([^']*)'"), r"--encoding \1"),
    (re.compile(r"\bencoding="), "--encoding "),
)


def cli_hints(message: str) -> str:
    """Rewrite the Python option names in a loader's hint as the command line's flags."""
    for pattern, repl in _HINTS:
        message = pattern.sub(repl, message)
    return message


def _select(ds: Any, opts: CliFitOptions, source: str) -> Any:
    """Keep the ``--states``/``--inputs`` of a self-describing file (netCDF, zarr, dataset)."""
    import sysid.data

    have_s, have_i = sysid.data.state_names(ds), sysid.data.input_names(ds)
    for option, given, have in (("--states", opts.states, have_s), ("--inputs", opts.inputs, have_i)):
        unknown = [n for n in given if n not in have]
        if unknown:
            raise ConfigError(f"{option}: {unknown} not found in '{source}', whose "
                              f"{option[2:]} are {have}; leave {option} out to use them all.")
    if opts.where is not None:
        ds = filter_samples(ds, opts.where, source, aliases={opts.run or "": "trajectory",
                                                             opts.time or "": "time"})
    keep_s = list(opts.states) or have_s
    keep_i = list(opts.inputs) if opts.inputs else have_i
    if keep_s != have_s or keep_i != have_i:
        ds = ds[[*keep_s, *keep_i]]
    return _constant_inputs(_rename(sysid.data.validate(ds), opts, source), opts, source)


def _rename(ds: Any, opts: CliFitOptions, source: str) -> Any:
    """Apply ``--rename old=new`` to a loaded dataset.

    For a catalogue model (physics:SYSTEM, hybrid:SYSTEM) the pairs say which system state a
    column is (DATA=SYSTEM); the data keeps its names and units and the model takes them over,
    so nothing is renamed here (only checked).
    """
    if not opts.rename:
        return ds
    names = [str(n) for n in ds.data_vars]
    unknown = [n for n in opts.rename if n not in names]
    if unknown:
        raise ConfigError(f"--rename: {unknown} not found in '{source}'; its variables are {names}.")
    if is_catalogue(opts.kind):
        return ds
    clash = [new for old, new in opts.rename.items() if new in names and new not in opts.rename]
    if clash:
        raise ConfigError(f"--rename: '{source}' already has variables {clash}; rename those too.")
    return ds.rename(opts.rename)


def _constant_inputs(ds: Any, opts: CliFitOptions, source: str) -> Any:
    """Add the ``--u name=value`` inputs: held constant over every run (the data lacks them)."""
    if not opts.constant_inputs:
        return ds
    import numpy as np

    import sysid.data

    present = [n for n in opts.constant_inputs if n in ds.data_vars]
    if present:
        raise ConfigError(f"--u: {present} {'is' if len(present) == 1 else 'are'} already in "
                          f"'{source}'; --u adds an input the data lacks, held constant. Leave "
                          f"{present[0]} out of --u (or out of --inputs).")
    ds = ds.copy()
    valid = np.isfinite(np.asarray(ds["time"].values, dtype=float))
    for name, value in opts.constant_inputs.items():
        values = np.where(valid, float(value), np.nan)
        ds[name] = (("trajectory", "obs"), values,
                    {"role": "input", "units": "", "long_name": name,
                     "comment": f"held constant at {value:g} (--u)"})
    return sysid.data.validate(ds)


def filter_samples(ds: Any, where: str, source: str, *,
                   aliases: dict[str, str] | None = None) -> Any:
    """The samples of a trajectory dataset where ``where`` holds (packed to the front of each
    run; runs with none left are dropped). Variables and per-run coordinates may be named, and
    the file's time and run columns by their own names (``aliases``: name -> "time"/"trajectory")."""
    import numpy as np

    from sysid.backend import NUMPY
    from sysid.expressions import parse

    expr = parse(where, where="--where", strings=True)
    shape = ds["time"].shape
    env: dict[str, Any] = {}
    aliases = {k: v for k, v in (aliases or {}).items() if k and k not in ds.variables}
    for name in expr.names:
        key = aliases.get(name, name)
        if key in ds.data_vars or key in ds.coords:
            env[name] = np.broadcast_to(np.asarray(ds[key].values)[..., None]
                                        if ds[key].dims == ("trajectory",) else ds[key].values, shape)
        else:
            have = sorted({*map(str, ds.data_vars), *map(str, ds.coords)})
            raise ConfigError(f"--where: '{name}' is not a variable or coordinate of '{source}'; it "
                              f"has {have}.")
    keep = np.asarray(expr.evaluate(env, NUMPY))
    if keep.dtype != bool:
        raise ConfigError(f"--where '{where}' must be a condition (a comparison); it gives "
                          f"{keep.dtype} values.")
    keep = np.broadcast_to(keep, shape) & np.isfinite(np.asarray(ds["time"].values, dtype=float))
    runs = np.nonzero(keep.any(axis=1))[0]
    if runs.size == 0:
        raise DataError(f"--where '{where}': no sample of '{source}' satisfies it.")
    n = int(keep[runs].sum(axis=1).max())
    out = ds.isel(trajectory=runs, obs=slice(0, n)).copy(deep=True)
    for name in [*out.data_vars, "time"]:
        var = ds[name]
        if var.dims != ("trajectory", "obs"):
            continue
        values = np.asarray(var.values, dtype=float)
        packed = np.full((runs.size, n), np.nan)
        for i, r in enumerate(runs):
            picked = values[r][keep[r]]
            packed[i, : picked.size] = picked
        out[name].values = packed
    done = out.attrs.get("processing", "")
    out.attrs["processing"] = (f"{done}; " if done else "") + f"samples where {where}"
    return out


def data_source_files(source: str) -> list[Path]:
    """The files a DATA argument reads (for their sha256 in the manifest)."""
    import glob

    if source.startswith(DATASET_PREFIX):
        import sysid.datasets

        return [Path(sysid.datasets.path(source[len(DATASET_PREFIX):]))]
    p = Path(source)
    if p.exists():
        return [p]
    return [Path(f) for f in sorted(glob.glob(source))]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (or of every file of a directory, in sorted order)."""
    h = hashlib.sha256()
    files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries a result depends on."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("sysid", "torch", "torchdiffeq", "numpy", "scipy", "pandas", "xarray",
                 "matplotlib", "click"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _jsonable(obj: Any) -> Any:
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Write strict JSON (NaN as null), keys in insertion order, with a final newline."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def find_model_dir(path: Path) -> tuple[Path, Path]:
    """Resolve MODEL_DIR: a ``sysid fit`` output directory or a saved model folder.

    Returns
    -------
    (run_dir, model_path)
        ``run_dir`` is the fit output directory (or the model folder itself).

    Raises
    ------
    ModelFileError
        When neither ``path/model`` nor ``path`` is a saved model.
    """
    from sysid.errors import ModelFileError

    if not path.exists():
        raise ModelFileError(f"MODEL_DIR '{path}' does not exist; give the --out directory of "
                             f"'sysid fit'.")
    if (path / "model").is_dir():
        return path, path / "model"
    if path.is_dir() and any(path.glob("model.json")):
        return path, path
    raise ModelFileError(f"MODEL_DIR '{path}' holds no saved model (expected '{path / 'model'}' "
                         f"written by 'sysid fit').")


def command_line() -> list[str]:
    """The command as typed, for the manifest (program name shortened to 'sysid')."""
    argv = list(sys.argv)
    if argv and (argv[0].endswith("__main__.py") or os.path.basename(argv[0]) == "sysid"):
        argv[0] = "sysid"
    return argv
