"""An encoder of hidden states: the initial state of a window from the samples before it.

A black-box model with states the sensors never see (a hidden tank level, a velocity) needs their
value wherever a simulation starts. Multiple shooting estimates one free value per window start;
the subspace-encoder approach (Beintema, Schoukens & Toth, "Continuous-time identification of
dynamic state-space models by deep subspace encoding", ICLR 2023) instead learns a map from the
last ``past`` measured outputs and inputs up to the window's start to its hidden states, trained
jointly with the vector field over short windows. Once trained it also gives the hidden states of
a record the fit never saw: :func:`sysid.simulate` reads the record's first ``past`` samples and
starts from the last of them.

:class:`Encoder` holds the settings (given to the model factories, ``neural(...,
encoder=Encoder(past=10))``); :class:`StateEncoder` is the network the :class:`~sysid.models.Model`
builds from them over its measured variables, inputs and hidden states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import torch
from torch import nn

from sysid.errors import ConfigError, DataError
from sysid.models.base import ScalingLike, scaling_arrays
from sysid.models.neural import ACTIVATIONS, seeded_layers

__all__ = ["Encoder", "StateEncoder", "SAMPLING_RTOL", "difference_scales"]

# the encoder reads samples, not times: a record whose sample gaps differ from the training
# data's by more than this (relative) would be read at another rate and is refused
SAMPLING_RTOL = 1e-3
# the last layer starts this much smaller than a Glorot layer: an untrained encoder puts the
# hidden states near their scaled centre instead of at random values
_LAST_LAYER_GAIN = 0.1
_MAX_PAST = 100_000


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(f"Encoder: {name} must be an integer from {low} to {high}; got {value!r}.")
    return int(value)


@final
@dataclass(frozen=True, kw_only=True)
class Encoder:
    """Settings of a hidden-state encoder (see the module docstring).

    Parameters
    ----------
    past : int
        Samples the encoder reads, ending at the window's first sample (>= 1): the measured
        variables and inputs at samples ``k - past + 1 .. k`` give the hidden states at sample
        ``k``. It should span the time the hidden states take to show in the measurements (a few
        time constants of the slowest hidden mode, in samples). Windows that start earlier in a
        run keep free initial states, as without an encoder.
    width, depth : int
        Hidden units per layer (>= 1) and hidden layers (>= 0; 0 is a linear map) of the MLP.
    activation : str
        One of :data:`sysid.models.ACTIVATIONS` (default "tanh").
    seed : int
        Seed of the weight initialisation (a private generator).

    Examples
    --------
    >>> from sysid.models import neural
    >>> m = neural(["h1", "h2"], ["u"], observed=["h2"], encoder=Encoder(past=8, width=16))
    >>> m.encoder.past, m.encoder.latent
    (8, ('h1',))
    """

    past: int
    width: int = 64
    depth: int = 2
    activation: str = "tanh"
    seed: int = 0

    def __post_init__(self) -> None:
        _int(self.past, "past", 1, _MAX_PAST)
        _int(self.width, "width", 1, 2**20)
        _int(self.depth, "depth", 0, 1000)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"Encoder: unknown activation {self.activation!r}; choose one of "
                              f"{sorted(ACTIVATIONS)}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ConfigError(f"Encoder: seed must be an integer; got {self.seed!r}.")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (what model files hold)."""
        return {"past": int(self.past), "width": int(self.width), "depth": int(self.depth),
                "activation": self.activation, "seed": int(self.seed)}

    def number_of_weights(self, n_measured: int, n_inputs: int, n_latent: int) -> int:
        """Weights and biases of the network over these sizes (counted without allocating)."""
        sizes = [self.past * (n_measured + n_inputs)] + [self.width] * self.depth + [n_latent]
        return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def difference_scales(values: np.ndarray, lengths: np.ndarray, past: int) -> np.ndarray:
    """Root mean square of ``v[k - j] - v[k]`` over all runs and samples, for ``j = 1 ..
    past - 1``: ``(past - 1, V)`` from padded ``values (R, N, V)`` (NaN = missing) and run
    ``lengths``. A spread that is zero or unknown (a constant, too few samples) falls back to
    the variable's standard deviation, else 1."""
    R, N, V = values.shape
    inside = np.arange(N)[None, :] < np.asarray(lengths)[:, None]
    v = np.where(inside[..., None], values, np.nan)
    out = np.ones((max(past - 1, 0), V))
    sd = np.nanstd(v.reshape(-1, V), axis=0) if np.isfinite(v).any() else np.ones(V)
    fallback = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    for j in range(1, past):
        d = v[:, :-j] - v[:, j:] if j < N else np.full((R, 0, V), np.nan)
        with np.errstate(invalid="ignore"):
            count = np.isfinite(d).sum(axis=(0, 1))
            rms = np.sqrt(np.nansum(d * d, axis=(0, 1)) / np.maximum(count, 1))
        out[j - 1] = np.where((count > 0) & (rms > 0), rms, fallback)
    return out


def _names(value: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(f"StateEncoder: {what} must be a list of names, not {value!r}.")
    return tuple(str(v) for v in value)


@final
class StateEncoder(nn.Module):
    """The encoder network of a model: hidden states at sample ``k`` from the last ``past``
    samples of the measured variables and inputs (user units in and out).

    ``x_hidden = x_mean + x_scale * mlp(z)``. The network reads each variable (measured, then
    inputs) at sample ``k``, normalised ``(y_k - mean) / scale``, and its differences to the
    ``past - 1`` earlier samples, each normalised by its spread in the training data
    ``(y_{k-j} - y_k) / d_scale_j``: the same information as the raw samples (a linear change of
    variables), but a state that is a finite difference (a velocity from positions sampled
    densely) is then a weight of order one, not of order ``scale / (d_scale dt)``, which plain
    normalisation needs and a first-order optimiser takes thousands of steps to reach. A
    missing measurement (NaN) reads as 0 (its mean, or no difference). The normalisation and
    the training data's sample gap ``dt`` are buffers, set by :func:`sysid.fit` the first time
    the model is fitted (:meth:`set_scaling`) and saved with the weights.

    Parameters
    ----------
    settings : Encoder
    measured : sequence of str
        What the sensors report (the model's observed states, then its outputs).
    inputs : sequence of str
        The model's inputs.
    latent : sequence of str
        The hidden states it estimates (the model's states that are not measured).
    """

    def __init__(self, settings: Encoder, *, measured: Sequence[str], inputs: Sequence[str],
                 latent: Sequence[str]) -> None:
        super().__init__()
        if not isinstance(settings, Encoder):
            raise ConfigError(f"StateEncoder: settings must be a sysid.models.Encoder; got "
                              f"{type(settings).__name__}.")
        self.settings = settings
        self.measured = _names(measured, "measured")
        self.inputs = _names(inputs, "inputs")
        self.latent = _names(latent, "latent")
        if not self.latent:
            raise ConfigError("StateEncoder: the model has no hidden (unmeasured) state to encode.")
        if not self.measured:
            raise ConfigError("StateEncoder: the model measures nothing for the encoder to read.")
        n_m, n_i, n_l = len(self.measured), len(self.inputs), len(self.latent)
        s = settings
        sizes = [s.past * (n_m + n_i)] + [s.width] * s.depth + [n_l]
        self.layers = seeded_layers(sizes, torch.Generator().manual_seed(int(s.seed)), _LAST_LAYER_GAIN)
        self._act = ACTIVATIONS[s.activation][0]
        self.register_buffer("y_mean", torch.zeros(n_m))
        self.register_buffer("y_scale", torch.ones(n_m))
        self.register_buffer("u_mean", torch.zeros(n_i))
        self.register_buffer("u_scale", torch.ones(n_i))
        # spread of the differences to the sample j = 1 .. past-1 steps earlier (row j - 1)
        self.register_buffer("dy_scale", torch.ones(s.past - 1, n_m))
        self.register_buffer("du_scale", torch.ones(s.past - 1, n_i))
        self.register_buffer("x_mean", torch.zeros(n_l))
        self.register_buffer("x_scale", torch.ones(n_l))
        self.register_buffer("dt", torch.zeros(()))  # the training data's sample gap (0: not fitted)
        self.register_buffer("scaled", torch.zeros(()))  # 1 once set_scaling was called

    @property
    def past(self) -> int:
        """Samples read per estimate."""
        return int(self.settings.past)

    @property
    def is_scaled(self) -> bool:
        """Whether the normalisation was set (by a fit, or :meth:`set_scaling`)."""
        return bool(self.scaled.item() != 0)

    def set_scaling(self, scaling: ScalingLike | Mapping[str, Any], dt: float = 0.0, *,
                    differences: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Normalise with ``scaling`` (covering the measured variables, inputs and hidden states)
        and remember the sample gap ``dt`` of the data it is trained on (0: unknown).

        ``differences``: the spreads ``(past - 1, M)`` and ``(past - 1, I)`` of the lagged
        differences of the measured variables and inputs (:func:`difference_scales`); default
        the variables' scales."""
        where = "StateEncoder.set_scaling"
        with torch.no_grad():
            if differences is None:
                self.dy_scale.copy_(torch.as_tensor(scaling_arrays(scaling, self.measured, where)[1])
                                    .expand_as(self.dy_scale))
                if self.inputs:
                    self.du_scale.copy_(torch.as_tensor(scaling_arrays(scaling, self.inputs, where)[1])
                                        .expand_as(self.du_scale))
            else:
                self.dy_scale.copy_(torch.as_tensor(differences[0]).reshape(self.dy_scale.shape))
                self.du_scale.copy_(torch.as_tensor(differences[1]).reshape(self.du_scale.shape))
            for names, mean, scale in ((self.measured, self.y_mean, self.y_scale),
                                       (self.inputs, self.u_mean, self.u_scale),
                                       (self.latent, self.x_mean, self.x_scale)):
                if names:
                    m, s, _ = scaling_arrays(scaling, names, where)
                    mean.copy_(torch.as_tensor(m))
                    scale.copy_(torch.as_tensor(s))
            self.dt.fill_(float(dt))
            self.scaled.fill_(1.0)

    def forward(self, y: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``(..., L)`` (user units) from measurements ``y (..., past, M)`` (NaN =
        missing) and inputs ``u (..., past, I)`` (user units, oldest sample first)."""
        if y.shape[-2:] != (self.past, len(self.measured)):
            raise DataError(f"StateEncoder: y must end in ({self.past}, {len(self.measured)}) "
                            f"(samples, {list(self.measured)}); got {tuple(y.shape)}.")
        parts = self._features(y, self.y_mean, self.y_scale, self.dy_scale)
        if self.inputs:
            if u is None or u.shape[-2:] != (self.past, len(self.inputs)):
                raise DataError(f"StateEncoder: u must end in ({self.past}, {len(self.inputs)}) "
                                f"(samples, {list(self.inputs)}); got "
                                f"{None if u is None else tuple(u.shape)}.")
            parts += self._features(u, self.u_mean, self.u_scale, self.du_scale)
        h = torch.cat(parts, dim=-1)
        for layer in self.layers[:-1]:
            h = self._act(layer(h))
        return self.x_mean + self.x_scale * self.layers[-1](h)

    @staticmethod
    def _features(v: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor,
                  d_scale: torch.Tensor) -> list[torch.Tensor]:
        """The last sample normalised and the normalised differences of the earlier ones to it
        (NaN read as 0)."""
        now = v[..., -1, :]
        z = (now - mean) / scale
        d = (v[..., :-1, :] - now[..., None, :]).flip(-2) / d_scale  # row j-1: j samples back
        z, d = (torch.where(torch.isfinite(a), a, torch.zeros_like(a)) for a in (z, d))
        return [z, d.flatten(-2)]

    def check_sampling(self, t: np.ndarray, where: str) -> None:
        """Refuse samples ``t`` (the ``past`` times read) whose gaps differ from the training
        data's (the encoder reads samples, not times)."""
        dt = float(self.dt)
        if dt <= 0 or len(t) < 2:
            return
        gaps = np.diff(np.asarray(t, dtype=float))
        bad = np.abs(gaps / dt - 1.0) > SAMPLING_RTOL
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(
                f"{where}: the encoder reads samples {dt:.6g} time units apart (the training "
                f"data's gap), but samples {k + 1} and {k + 2} of the record are {gaps[k]:.6g} apart. "
                f"Resample the record to the training rate, or give the hidden states "
                f"(latent=...) and simulate with encoder=False.")

    def spec(self) -> dict[str, Any]:
        """Structure for model files (settings and names)."""
        return {"type": "StateEncoder", **self.settings.to_dict(), "measured": list(self.measured),
                "inputs": list(self.inputs), "latent": list(self.latent)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> StateEncoder:
        """The encoder a :meth:`spec` describes (untrained weights: load the tensors after)."""
        if spec.get("type") != "StateEncoder":
            raise ConfigError(f"StateEncoder.from_spec: not an encoder spec (type {spec.get('type')!r}).")
        settings = Encoder(**{k: spec[k] for k in ("past", "width", "depth", "activation", "seed")})
        return cls(settings, measured=spec["measured"], inputs=spec["inputs"], latent=spec["latent"])

    def extra_repr(self) -> str:
        s = self.settings
        return (f"past={s.past}, width={s.width}, depth={s.depth}, measured={list(self.measured)}, "
                f"inputs={list(self.inputs)}, latent={list(self.latent)}")
