"""Model files without pickle: a folder with ``model.safetensors`` and a ``model.json`` manifest.

Layout of a saved model folder::

    my_model/
        model.safetensors   every tensor of the model's state_dict (safetensors: data only)
        model.json          format, schema_version, sysid/torch versions, the structure of the
                            fields, parameter specs with units and bounds, scaling, names, the
                            sha256 of model.safetensors

Loading never unpickles and never evaluates text. A physics term's function is named, not stored
as code: catalogue systems by name (``{"system": "lotka_volterra"}``), equations models by their
text (``{"equations": {...}}``, parsed again by :mod:`sysid.expressions`, never executed), user
functions by import path (``{"import": "mypackage.rhs:spring"}``). Resolving an import path
means importing that module, which runs the module's top-level code, so :func:`load_model` refuses unless you either hand the
function over yourself (``functions={"mypackage.rhs:spring": spring}``) or opt in with
``allow_import=True`` for a file you trust. Functions defined in ``__main__``, in a notebook, or
inside another function (and lambdas) cannot be imported at all; pass them with ``functions=``.

:func:`load_dynamics` reads the same folder, with the same checks and errors, into NumPy
:class:`~sysid.models.Dynamics` without importing torch (``sysid simulate`` starts in under half
the time): networks and catalogue or text-equation physics terms, composed in any way; it
answers None for what only the torch model represents (an import-path function, an encoder,
measurement equations, half precision), where :func:`load_model` is the way.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

from safetensors import SafetensorError

from sysid import atomic
from sysid.errors import ModelFileError, SysidError
from sysid.models.dynamics import Dynamics
from sysid.models.parameters import Parameter, ReadRecorder

if TYPE_CHECKING:  # torch and the torch models are imported by the functions that need them
    import torch

    from sysid.models.base import VectorField
    from sysid.models.encoder import StateEncoder
    from sysid.models.model import Model

__all__ = ["save_model", "load_model", "load_dynamics", "FORMAT", "SCHEMA_VERSION", "file_entries", "verify_files",
           "check_file", "read_json", "read_toml", "read_table"]

FORMAT = "sysid-model"
SCHEMA_VERSION = 1
TENSORS = "model.safetensors"
MANIFEST = "model.json"
FILES = "manifest.json"
FILES_FORMAT = "sysid-files"
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_FILES_BYTES = 1024 * 1024
#: Largest JSON / TOML / CSV file read from a model or results folder (text, not data).
MAX_TEXT_BYTES = {"json": 64 * 1024 * 1024, "toml": 1024 * 1024, "csv": 256 * 1024 * 1024}
_MAX_DEPTH = 10_000  # hidden layers a NeuralField spec may ask for
_MAX_WIDTH = 2**40  # only a sanity bound: the weight count is checked against the file
_DTYPES = ("float32", "float64", "float16", "bfloat16")  # of torch; load_dynamics reads the first two


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, name)


def st_save(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """``safetensors.torch.save`` (imported on use: it imports torch)."""
    from safetensors.torch import save

    return save(dict(tensors), metadata=None if metadata is None else dict(metadata))


def st_load(blob: bytes) -> dict[str, Any]:
    """``safetensors.torch.load`` (imported on use: it imports torch)."""
    from safetensors.torch import load

    return load(blob)


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
    import torch

    from sysid import __version__
    from sysid.models.base import scaling_to_dict
    from sysid.models.model import Model

    if not isinstance(model, Model):
        raise ModelFileError(f"save_model: expected a sysid.models.Model; got {type(model).__name__}.")
    if not isinstance(path, (str, os.PathLike)):
        raise ModelFileError(f"save_model: path must be a folder path (str or pathlib.Path); got "
                             f"{type(path).__name__}.")
    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelFileError(f"save_model: {str(path)!r} already exists; pass overwrite=True to replace it.")
    if path.exists() and not path.is_dir():
        raise ModelFileError(f"save_model: {str(path)!r} is a file; a model is saved as a folder.")
    state = model.state_dict()
    meta = [k for k, v in state.items() if v.is_meta]
    if meta:
        raise ModelFileError(f"save_model: the model's tensors {meta[:3]} are on the meta device "
                             "(shapes without values); load or train real weights first "
                             "(model.to_empty(device='cpu') gives uninitialised ones).")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
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
            **({} if model.outputs is None else {"outputs": model.outputs.spec()}),
            **({} if model.encoder is None else {"encoder": model.encoder.spec()}),
            "metadata": model.metadata,
            "dtype": _dtype_name(model.dtype),
        },
        "parameters": {
            name: {**spec.to_dict(), "current": float(params[name].detach().double())}
            for name, spec in model.parameter_specs().items()
        },
        "tensors": {
            "file": TENSORS,
            "sha256": _sha256(blob),
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
            "dtypes": {k: _dtype_name(v.dtype) for k, v in tensors.items()},
        },
        "files_manifest": FILES,
    }
    text = json.dumps(manifest, indent=2, allow_nan=False, default=_json_default)
    # a Ctrl-C (or SIGTERM) arriving meanwhile is held back until the folder is complete
    payloads = {TENSORS: blob, MANIFEST: text.encode("utf-8")}
    files = {"format": FILES_FORMAT, "files": {
        name: {"size": len(data), "sha256": _sha256(data)} for name, data in payloads.items()}}
    payloads[FILES] = json.dumps(files, indent=2).encode("utf-8")
    with atomic.signals_deferred(), atomic.FolderBuild(path, overwrite=overwrite) as build:
        for name, data in payloads.items():
            atomic.write_bytes(build.path / name, data)
    return path


def _json_default(obj: Any) -> Any:
    raise ModelFileError(f"save_model: cannot write {type(obj).__name__} {obj!r} to model.json.")


# ----------------------------------------------------------------------------------------------
# files of a folder: sizes and sha256 recorded when written, checked before anything is read


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entries(root: str | os.PathLike[str], *, skip: Callable[[str], bool] = lambda rel: False
                 ) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every regular file under ``root`` (relative POSIX paths, sorted).

    ``skip(rel)`` leaves out files that are rewritten later (a report) or the manifest itself.
    """
    root = Path(root)
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        if f.is_file() and not f.is_symlink() and not skip(rel):
            out[rel] = {"size": f.stat().st_size, "sha256": _hash_file(f)}
    return out


def check_file(path: Path, *, limit: float, where: str, listed: int | None = None) -> int:
    """Refuse, before reading it, a file that is a symlink, not a regular file, larger than
    ``limit`` bytes or than the size its manifest lists; return its size.

    Raises
    ------
    ModelFileError
        Naming the file and what is wrong.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ModelFileError(f"{where}: {path.name} is missing ({path}).") from None
    if stat.S_ISLNK(st.st_mode):
        raise ModelFileError(f"{where}: {path.name} is a symbolic link ({path} -> "
                             f"{os.readlink(path)}); a sysid folder holds its own files, so it is "
                             "refused before reading.")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{where}: {path.name} is not a regular file.")
    if listed is not None and st.st_size != listed:
        raise ModelFileError(f"{where}: {path.name} has {st.st_size} bytes but the manifest lists "
                             f"{listed}; the file changed since it was written. Refusing to read it.")
    if st.st_size > limit:
        from sysid.budget import format_bytes

        raise ModelFileError(f"{where}: {path.name} is {format_bytes(st.st_size)}, above the "
                             f"{format_bytes(limit)} such a file may have; refusing to read it.")
    return int(st.st_size)


def verify_files(root: str | os.PathLike[str], entries: Any, *, where: str,
                 limit: float | None = None, required: tuple[str, ...] = ()) -> None:
    """Check every file a manifest lists: a plain file inside ``root``, its size, then its sha256.

    Sizes are checked for all files before any is hashed, so a file swapped for a huge one or a
    symlink is refused without reading it.

    Raises
    ------
    ModelFileError
        For a malformed list, a name leaving the folder, a missing, linked, resized or changed
        file, or a ``required`` file the list lacks.
    """
    from sysid.budget import current_limits

    root = Path(root)
    if not isinstance(entries, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("size"), int)
            and not isinstance(v.get("size"), bool) and v["size"] >= 0
            and isinstance(v.get("sha256"), str) for k, v in entries.items()):
        raise ModelFileError(f"{where}: the file list of its manifest is malformed; expected "
                             "{name: {size, sha256}}.")
    absent = [n for n in required if n not in entries]
    if absent:
        raise ModelFileError(f"{where}: its manifest does not list {absent}; the folder is incomplete "
                             "or was edited.")
    cap = current_limits().memory_bytes if limit is None else limit
    for rel, entry in entries.items():
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts or "\\" in rel:
            raise ModelFileError(f"{where}: its manifest names {rel!r}, which is not a file inside the "
                                 "folder; refusing it.")
        here = root
        for part in parts[:-1]:
            here = here / part
            if here.is_symlink() or not here.is_dir():
                raise ModelFileError(f"{where}: {here} is not a plain folder of the model; refusing it.")
        check_file(root / rel, limit=cap, where=where, listed=entry["size"])
    for rel, entry in entries.items():
        if _hash_file(root / rel) != entry["sha256"]:
            raise ModelFileError(f"{where}: the sha256 of {rel} does not match the manifest (changed "
                                 "or corrupted since it was saved); refusing to load it.")


def _read_text(path: Path, kind: str, where: str) -> str:
    check_file(path, limit=MAX_TEXT_BYTES[kind], where=where)
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{where}: {path.name} is not UTF-8 text ({exc.reason} at byte "
                             f"{exc.start}); the file is damaged or not written by sysid.") from None


def read_json(path: str | os.PathLike[str], *, where: str) -> Any:
    """Parse a JSON file of a model or results folder, refusing huge, linked or malformed files.

    Raises
    ------
    ModelFileError
        Naming the file: too large, a symlink, not UTF-8, not valid JSON (or nested too deep).
    """
    path = Path(path)
    text = _read_text(path, "json", where)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{where}: {path.name} is not valid JSON ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); the file is damaged.") from None


def read_toml(path: str | os.PathLike[str], *, where: str) -> dict[str, Any]:
    """Parse a TOML file of a results folder (size-limited; errors name the file)."""
    import tomllib

    path = Path(path)
    text = _read_text(path, "toml", where)
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{where}: {path.name} is not valid TOML ({str(exc)[:200]}); the file "
                             "is damaged.") from None


def read_table(path: str | os.PathLike[str], *, where: str, **kwargs: Any) -> Any:
    """Read a CSV table of a results folder into a DataFrame (size-limited; errors name the file)."""
    import pandas as pd

    path = Path(path)
    text = _read_text(path, "csv", where)
    try:
        import io as _io

        return pd.read_csv(_io.StringIO(text), **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise ModelFileError(f"{where}: {path.name} is not a valid CSV table ({type(exc).__name__}: "
                             f"{str(exc).strip()[:200]}); the file is damaged.") from None


def _check_folder(path: Path, where: str) -> None:
    if not path.exists():
        raise ModelFileError(f"{where} does not exist.")
    if not path.is_dir():
        raise ModelFileError(
            f"{where} is not a sysid model folder (expected a folder with {MANIFEST} and {TENSORS})."
        )
    for p in (path / MANIFEST, path / TENSORS):
        if not os.path.lexists(p):
            raise ModelFileError(f"{where} lacks {p.name}; a sysid model folder holds {MANIFEST} and {TENSORS}.")


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    from sysid.budget import current_limits

    where = f"load_model: {str(path)!r}"
    _check_folder(path, where)
    mpath, tpath, fpath = path / MANIFEST, path / TENSORS, path / FILES
    has_files = os.path.lexists(fpath)
    if has_files:  # every file's size and sha256, checked before any of them is read
        check_file(fpath, limit=_MAX_FILES_BYTES, where=where)
        listing = read_json(fpath, where=where)
        if not isinstance(listing, dict) or listing.get("format") != FILES_FORMAT:
            raise ModelFileError(f"{where}: {FILES} is not a sysid file manifest.")
        verify_files(path, listing.get("files"), where=where, required=(MANIFEST, TENSORS))
    check_file(mpath, limit=_MAX_MANIFEST_BYTES, where=where)
    check_file(tpath, limit=current_limits().memory_bytes, where=where)
    blob = tpath.read_bytes()
    if blob[:1] == b"\x80" or blob[:2] == b"PK":
        raise ModelFileError(
            f"{where}: {TENSORS} holds a pickle / torch.save payload, which can run code when loaded; "
            "sysid never unpickles. Save models with sysid.save_model."
        )
    try:
        manifest = json.loads(mpath.read_bytes().decode("utf-8"))
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
    if manifest.get("files_manifest") is not None and not has_files:
        raise ModelFileError(f"{where}: {FILES} (the sizes and sha256 of the folder's files) is missing; "
                             "the folder is incomplete or was edited. Refusing to load it.")
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
    if "equations" in ref:  # text equations: parsed by the whitelist parser, never imported
        from sysid.models.equations import EquationsRhs

        return EquationsRhs.from_dict(ref["equations"]), None
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
    """Weights a NeuralField spec asks for, computed before anything is allocated.

    Width and depth are checked first (a manifest asking for ``depth = 1e9`` would otherwise
    build a list of a billion layer sizes just to count them).
    """
    sizes = {}
    for key, most in (("width", _MAX_WIDTH), ("depth", _MAX_DEPTH)):
        value = spec[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ModelFileError(f"load_model: the NeuralField's {key} in {MANIFEST} must be an "
                                 f"integer from 1 to {most}; got {value!r}.")
        sizes[key] = value
    n_in = (len(spec.get("arguments", spec["states"])) + len(spec["inputs"])
            + int(bool(spec["time_dependent"])))
    w, d, n_out = sizes["width"], sizes["depth"], len(spec["outputs"])
    return (n_in + 1) * w + (d - 1) * (w + 1) * w + (w + 1) * n_out


def _build(spec: Mapping[str, Any], dtype: torch.dtype, allow_import: bool,
           functions: Mapping[str, Callable[..., Any]], available: int) -> VectorField:
    from sysid.models.composite import HybridField, SecondOrderField
    from sysid.models.neural import NeuralField
    from sysid.models.physics import PhysicsField

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
            spec["states"], spec["inputs"], outputs=spec["outputs"], arguments=spec.get("arguments"),
            width=int(spec["width"]),
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


def _encoder(spec: Mapping[str, Any], available: int, where: str) -> StateEncoder:
    """The encoder a manifest describes; its size is checked against the tensor file before
    anything is allocated (a manifest edited to ask for a huge network is refused)."""
    from sysid.models.encoder import Encoder, StateEncoder

    settings = Encoder(**{k: spec[k] for k in ("past", "width", "depth", "activation", "seed")})
    sizes = [len(spec[k]) for k in ("measured", "inputs", "latent")]
    if settings.number_of_weights(*sizes) > available:
        raise ModelFileError(f"{where}: the encoder in {MANIFEST} (past {settings.past}, width "
                             f"{settings.width}, depth {settings.depth}) needs more weights than the "
                             f"tensor file holds ({available}); the structure was edited.")
    return StateEncoder.from_spec(spec)


def _scaling_object(d: Mapping[str, Any]) -> Any:
    from sysid.data import Scaling

    return Scaling(names=tuple(d["names"]), mean=d["mean"], scale=d["scale"], time_scale=d["time_scale"])


def _model_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ModelFileError(f"load_model: path must be a folder path (str or pathlib.Path); got "
                             f"{type(path).__name__}.")
    return Path(path)


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
    from sysid.models.model import Model
    from sysid.models.outputs import Outputs

    path = _model_path(path)
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
        dtype = _torch_dtype(dtype_name)
        field = _build(m["field"], dtype, allow_import, dict(functions or {}), available)
        scaling = None if m.get("scaling") is None else _scaling_object(m["scaling"])
        outputs = None if m.get("outputs") is None else Outputs.from_spec(m["outputs"], dtype=dtype)
        encoder = None if m.get("encoder") is None else _encoder(m["encoder"], available, where)
        model = Model(field, observed=m["observed"], input_interpolation=m["input_interpolation"],
                      scaling=scaling, latent_initial=m.get("latent_initial"), metadata=m.get("metadata"),
                      outputs=outputs, encoder=encoder)
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
    _check_parameters(model, manifest.get("parameters"), where)
    return model


def _check_parameters(model: Model, saved: Any, where: str) -> None:
    """The physical parameter values must be those recorded at saving: bounds or transforms
    edited in ``model.json`` change them (omega 2.0 became 666.8 in one tampered file)."""
    import math

    if saved is None:
        return
    if not isinstance(saved, dict):
        raise ModelFileError(f"{where}: 'parameters' in {MANIFEST} must be a table of parameters.")
    values = model.physical_parameters()
    if set(saved) != set(values):
        raise ModelFileError(f"{where}: {MANIFEST} lists parameters {sorted(saved)} but the model has "
                             f"{sorted(values)}; the file was edited.")
    for name, entry in saved.items():
        current = entry.get("current") if isinstance(entry, dict) else None
        value = float(values[name].detach().double())
        if (isinstance(current, bool) or not isinstance(current, (int, float))
                or not math.isclose(value, float(current), rel_tol=1e-9, abs_tol=1e-300)):
            raise ModelFileError(
                f"{where}: parameter {name!r} comes out as {value:.6g} from the saved tensors and "
                f"the bounds in {MANIFEST}, but was {current!r} when saved; the bounds or the "
                "structure were edited. Refusing to load it.")


# ----------------------------------------------------------------------------------------------
# the NumPy view of a model file, without torch


@final
class _NotNumpy(Exception):
    """The model file describes what only the torch model represents (load_dynamics: None)."""


def load_dynamics(path: str | os.PathLike[str]) -> Dynamics | None:
    """Read a model folder written by :func:`save_model` into NumPy dynamics, without torch.

    The files are checked as :func:`load_model` checks them (sizes and sha256 of every file, no
    pickle payload, format and schema version), with the same errors. Networks
    (:class:`~sysid.models.NeuralField`), physics terms of a catalogue system or of text
    equations (parsed by :mod:`sysid.expressions`, never executed), and their hybrid and
    second-order compositions are read into the same float64 NumPy functions as the loaded
    model's ``numpy_function()``, with the parameter values the saved tensors give (checked
    against those recorded at saving). :func:`sysid.simulate` integrates the result with
    ``dopri5`` (the default) or a SciPy method, as it integrates the model's NumPy copy, and
    ``import torch`` (over a second) never happens: ``sysid simulate`` uses this.

    Parameters
    ----------
    path : path-like
        The model folder.

    Returns
    -------
    Dynamics or None
        The model's states, inputs, units, input interpolation and ``latent_initial`` with its
        vector field; None when the file holds what this view cannot represent exactly or
        without running code: a physics function named by import path, an encoder of hidden
        states, measurement equations, float16/bfloat16 tensors, or a structure that does not
        match the tensors (:func:`load_model` then loads it, or says what is wrong).

    Raises
    ------
    ModelFileError
        As :func:`load_model` (the same messages): a missing or foreign folder, a tensor file or
        manifest whose size or sha256 does not match, a pickle payload, a newer schema.
    """
    path = _model_path(path)
    manifest, blob = _read(path)
    try:
        return _numpy_dynamics(manifest, blob)
    except _NotNumpy:
        return None
    except (SysidError, SafetensorError, KeyError, TypeError, ValueError, AttributeError, IndexError,
            ArithmeticError, RecursionError):
        return None  # load_model reads it, or raises its own message for the damage


def _numpy_dynamics(manifest: Mapping[str, Any], blob: bytes) -> Dynamics:
    """The Dynamics a checked manifest and tensor file describe (raises _NotNumpy, or a
    KeyError/TypeError/... for a structure that load_model reports)."""
    import math

    import numpy as np
    from safetensors.numpy import load as np_load

    m = manifest["model"]
    dtype_name = str(m.get("dtype", "float32"))
    if dtype_name not in ("float32", "float64"):
        raise _NotNumpy(dtype_name)
    if m.get("encoder") is not None or m.get("outputs") is not None:
        raise _NotNumpy("encoder or measurement equations")
    if m.get("scaling") is not None:
        _scaling_object(m["scaling"])  # what load_model validates
    tensors = np_load(blob)
    if any(v.dtype not in (np.float32, np.float64) for v in tensors.values()):
        raise _NotNumpy("tensor dtype")
    used: set[str] = set()
    values: dict[str, float] = {}
    spec = m["field"]
    f = _numpy_field(spec, tensors, "field.", used, values)
    if used != set(tensors) or _outputs(spec) != _names(spec)[0]:
        raise _NotNumpy("structure")  # tensors left over, or a field without every state
    saved = manifest.get("parameters")
    if saved is not None:
        tol = max(1e-9, 64 * float(np.finfo(dtype_name).eps))  # float64 here, the dtype's own there
        if set(saved) != set(values) or not all(
                isinstance(saved[n], dict) and isinstance(saved[n].get("current"), (int, float))
                and not isinstance(saved[n]["current"], bool)
                and math.isclose(v, float(saved[n]["current"]), rel_tol=tol, abs_tol=1e-300)
                for n, v in values.items()):
            raise _NotNumpy("parameters")  # load_model names the parameter
    states, inputs, state_units, input_units, time_units = _names(spec)
    observed = list(m["observed"])
    if any(n not in states for n in observed) or not isinstance(m["input_interpolation"], str):
        raise _NotNumpy("names")
    latent = {str(k): float(v) for k, v in dict(m.get("latent_initial") or {}).items()}
    if set(latent) != {n for n in states if n not in observed}:
        raise _NotNumpy("latent_initial")
    return Dynamics.from_numpy_field(f, states=states, inputs=inputs, state_units=state_units,
                                     input_units=input_units, time_units=time_units, name="model",
                                     interpolation=m["input_interpolation"], latent_initial=latent)


def _names(spec: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...],
                                              tuple[str, ...], str]:
    """States, inputs, their units and the time units of a field spec."""
    kind = spec["type"]
    if kind == "HybridField":
        p, n = _names(spec["physics"]), _names(spec["neural"])
        inputs = tuple(dict.fromkeys((*p[1], *n[1])))
        units = dict(zip(n[1], n[3])) | dict(zip(p[1], p[3]))  # the physics term's first
        return p[0], inputs, p[2], tuple(units[i] for i in inputs), p[4]
    if kind == "SecondOrderField":
        return _names(spec["acceleration"])
    return (tuple(str(s) for s in spec["states"]), tuple(str(s) for s in spec["inputs"]),
            tuple(str(s) for s in spec["state_units"]), tuple(str(s) for s in spec["input_units"]),
            str(spec["time_units"]))


def _outputs(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The states a field spec gives derivatives of (a model's field: all of them)."""
    if spec["type"] == "HybridField":
        return _outputs(spec["physics"])
    if spec["type"] == "SecondOrderField":
        return tuple(str(s) for s in (*spec["positions"], *spec["velocities"]))
    return tuple(str(s) for s in spec["outputs"])


def _array(tensors: Mapping[str, Any], key: str, shape: tuple[int, ...], used: set[str]) -> Any:
    value = tensors[key]
    if tuple(value.shape) != shape:
        raise _NotNumpy(f"shape of {key}")
    used.add(key)
    return value.astype(float)


def _numpy_field(spec: Mapping[str, Any], tensors: Mapping[str, Any], prefix: str, used: set[str],
                 values: dict[str, float]) -> Any:
    """The NumPy function of one field spec (:mod:`sysid.models.numpy_fields`, as the torch
    field's ``numpy_function()`` builds it) from the tensors under ``prefix``; the physical
    parameter values go to ``values``."""
    from sysid.models import numpy_fields as nf

    kind = spec["type"]
    if kind == "NeuralField":
        return _numpy_neural(spec, tensors, prefix, used)
    if kind == "PhysicsField":
        fn = _numpy_rhs_function(spec["function"])
        own = _numpy_parameters(spec, tensors, prefix, used)
        _probe(fn, own, spec)
        values.update(own)
        return nf.physics_function(fn, own, len(spec["outputs"]), bool(spec["inputs"]))
    if kind == "HybridField":
        phys, neu = spec["physics"], spec["neural"]
        outputs = list(phys["outputs"])
        if (list(neu["states"]) != list(phys["states"])
                or list(neu["outputs"]) != list(spec["neural_states"])
                or any(n not in outputs for n in neu["outputs"])):
            raise _NotNumpy("hybrid names")
        inputs = _names(spec)[1]
        return nf.hybrid_function(_numpy_field(phys, tensors, prefix + "physics.", used, values),
                                  _numpy_field(neu, tensors, prefix + "neural.", used, values),
                                  [inputs.index(n) for n in phys["inputs"]],
                                  [inputs.index(n) for n in neu["inputs"]],
                                  [outputs.index(n) for n in neu["outputs"]])
    if kind == "SecondOrderField":
        acc = spec["acceleration"]
        q, v = list(spec["positions"]), list(spec["velocities"])
        if not q or len(q) != len(v) or list(acc["states"]) != q + v or list(acc["outputs"]) != v:
            raise _NotNumpy("second-order names")
        inner = _numpy_field(acc, tensors, prefix + "acceleration.", used, values)
        return nf.second_order_function(inner, len(q))
    raise _NotNumpy(f"field type {kind!r}")


def _numpy_neural(spec: Mapping[str, Any], tensors: Mapping[str, Any], prefix: str,
                  used: set[str]) -> Any:
    """A NeuralField's NumPy function from its weights and normalisation buffers."""
    from sysid.models import numpy_fields as nf

    states, inputs, outputs = list(spec["states"]), list(spec["inputs"]), list(spec["outputs"])
    arguments = list(spec.get("arguments", states))
    if spec["activation"] not in nf.ACTIVATIONS or any(n not in states for n in arguments + outputs):
        raise _NotNumpy("network")
    # width and depth checked, and the weights counted, before anything is allocated (as
    # load_model does: its ModelFileError makes this None, and load_model says it)
    if _neural_numel(spec) > sum(v.size for v in tensors.values()):
        raise _NotNumpy("network size")
    width, depth, activation = spec["width"], spec["depth"], spec["activation"]
    time_dependent = bool(spec["time_dependent"])
    sizes = [len(arguments) + len(inputs) + int(time_dependent)] + [width] * depth + [len(outputs)]
    weights = [(_array(tensors, f"{prefix}layers.{k}.weight", (b, a), used),
                _array(tensors, f"{prefix}layers.{k}.bias", (b,), used))
               for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    S, In = len(states), len(inputs)
    buffers = {name: _array(tensors, prefix + name, shape, used) for name, shape in
               (("x_mean", (S,)), ("x_scale", (S,)), ("u_mean", (In,)), ("u_scale", (In,)),
                ("time_scale", ()))}
    return nf.neural_function(
        weights, activation, x_mean=buffers["x_mean"], x_scale=buffers["x_scale"],
        u_mean=buffers["u_mean"], u_scale=buffers["u_scale"], time_scale=float(buffers["time_scale"]),
        outputs=[states.index(n) for n in outputs],
        arguments=None if arguments == states else [states.index(n) for n in arguments],
        has_inputs=bool(inputs), time_dependent=time_dependent)


def _numpy_rhs_function(ref: Mapping[str, Any]) -> Any:
    """A catalogue system's rhs or text equations; an import path is not read here (it would run
    a module's code: load_model asks for allow_import or functions=)."""
    if "system" in ref:
        from sysid import systems

        return systems.get(str(ref["system"])).rhs
    if "equations" in ref:
        from sysid.models.equations_rhs import EquationsRhs

        return EquationsRhs.from_dict(ref["equations"])
    raise _NotNumpy("import path")


def _numpy_parameters(spec: Mapping[str, Any], tensors: Mapping[str, Any], prefix: str,
                      used: set[str]) -> dict[str, float]:
    """A PhysicsField's parameter values from its raw (free) and fixed tensors, in float64 (as
    the model copied to float64 computes them for a simulation)."""
    from sysid.models.parameters import value_from_raw

    specs = {}
    for name, entry in dict(spec["parameters"]).items():
        p = Parameter.from_dict(entry)
        if p.kind == "free" and p.scale is None:  # as PhysicsField keeps it
            p = p.replace(scale=p.effective_scale)
        specs[str(name)] = p
    free = [n for n, p in specs.items() if p.vary]
    fixed = [n for n, p in specs.items() if not p.vary]
    raw = _array(tensors, prefix + "raw", (len(free),), used)
    held = _array(tensors, prefix + "fixed", (len(fixed),), used)
    values = {n: float(value_from_raw(float(raw[i]), specs[n])) for i, n in enumerate(free)}
    values.update({n: float(held[j]) for j, n in enumerate(fixed)})
    return {n: values[n] for n in specs}


def _probe(fn: Any, values: Mapping[str, float], spec: Mapping[str, Any]) -> None:
    """One call on ones, as PhysicsField's probe: the function reads exactly the parameters and
    returns one derivative per output (else load_model says what does not match)."""
    import numpy as np

    from sysid.backend import NUMPY

    x = np.ones((1, len(spec["states"])))
    u = np.ones((1, len(spec["inputs"]))) if spec["inputs"] else None
    reads = ReadRecorder(values, missing_value=lambda: 1.0)
    with np.errstate(all="ignore"):
        out = np.asarray(fn(0.0, x, u, reads, NUMPY))
    if reads.missing or set(reads.read) != set(values) or out.shape[-1:] != (len(spec["outputs"]),):
        raise _NotNumpy("physics function")
