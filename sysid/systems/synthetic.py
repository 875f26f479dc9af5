"""Synthetic data from reference systems: several runs, noise, irregular sampling, missing values.

All randomness comes from ``numpy.random.SeedSequence(seed)``, split into independent streams for
initial states, sample times, input signals, noise and missing cells. Changing the noise level or
the missing fraction therefore leaves the initial states, times and inputs unchanged, so
``make_dataset(..., noise=0.0)`` gives the clean counterpart of a noisy dataset with the same seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import xarray as xr

from sysid.errors import ConfigError, DataError
from sysid.systems.base import System
from sysid.systems.integrate import (
    build_dataset,
    check_initial,
    check_method,
    check_run_inputs,
    check_times,
    resolve_system,
    sample_inputs,
    solve_one,
    system_attrs,
)

#: Spread of the log-normal perturbation of the typical initial state (``y0 * exp(0.2 z)``).
Y0_SPREAD = 0.2
#: Number of sinusoids in a default excitation signal, and their frequency range in cycles per run.
N_SINES = 3
CYCLES = (1.0, 6.0)


def _rows(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in a)


@final
@dataclass(frozen=True, kw_only=True)
class SumOfSines:
    """A smooth excitation ``u_j(t) = scale_j * sum_k a_jk sin(2 pi f_jk (t - t0) / T + phi_jk)``.

    Parameters
    ----------
    t0, duration : float
        Start time and length ``T`` of the run.
    scale : tuple of float
        Amplitude of each input (the weights ``a_jk`` of one input sum to 1).
    cycles, weights, phases : tuple of tuples of float
        Per input ``j`` and component ``k``: frequency in cycles per run ``f_jk``, weight ``a_jk``
        and phase ``phi_jk`` (radians).

    Examples
    --------
    >>> u = SumOfSines(t0=0.0, duration=1.0, scale=(2.0,), cycles=((1.0,),), weights=((1.0,),),
    ...                phases=((0.0,),))
    >>> u(0.25).tolist()
    [2.0]
    """

    t0: float
    duration: float
    scale: tuple[float, ...]
    cycles: tuple[tuple[float, ...], ...]
    weights: tuple[tuple[float, ...], ...]
    phases: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ConfigError(f"SumOfSines: duration must be positive; got {self.duration!r}.")
        n = len(self.scale)
        for name in ("cycles", "weights", "phases"):
            rows = getattr(self, name)
            if len(rows) != n:
                raise ConfigError(f"SumOfSines: {name} has {len(rows)} rows for {n} inputs.")
        if any(len(c) != len(w) or len(c) != len(p)
               for c, w, p in zip(self.cycles, self.weights, self.phases)):
            raise ConfigError("SumOfSines: cycles, weights and phases need the same components per input.")

    @classmethod
    def random(cls, rng: np.random.Generator, *, t0: float, duration: float,
               scale: Sequence[float], n_sines: int = N_SINES,
               cycles: tuple[float, float] = CYCLES) -> SumOfSines:
        """Draw a signal from ``rng``: frequencies uniform in ``cycles`` per run, random phases."""
        n_in = len(scale)
        f = rng.uniform(cycles[0], cycles[1], size=(n_in, n_sines))
        w = rng.uniform(0.5, 1.0, size=(n_in, n_sines))
        w = w / w.sum(axis=1, keepdims=True)
        ph = rng.uniform(0.0, 2.0 * math.pi, size=(n_in, n_sines))
        return cls(t0=float(t0), duration=float(duration), scale=tuple(float(s) for s in scale),
                   cycles=_rows(f), weights=_rows(w), phases=_rows(ph))

    def __call__(self, t: float) -> np.ndarray:
        """Input values at time ``t``, shape ``(I,)``."""
        x = 2.0 * math.pi * (float(t) - self.t0) / self.duration
        return np.array([
            s * sum(a * math.sin(f * x + ph) for f, a, ph in zip(fs, ws, phs))
            for s, fs, ws, phs in zip(self.scale, self.cycles, self.weights, self.phases)
        ])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description."""
        return {"kind": "sum_of_sines", "t0": self.t0, "duration": self.duration,
                "scale": list(self.scale), "cycles": [list(c) for c in self.cycles],
                "weights": [list(w) for w in self.weights], "phases": [list(p) for p in self.phases]}


def _check_options(n_runs: Any, n_obs: Any, noise: Any, missing: Any, seed: Any) -> None:
    where = "make_dataset"
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 1:
        raise ConfigError(f"{where}: n_runs must be an integer >= 1; got {n_runs!r}.")
    if isinstance(n_obs, bool) or not isinstance(n_obs, int) or n_obs < 2:
        raise ConfigError(f"{where}: n_obs must be an integer >= 2; got {n_obs!r}.")
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ConfigError(
            f"{where}: noise must be >= 0 (a fraction of each state's standard deviation, e.g. "
            f"0.05); got {noise!r}."
        )
    if not isinstance(missing, (int, float)) or not 0.0 <= missing < 1.0:
        raise ConfigError(
            f"{where}: missing must be a fraction in [0, 1) of state cells set to NaN; got {missing!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: seed must be a non-negative integer; got {seed!r}.")


def _run_times(system: System, t: Any, n_obs: int, irregular: bool, n_runs: int,
               rng: np.random.Generator) -> list[np.ndarray]:
    if t is not None:
        if irregular:
            raise ConfigError(
                "make_dataset: pass either t (shared output times) or irregular=True (random "
                "times per run over the system's t_span), not both."
            )
        times = check_times(t, "make_dataset")
        return [times.copy() for _ in range(n_runs)]
    t0, t1 = system.t_span
    if not irregular:
        return [np.linspace(t0, t1, n_obs) for _ in range(n_runs)]
    out = []
    for _ in range(n_runs):
        while True:  # a tie has probability 0 but would break "strictly increasing"
            inner = np.sort(rng.uniform(t0, t1, size=n_obs - 1))
            times = np.concatenate([[t0], inner])
            if np.all(np.diff(times) > 0):
                break
        out.append(times)
    return out


def _initial_states(system: System, y0: Any, n_runs: int, rng: np.random.Generator) -> np.ndarray:
    if y0 is None or (isinstance(y0, str) and y0 == "random"):
        base = np.asarray(system.y0, dtype=float)
        z = rng.standard_normal(size=(n_runs, base.size))
        return base * np.exp(Y0_SPREAD * z)
    if isinstance(y0, str):
        raise ConfigError(f"make_dataset: y0 must be None, 'random', an array or a mapping state "
                          f"-> value; got {y0!r}.")
    init = check_initial(system, y0, "make_dataset")
    if init.shape[0] == 1:
        return np.repeat(init, n_runs, axis=0)
    if init.shape[0] != n_runs:
        raise DataError(
            f"make_dataset: y0 has {init.shape[0]} initial states but n_runs={n_runs}; pass one "
            f"state of {len(system.states)} values or {n_runs} of them."
        )
    return init


def make_dataset(
    system: System | str,
    *,
    n_runs: int = 4,
    t: Any = None,
    n_obs: int = 100,
    noise: float = 0.05,
    irregular: bool = False,
    missing: float = 0.0,
    y0: Any = None,
    inputs: Callable[[float], Any] | Sequence[Callable[[float], Any]] | None = None,
    params: Mapping[str, float] | None = None,
    seed: int = 0,
    method: str = "LSODA",
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> xr.Dataset:
    """Synthetic noisy trajectories of a reference system, in the trajectory schema.

    Parameters
    ----------
    system : System or str
        A system or its catalogue name.
    n_runs : int
        Number of runs (trajectories), ids ``run0, run1, ...``.
    t : array_like, optional
        Output times shared by all runs; default ``n_obs`` evenly spaced times over the system's
        ``t_span`` (or random ones per run with ``irregular=True``).
    n_obs : int
        Samples per run when ``t`` is not given.
    noise : float
        Gaussian noise standard deviation as a fraction of each state's standard deviation over
        its (clean) run. Inputs are recorded without noise.
    irregular : bool
        Draw each run's times at random (sorted, uniform over ``t_span``; the first is the start).
    missing : float
        Fraction of state cells set to NaN, drawn per run among all samples but the first (the
        initial state stays observed).
    y0 : None, "random", array_like or mapping
        None/"random": the typical initial state perturbed log-normally, ``y0 * exp(0.2 z)`` per
        run (signs kept, zero states stay zero); an array ``(S,)`` for every run or ``(n_runs, S)``;
        or a mapping naming every state, ``{"x": 1.0, "v": 0.0}`` (a value or one per run).
    inputs : callable or sequence of callables, optional
        For systems with inputs: ``u(t)`` shared by all runs or one per run; default a seeded
        random :class:`SumOfSines` per run with the system's ``input_scale``.
    params : mapping, optional
        True parameter values (default: the system's defaults).
    seed : int
        Seed of the ``numpy.random.SeedSequence`` all randomness comes from (no global state).
    method, rtol, atol
        SciPy solver settings for the clean trajectories.

    Returns
    -------
    xarray.Dataset
        The schema, with attrs recording the system, true ``parameters`` (JSON), ``noise``,
        ``noise_sd`` (JSON per run and state), ``missing``, ``irregular`` (0/1), ``seed``,
        ``initial_states`` (JSON per run) and ``input_signals`` (JSON).

    Examples
    --------
    >>> ds = make_dataset("lotka_volterra", n_runs=2, n_obs=20, seed=1)
    >>> ds.sizes["trajectory"], ds.sizes["obs"]
    (2, 20)
    """
    where = "make_dataset"
    sys_ = resolve_system(system, where)
    _check_options(n_runs, n_obs, noise, missing, seed)
    check_method(method, rtol, atol, where)
    p = sys_.resolve_parameters(params)
    rng_y0, rng_t, rng_u, rng_noise, rng_missing = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    init = _initial_states(sys_, y0, n_runs, rng_y0)
    times = _run_times(sys_, t, n_obs, bool(irregular), n_runs, rng_t)
    ids = [f"run{i}" for i in range(n_runs)]

    signals: list[dict[str, Any] | str] = []
    if sys_.inputs and inputs is None:
        fns: list[Any] = []
        for tr in times:
            sig = SumOfSines.random(rng_u, t0=tr[0], duration=tr[-1] - tr[0], scale=sys_.input_scale)
            fns.append(sig)
            signals.append(sig.to_dict())
    else:
        fns = check_run_inputs(sys_, inputs, n_runs, where)
        signals = ["user" if fn is not None else "none" for fn in fns]

    clean, u_vals, noisy, noise_sd = [], [], [], {}
    for i in range(n_runs):
        y = solve_one(sys_, init[i], times[i], p, fns[i], method=method, rtol=rtol, atol=atol,
                      run_id=ids[i])
        clean.append(y)
        u_vals.append(sample_inputs(sys_, fns[i], times[i]))
        sd = y.std(axis=0)
        sd = np.where(sd > 0, sd, np.abs(y.mean(axis=0)))  # a constant state: relative to its level
        sd = noise * sd
        noise_sd[ids[i]] = dict(zip(sys_.states, sd.tolist()))
        obs = y + rng_noise.standard_normal(size=y.shape) * sd
        if missing > 0:
            n_rows, n_states = obs.shape
            n_cells = (n_rows - 1) * n_states
            n_nan = int(round(missing * n_cells))
            cells = rng_missing.choice(n_cells, size=n_nan, replace=False)
            obs[1 + cells // n_states, cells % n_states] = np.nan
        noisy.append(obs)

    attrs = system_attrs(sys_, p, method, rtol, atol)
    attrs.update({
        "synthetic": "sysid.systems.make_dataset",
        "noise": float(noise),
        "noise_model": "gaussian; sd = noise * standard deviation of each state over its run",
        "noise_sd": json.dumps(noise_sd),
        "missing": float(missing),
        "irregular": int(bool(irregular)),
        "seed": int(seed),
        "initial_states": json.dumps({r: dict(zip(sys_.states, init[i].tolist()))
                                      for i, r in enumerate(ids)}),
        "input_signals": json.dumps(dict(zip(ids, signals))),
    })
    return build_dataset(sys_, times, noisy, u_vals, ids, attrs)


__all__ = ["SumOfSines", "make_dataset", "Y0_SPREAD"]
