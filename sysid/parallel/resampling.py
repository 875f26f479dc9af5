"""How ensemble members differ: fresh network weights, random starts, bootstrap data sets.

- :func:`reseed`: a copy of a model whose neural terms are initialised with another seed (the same
  initialiser as :class:`~sysid.models.NeuralField`, so member 0 equals the model as given).
- :func:`perturb_start`: a copy whose free physical parameters start elsewhere: each raw
  (unconstrained) value plus ``spread`` x N(0, 1), so a rate with a lower bound of 0 is multiplied
  by ``exp(spread z)`` and a bounded parameter moves by ``spread z`` on the logit scale.
- :func:`resample_runs`: runs drawn with replacement (case bootstrap), renamed ``"<run>#<k>"``.
- :func:`residual_bootstrap`: one fitted trajectory plus moving blocks of its residuals (block
  bootstrap for a single, autocorrelated series), additive or multiplicative by the error model.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import xarray as xr

from sysid.errors import ConfigError, DataError

__all__ = ["reseed", "has_neural", "perturb_start", "resample_runs", "residual_bootstrap",
           "default_block", "MULTIPLICATIVE_LOSSES", "RUN_SEPARATOR"]

MULTIPLICATIVE_LOSSES = ("log", "lognormal", "relative")
RUN_SEPARATOR = "#"


def _neural_fields(model: Any) -> list[Any]:
    from sysid.models import NeuralField

    return [m for m in model.modules() if isinstance(m, NeuralField)]


def has_neural(model: Any) -> bool:
    """Whether the model has a neural term (whose initial weights a seed changes)."""
    return bool(_neural_fields(model))


def reseed(model: Any, offset: int) -> Any:
    """A copy of ``model`` whose neural terms start from seed ``seed + offset`` (offset 0: a plain
    copy). Physical parameters, scaling and everything else are copied unchanged."""
    from sysid.models import NeuralField

    out = copy.deepcopy(model)
    if offset == 0:
        return out
    for net in _neural_fields(out):
        spec = net.spec()
        fresh = NeuralField(spec["states"], spec["inputs"], outputs=spec["outputs"],
                            width=spec["width"], depth=spec["depth"],
                            activation=spec["activation"], time_dependent=spec["time_dependent"],
                            seed=int(spec["seed"]) + int(offset))
        fresh = fresh.to(next(net.parameters()).dtype)
        net.layers.load_state_dict(fresh.layers.state_dict())
        net.seed = fresh.seed
    return out


def perturb_start(model: Any, rng: np.random.Generator, spread: float) -> Any:
    """A copy of ``model`` with every free physical parameter moved in its raw coordinate."""
    import torch

    from sysid.models import PhysicsField

    out = copy.deepcopy(model)
    moved = False
    for field in out.modules():
        if isinstance(field, PhysicsField) and field.raw.numel():
            with torch.no_grad():
                z = torch.as_tensor(rng.standard_normal(field.raw.numel()), dtype=field.raw.dtype)
                field.raw.add_(spread * z.reshape(field.raw.shape))
            moved = True
    if not moved and not has_neural(out):
        raise ConfigError("ensemble(kind='starts'): the model has no free physical parameter and no "
                          "neural term, so every start would be the same.")
    return out


def resample_runs(data: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    """As many runs as ``data`` has, drawn with replacement; the k-th copy of run ``A`` is named
    ``"A#k"`` (k from 1), so every run id stays unique."""
    from sysid.data import run_ids, select_runs

    runs = run_ids(data)
    picks = [runs[i] for i in rng.integers(0, len(runs), size=len(runs))]
    seen: dict[str, int] = {}
    names = []
    for r in picks:
        seen[r] = seen.get(r, 0) + 1
        names.append(f"{r}{RUN_SEPARATOR}{seen[r]}")
    out = select_runs(data, picks)
    return out.assign_coords(trajectory=np.asarray(names, dtype=object))


def original_run(name: str) -> str:
    """``"A#2"`` -> ``"A"`` (the inverse of :func:`resample_runs`' naming)."""
    head, sep, tail = str(name).rpartition(RUN_SEPARATOR)
    return head if sep and tail.isdigit() else str(name)


def default_block(n: int) -> int:
    """Block length of the moving-block bootstrap: ``ceil(n ** (1/3))`` samples (the usual
    rate for the mean of a weakly dependent series; 3 for 16 annual samples)."""
    return max(1, math.ceil(n ** (1.0 / 3.0) - 1e-9))


def _blocks(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Indices 0..n-1 of a moving-block resample: blocks of ``block`` consecutive samples with
    random starts, concatenated and cut to ``n``."""
    block = min(block, n)
    starts = rng.integers(0, n - block + 1, size=math.ceil(n / block))
    return np.concatenate([np.arange(s, s + block) for s in starts])[:n]


def residual_bootstrap(data: xr.Dataset, fitted: xr.Dataset, rng: np.random.Generator, *,
                       states: list[str], loss: str, block: int | None) -> xr.Dataset:
    """A synthetic copy of ``data``: the fitted trajectory plus resampled residuals.

    Residuals ``r = y - y_fit`` (``log y - log y_fit`` for the multiplicative error models "log"
    and "relative"; ``y`` must then be positive) are centred per state over all runs, and for each
    run moving blocks of ``block`` consecutive samples (all states of a sample together, which keeps
    their cross-correlation) are drawn with replacement from that run's residual series.
    Samples missing in the data stay missing; a drawn residual that is missing counts as 0.
    """
    from sysid.data import run_ids

    out = data.copy(deep=True)
    mult = loss in MULTIPLICATIVE_LOSSES
    runs = run_ids(data)
    resid = {}
    for s in states:
        y = data[s].values
        f = fitted[s].sel(trajectory=data["trajectory"].values).values[:, :y.shape[1]]
        if mult:
            if np.any(y[np.isfinite(y)] <= 0):
                raise DataError(f"ensemble(kind='bootstrap'): loss {loss!r} resamples relative "
                                f"(log) residuals and needs positive data; '{s}' has values <= 0.")
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.log(y) - np.log(np.clip(f, 1e-300, None))
        else:
            r = y - f
        resid[s] = (r - np.nanmean(r), f)
    for i, run in enumerate(runs):
        n = int(np.isfinite(data["time"].values[i]).sum())
        idx = _blocks(n, block or default_block(n), rng)
        for s in states:
            r, f = resid[s]
            drawn = np.nan_to_num(r[i, idx], nan=0.0)
            y = data[s].values[i, :n]
            new = f[i, :n] * np.exp(drawn) if mult else f[i, :n] + drawn
            out[s].values[i, :n] = np.where(np.isfinite(y), new, np.nan)
    source = data.attrs.get("source", "the data")
    out.attrs["processing"] = (f"residual block bootstrap of {source} (block {block or 'auto'}, "
                               f"{'log' if mult else 'additive'} residuals)")
    return out
