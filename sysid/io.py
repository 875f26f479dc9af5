"""Model files without pickle: a folder with ``model.safetensors`` and a ``model.json`` manifest.

Layout of a saved model folder::

    my_model/
        model.safetensors   every tensor of the model's state_dict (safetensors: data only)
        model.json          format, schema_version, sysid/torch versions, the structure of the
                            fields, parameter specs with units and bounds, scaling, names, the
                            sha256 of model.safetensors

Loading never unpickles and never evaluates text. A physics term's function is named, not stored
as code: catalogue systems by name (``{"system": "lotka_volterra"}``), user functions by import
path (``{"import": "mypackage.rhs:spring"}``). Resolving an import path means importing that module,
which runs the module's top-level code, so :func:`load_model` refuses unless you either hand the
function over yourself (``functions={"mypackage.rhs:spring": spring}``) or opt in with
``allow_import=True`` for a file you trust. Functions defined in ``__main__``, in a notebook, or
inside another function (and lambdas) cannot be imported at all; pass them with ``functions=``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sysid import atomic
from sysid.errors import ModelFileError, SysidError
from sysid.models.base import VectorField, scaling_to_dict
from sysid.models.composite import HybridField, SecondOrderField
from sysid.models.model import Model
from sysid.models.neural import NeuralField
from sysid.models.parameters import Parameter
from sysid.models.physics import PhysicsField

__all__ = ["save_model", "load_model", "FORMAT", "SCHEMA_VERSION"]

FORMAT = "sysid-model"
SCHEMA_VERSION = 1
TENSORS = "model.safetensors"
MANIFEST = "model.json"
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def save_model(model: Model, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a model folder (``model.safetensors`` + ``model.json``), atomically.

    Parameters
    ----------
    model : Model
        The model to save.
    path : path-like
        Folder to create.
    overwrite : bool
        Replace an existing folder (default False: an existing path is an error).

    Returns
    -------
    pathlib.Path
        The folder written.

    Raises
    ------
    ModelFileError
        When the path exists and ``overwrite`` is False, or the model cannot be described.
    """
    from sysid import __version__

    if not isinstance(model, Model):
        raise ModelFileError(f"save_model: expected a sysid.models.Model; got {type(model).__name__}.")
    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelFileError(f"save_model: {str(path)!r} already exists; pass overwrite=True to replace it.")
    if path.exists() and not path.is_dir():
        raise ModelFileError(f"save_model: {str(path)!r} is a file; a model is saved as a folder.")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    blob = st_save(tensors, metadata={"format": FORMAT})
    params = model.physical_parameters()
    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "sysid_version": __version__,
        "torch_version": torch.__version__,
        "model": {
            "field": model.field.spec(),
            "state_names": list(model.state_names),
            "input_names": list(model.input_names),
            "state_units": list(model.state_units),
            "input_units": list(model.input_units),
            "time_units": model.time_units,
            "observed": list(model.observed),
            "latent_initial": dict(model.latent_initial),
            "input_interpolation": model.input_interpolation,
            "scaling": None if model.scaling is None else scaling_to_dict(model.scaling),
            "metadata": model.metadata,
            "dtype": _dtype_name(model.dtype),
        },
        "parameters": {
            name: {**spec.to_dict(), "current": float(params[name].detach().double())}
            for name, spec in model.field.parameter_specs().items()
        },
        "tensors": {
            "file": TENSORS,
            "sha256": _sha256(blob),
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
            "dtypes": {k: _dtype_name(v.dtype) for k, v in tensors.items()},
        },
    }
    text = json.dumps(manifest, indent=2, allow_nan=False, default=_json_default)
    # a Ctrl-C (or SIGTERM) arriving meanwhile is held back until the folder is complete
    with atomic.signals_deferred(), atomic.FolderBuild(path, overwrite=overwrite) as build:
        for name, data in ((TENSORS, blob), (MANIFEST, text.encode("utf-8"))):
            atomic.write_bytes(build.path / name, data)
    return path


def _json_default(obj: Any) -> Any:
    raise ModelFileError(f"save_model: cannot write {type(obj).__name__} {obj!r} to model.json.")


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    where = f"load_model: {str(path)!r}"
    if not path.exists():
        raise ModelFileError(f"{where} does not exist.")
    if not path.is_dir():
        raise ModelFileError(
            f"{where} is not a sysid model folder (expected a folder with {MANIFEST} and {TENSORS})."
        )
    mpath, tpath = path / MANIFEST, path / TENSORS
    for p in (mpath, tpath):
        if not p.is_file():
            raise ModelFileError(f"{where} lacks {p.name}; a sysid model folder holds {MANIFEST} and {TENSORS}.")
    if mpath.stat().st_size > _MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{where}: {MANIFEST} is larger than {_MAX_MANIFEST_BYTES} bytes; not a sysid manifest.")
    blob = tpath.read_bytes()
    if blob[:1] == b"\x80" or blob[:2] == b"PK":
        raise ModelFileError(
            f"{where}: {TENSORS} holds a pickle / torch.save payload, which can run code when loaded; "
            "sysid never unpickles. Save models with sysid.save_model."
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{where}: {MANIFEST} is not valid JSON ({exc}); not a sysid model.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelFileError(f"{where}: {MANIFEST} has format {got!r}, not {FORMAT!r}; not a sysid model file.")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{where}: schema_version must be a positive integer; got {version!r}.")
    if version > SCHEMA_VERSION:
        raise ModelFileError(
            f"{where}: written with model schema_version {version} (sysid {manifest.get('sysid_version')}); "
            f"this sysid reads up to {SCHEMA_VERSION}. Upgrade sysid to load it."
        )
    want = (manifest.get("tensors") or {}).get("sha256")
    if _sha256(blob) != want:
        raise ModelFileError(
            f"{where}: the sha256 of {TENSORS} does not match {MANIFEST} (file changed or corrupted since it "
            "was saved); refusing to load it."
        )
    return manifest, blob


def _resolve_function(ref: Mapping[str, Any], allow_import: bool,
                      functions: Mapping[str, Callable[..., Any]]) -> tuple[Callable[..., Any], str | None]:
    if "system" in ref:
        from sysid import systems

        name = str(ref["system"])
        try:
            return systems.get(name).rhs, name
        except SysidError as exc:
            raise ModelFileError(f"load_model: the model uses catalogue system {name!r}: {exc}") from exc
    if "import" not in ref:
        raise ModelFileError(f"load_model: physics function reference {dict(ref)} names neither a system nor an import path.")
    target = str(ref["import"])
    module, _, qualname = target.partition(":")
    for key in (target, qualname):
        if key in functions:
            fn = functions[key]
            if not callable(fn):
                raise ModelFileError(f"load_model: functions[{key!r}] is not callable.")
            return fn, None
    if not allow_import:
        raise ModelFileError(
            f"load_model: the model's physics function is {target!r}. Loading it would import module "
            f"{module!r} (running its code); pass functions={{{target!r}: your_function}}, or "
            "allow_import=True if you trust this file."
        )
    if module == "__main__" or "<" in qualname or not module or not qualname:
        raise ModelFileError(
            f"load_model: {target!r} cannot be imported (defined in a script, notebook, function or lambda); "
            f"pass it with functions={{{target!r}: your_function}}."
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ModelFileError(f"load_model: cannot import the physics function {target!r}: {exc}.") from exc
    if not callable(obj):
        raise ModelFileError(f"load_model: {target!r} is not callable.")
    return obj, None


def _neural_numel(spec: Mapping[str, Any]) -> int:
    """Weights a NeuralField spec asks for, computed before anything is allocated."""
    n_in = len(spec["states"]) + len(spec["inputs"]) + int(bool(spec["time_dependent"]))
    sizes = [n_in] + [int(spec["width"])] * int(spec["depth"]) + [len(spec["outputs"])]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def _build(spec: Mapping[str, Any], dtype: torch.dtype, allow_import: bool,
           functions: Mapping[str, Callable[..., Any]], available: int) -> VectorField:
    kind = spec.get("type")
    if kind == "NeuralField":
        # a manifest edited to ask for a huge network must not allocate it before the shape check
        if _neural_numel(spec) > available:
            raise ModelFileError(
                f"load_model: the manifest's NeuralField (width {spec['width']}, depth {spec['depth']}) "
                f"needs more weights than the tensor file holds ({available}); tensor shapes do not "
                "match the structure in model.json."
            )
        return NeuralField(
            spec["states"], spec["inputs"], outputs=spec["outputs"], width=int(spec["width"]),
            depth=int(spec["depth"]), activation=str(spec["activation"]),
            time_dependent=bool(spec["time_dependent"]), seed=int(spec["seed"]),
            state_units=spec["state_units"], input_units=spec["input_units"],
            time_units=str(spec["time_units"]),
        ).to(dtype)
    if kind == "PhysicsField":
        fn, system = _resolve_function(spec["function"], allow_import, functions)
        params = {name: Parameter.from_dict(p) for name, p in spec["parameters"].items()}
        return PhysicsField(fn, params, spec["states"], spec["inputs"], outputs=spec["outputs"],
                            state_units=spec["state_units"], input_units=spec["input_units"],
                            time_units=str(spec["time_units"]), dtype=dtype, system=system)
    if kind == "HybridField":
        return HybridField(_build(spec["physics"], dtype, allow_import, functions, available),
                           _build(spec["neural"], dtype, allow_import, functions, available),
                           spec["neural_states"])
    if kind == "SecondOrderField":
        return SecondOrderField(_build(spec["acceleration"], dtype, allow_import, functions, available),
                                spec["positions"], spec["velocities"])
    raise ModelFileError(
        f"load_model: unknown field type {kind!r}; known types are NeuralField, PhysicsField, HybridField, "
        "SecondOrderField."
    )


def _scaling_object(d: Mapping[str, Any]) -> Any:
    from sysid.data import Scaling

    return Scaling(names=tuple(d["names"]), mean=d["mean"], scale=d["scale"], time_scale=d["time_scale"])


def load_model(path: str | os.PathLike[str], *, allow_import: bool = False,
               functions: Mapping[str, Callable[..., Any]] | None = None) -> Model:
    """Load a model folder written by :func:`save_model`, without pickle.

    Parameters
    ----------
    path : path-like
        The model folder.
    allow_import : bool
        Allow importing the module named by a user physics function's import path (runs that
        module's code; only for files you trust). Catalogue systems never need it.
    functions : mapping, optional
        Physics functions to use instead of importing, keyed by ``"module:qualname"`` (as the
        error message and ``model.json`` show it) or by ``qualname``.

    Returns
    -------
    Model
        Identical predictions to the saved model.

    Raises
    ------
    ModelFileError
        Missing files, a foreign or newer format, a tensor file whose sha256 does not match the
        manifest (tampered or corrupted), a pickle payload, or a structure that does not match
        the tensors.
    """
    path = Path(path)
    manifest, blob = _read(path)
    where = f"load_model: {str(path)!r}"
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{where}: {TENSORS} is not a valid safetensors file ({exc}).") from exc
    try:
        m = manifest["model"]
        dtype_name = str(m.get("dtype", "float32"))
        if dtype_name not in _DTYPES:
            raise ModelFileError(f"{where}: unsupported dtype {dtype_name!r} in {MANIFEST}.")
        available = sum(int(v.numel()) for v in tensors.values())
        field = _build(m["field"], _DTYPES[dtype_name], allow_import, dict(functions or {}), available)
        scaling = None if m.get("scaling") is None else _scaling_object(m["scaling"])
        model = Model(field, observed=m["observed"], input_interpolation=m["input_interpolation"],
                      scaling=scaling, latent_initial=m.get("latent_initial"), metadata=m.get("metadata"))
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise ModelFileError(f"{where}: {MANIFEST} does not describe a valid model ({type(exc).__name__}: {exc}).") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelFileError(
            f"{where}: the tensors do not match the model structure in {MANIFEST}: missing {missing}, "
            f"unexpected {extra}."
        )
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(tensors[k].shape)]
    if wrong:
        raise ModelFileError(
            f"{where}: tensor shapes do not match the structure in {MANIFEST} for {wrong} "
            f"(file {[tuple(tensors[k].shape) for k in wrong]}, structure {[tuple(expected[k].shape) for k in wrong]})."
        )
    model.load_state_dict(tensors, strict=True, assign=True)
    return model
