"""Atomic checkpoints of a fit: tensors and plain values only, loaded with ``weights_only=True``.

A checkpoint is one ``torch.save`` file of a dict holding tensors, numbers, strings, lists and
dicts (model and optimiser state, the free initial states, the random generator, the epoch, the
history and the best model so far). It is written to a temporary file in the same folder, flushed
with ``fsync`` and moved over the target (:mod:`sysid.atomic`), so a crash never leaves a torn file.
Loading uses ``torch.load(..., weights_only=True)``, which refuses anything that could run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sysid import atomic
from sysid.errors import ConfigError

__all__ = ["save_checkpoint", "load_checkpoint", "check_compatible", "data_fingerprint", "FORMAT"]

FORMAT = "sysid-fit-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, replace).

    A Ctrl-C or SIGTERM that arrives meanwhile is held back until the file is complete, then raised:
    ``torch.save`` writes through a C++ writer calling back into Python, and an interrupt raised
    inside one of those callbacks aborted the whole process ("terminate called ... write to
    closed file") instead of stopping the fit cleanly.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic.signals_deferred(), atomic.writing(target) as tmp:
        with open(tmp, "xb") as fh:
            torch.save(payload, fh)
    return target


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain values only).

    Raises
    ------
    ConfigError
        When the file is missing, unreadable, or not a sysid fit checkpoint.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(
            f"fit: resume_from={str(path)!r} does not exist; give the file written by "
            f"FitConfig(checkpoint=...)."
        )
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or damaged files
        raise ConfigError(
            f"fit: cannot read checkpoint {str(path)!r} ({type(exc).__name__}: {exc}); it must be a "
            f"file written by FitConfig(checkpoint=...)."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"fit: {str(path)!r} is not a sysid fit checkpoint.")
    if state.get("version") != VERSION:
        raise ConfigError(
            f"fit: checkpoint {str(path)!r} has version {state.get('version')!r}; this sysid reads "
            f"version {VERSION}."
        )
    return state


def data_fingerprint(run_ids: Any, *tensors: torch.Tensor) -> str:
    """sha256 of the training data as the fit sees it (run ids, times, values, masks), so that a
    checkpoint is never resumed on other data."""
    import hashlib

    h = hashlib.sha256("\x1f".join(map(str, run_ids)).encode("utf-8"))
    for t in tensors:
        if t is None:
            continue
        a = t.detach().cpu().contiguous()
        h.update(str((tuple(a.shape), str(a.dtype))).encode())
        h.update(a.numpy().tobytes() if a.dtype != torch.bool else a.to(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_compatible(state: dict[str, Any], *, model_state: dict[str, torch.Tensor],
                     nodes: torch.Tensor, fingerprint: str, path: str | os.PathLike) -> None:
    """Refuse a checkpoint written by another model or on other data, before loading any of it.

    Raises
    ------
    ConfigError
        Naming what differs: the model's tensors (names or shapes), the runs and samples, or
        the data's values.
    """
    where = f"fit: checkpoint {str(path)!r}"
    saved = state.get("model")
    if not isinstance(saved, dict):
        raise ConfigError(f"{where} holds no model state; it is not a complete sysid checkpoint.")
    names_now, names_then = set(model_state), set(saved)
    if names_now != names_then:
        raise ConfigError(
            f"{where} was written for another model: its tensors {sorted(names_then - names_now)[:4]} "
            f"are not in this model, which has {sorted(names_now - names_then)[:4]} instead. Resume "
            "with the model the checkpoint was written for.")
    shapes = [k for k in model_state if tuple(model_state[k].shape) != tuple(saved[k].shape)]
    if shapes:
        raise ConfigError(
            f"{where} was written for another model: tensor {shapes[0]!r} has shape "
            f"{tuple(saved[shapes[0]].shape)} there and {tuple(model_state[shapes[0]].shape)} here.")
    got = state.get("nodes")
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(nodes.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else None
        raise ConfigError(
            f"{where} was written on other data: (runs, samples, states) {shape} there, "
            f"{tuple(nodes.shape)} here. Resume with the data the checkpoint was written for.")
    then = state.get("data")
    if then is not None and then != fingerprint:
        raise ConfigError(
            f"{where} was written on other data (same shape, other values or run ids). Resume with "
            "the data the checkpoint was written for, or start a new fit.")
