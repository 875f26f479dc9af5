"""Ensembles of fits: seeds, bootstrap, random starts; prediction bands and parameter intervals.

Bands live in the trajectory schema with one more dimension, ``quantile`` (see docs/design.md,
"Parallel"): ``band["prey"]`` has dims ``(quantile, trajectory, obs)`` and
``band.sel(quantile=0.5)`` is an ordinary trajectory dataset (the median member), which every
sysid function that takes predictions accepts. This is what ``xarray.Dataset.quantile`` produces,
so any level can be asked for without inventing variable names (``x_q025``?), and the levels are
data (a coordinate), not parsed out of names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, DataError, SolverError
from sysid.parallel.executors import Interrupted, TaskFailure, run_tasks
from sysid.parallel.many import FitTask, fit_task, own_checkpoint
from sysid.parallel.resampling import (
    MULTIPLICATIVE_LOSSES,
    has_neural,
    original_run,
    perturb_start,
    resample_runs,
    reseed,
    residual_bootstrap,
)

__all__ = ["ensemble", "Ensemble", "band_coverage", "KINDS", "RESAMPLE"]

KINDS = ("seeds", "bootstrap", "starts")
RESAMPLE = ("auto", "runs", "residuals")
# with at least this many runs, bootstrap resamples whole runs; with fewer, residuals of each run
MIN_RUNS_FOR_CASES = 5
DEFAULT_QUANTILES = (0.05, 0.5, 0.95)


def _loss_kind(config: Any) -> str:
    loss = config.loss
    return loss if isinstance(loss, str) else str(loss.kind)


def _seed_of(config: Any) -> int:
    return int(config.seed)


@final
@dataclass(frozen=True, eq=False, kw_only=True)
class Ensemble:
    """What :func:`ensemble` returns: the member fits and what follows from them.

    Attributes
    ----------
    kind : str
        "seeds", "bootstrap" or "starts".
    resample : str
        How bootstrap data sets were made: "runs", "residuals", or "none" (seeds, starts).
    members : tuple
        One :class:`~sysid.training.FitResult` (or :class:`~sysid.parallel.TaskFailure`) per member.
    member_data : tuple of xarray.Dataset
        The data each member was trained on (bootstrap data sets; the data itself otherwise).
    base : FitResult or TaskFailure or None
        Bootstrap: the fit to the original data (the point estimate); None otherwise.
    data : xarray.Dataset
        The training data as given.
    seed : int
        Seed of the resampling, the random starts and the noise draws of the bands.
    """

    kind: str
    resample: str
    members: tuple[Any, ...]
    member_data: tuple[xr.Dataset, ...]
    base: Any
    data: xr.Dataset
    seed: int
    _noise: dict[int, dict[str, float]] = field(default_factory=dict, init=False, repr=False)

    @property
    def fits(self) -> list[Any]:
        """The members that succeeded."""
        return [m for m in self.members if not isinstance(m, TaskFailure)]

    @property
    def failures(self) -> list[TaskFailure]:
        """The members that failed (error type and message each)."""
        return [m for m in self.members if isinstance(m, TaskFailure)]

    @property
    def best(self) -> Any:
        """The member with the lowest final training metric (multi-start: the answer)."""
        fits = self.fits
        if not fits:
            raise DataError(self._none_left("best"))
        return min(fits, key=_final_metric)

    def _none_left(self, what: str) -> str:
        first = self.failures[0] if self.failures else None
        return (f"Ensemble.{what}: no member succeeded ({len(self.failures)} failed"
                + (f"; first: {first.error_type}: {first.message}" if first else "") + ").")

    def member_parameters(self) -> pd.DataFrame:
        """Long table: one row per (member, parameter) with ``value`` and ``units``."""
        rows = []
        for i, m in enumerate(self.members):
            if isinstance(m, TaskFailure) or not len(m.parameters):
                continue
            for _, p in m.parameters.iterrows():
                rows.append({"member": i, "name": str(p["name"]), "value": float(p["value"]),
                             "units": str(p.get("units", "")), "vary": bool(p.get("vary", True))})
        return pd.DataFrame(rows, columns=["member", "name", "value", "units", "vary"])

    def parameters(self, level: float = 0.9) -> pd.DataFrame:
        """Ensemble summary per physical parameter, indexed by name.

        Columns: ``estimate`` (bootstrap: the fit to the original data; else the members'
        median), ``median``, ``mean``, ``sd``, ``low`` and ``high`` (the central ``level``
        interval of the members: the percentile bootstrap interval for "bootstrap"; the spread
        the optimiser reaches for "seeds"/"starts", which is not a confidence interval),
        ``units``, ``n_members``, ``vary``.
        """
        if not 0 < level < 1:
            raise ConfigError(f"Ensemble.parameters: level must lie in (0, 1); got {level!r}.")
        long = self.member_parameters()
        if long.empty:
            return pd.DataFrame(columns=["estimate", "median", "mean", "sd", "low", "high", "units",
                                         "n_members", "vary"])
        base = {}
        if self.base is not None and not isinstance(self.base, TaskFailure):
            base = dict(zip(self.base.parameters["name"], self.base.parameters["value"]))
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        rows = {}
        for name, g in long.groupby("name", sort=False):
            v = g["value"].to_numpy(float)
            rows[name] = {"estimate": float(base.get(name, np.median(v))),
                          "median": float(np.median(v)), "mean": float(v.mean()),
                          "sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                          "low": float(np.quantile(v, lo)), "high": float(np.quantile(v, hi)),
                          "units": g["units"].iloc[0], "n_members": int(v.size),
                          "vary": bool(g["vary"].iloc[0])}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "name"
        out.attrs["level"] = level
        return out

    # -- display -------------------------------------------------------------------------------
    def _facts(self) -> list[tuple[str, str]]:
        facts = [("kind", self.kind + ("" if self.resample == "none" else
                                       f" (resampling {self.resample})")),
                 ("members", f"{len(self.members)}: {len(self.fits)} succeeded, "
                             f"{len(self.failures)} failed")]
        metrics = [_final_metric(m) for m in self.fits]
        finite = [v for v in metrics if math.isfinite(v)]
        if finite:
            facts.append(("final training metric", f"best {min(finite):.4g}, median "
                                                   f"{float(np.median(finite)):.4g}, worst "
                                                   f"{max(finite):.4g}"))
        if self.failures:
            first = self.failures[0]
            facts.append(("first failure", f"{first.error_type}: {first.message}"))
        return facts

    def _parameter_summary(self, level: float = 0.9) -> pd.DataFrame:
        table = self.parameters(level)
        if table.empty:
            return table
        cols = ["estimate", "low", "high", "sd", "units", "n_members"]
        out = table[cols].rename(columns={"low": f"q{(1 - level) / 2:g}",
                                          "high": f"q{1 - (1 - level) / 2:g}"})
        return out.reset_index()

    def summary(self, level: float = 0.9) -> str:
        """A short text report: kind, member counts, the spread of the members' final training
        metric, the first failure, and the parameter table of :meth:`parameters` (estimate, the
        central ``level`` interval of the members, their standard deviation, units)."""
        from sysid._display import text_block

        return text_block(f"sysid Ensemble ({self.kind})", self._facts(),
                          self._parameter_summary(level))

    def __repr__(self) -> str:
        """One line: kind, member counts and up to six parameter estimates."""
        parts = [f"kind={self.kind!r}", f"members={len(self.members)}",
                 f"succeeded={len(self.fits)}"]
        table = self._parameter_summary() if self.fits else pd.DataFrame()
        if len(table):
            shown = [f"{r['name']}={r['estimate']:.4g}" for _, r in table.head(6).iterrows()]
            parts.append("parameters={" + ", ".join(shown)
                         + (f", +{len(table) - 6} more" if len(table) > 6 else "") + "}")
        return "Ensemble(" + ", ".join(parts) + ")"

    def _repr_html_(self) -> str:
        """HTML for Jupyter: the facts of ``summary()``, the parameter intervals and a strip plot
        of the members' parameter values relative to the estimate (or, for a model without named
        parameters, of the members' final training metric)."""
        from matplotlib.figure import Figure

        from sysid._display import block, facts_html, figure_png, table_html

        parts = [facts_html(self._facts())]
        table = self._parameter_summary() if self.fits else pd.DataFrame()
        if len(table):
            parts.append(table_html(table))
        fig = Figure(figsize=(4.0, 2.2), layout="constrained")
        ax = fig.subplots()
        long = self.member_parameters()
        if len(table) and len(long):
            est = dict(zip(table["name"], table["estimate"]))
            names = list(est)
            for i, name in enumerate(names):
                v = long.loc[long["name"] == name, "value"].to_numpy(float)
                scale = abs(est[name]) or 1.0
                ax.plot(np.full(v.size, i), v / scale, "o", ms=3, alpha=0.6, color="C0")
            ax.axhline(1.0, color="0.5", lw=0.8)
            ax.set_xticks(range(len(names)), names, fontsize=8)
            ax.set_ylabel("member / estimate")
        else:
            metrics = [_final_metric(m) for m in self.fits]
            ax.plot(range(len(metrics)), metrics, "o", ms=3, color="C0")
            ax.set_xlabel("member")
            ax.set_ylabel("final training metric")
        parts.append(figure_png(fig))
        return block(f"sysid Ensemble ({self.kind})", parts, "sysid-ensemble")

    # -- bands ---------------------------------------------------------------------------------
    def simulate(self, initial: Any, times: Any = None, *, inputs: Any = None,
                 quantiles: Sequence[float] = DEFAULT_QUANTILES, noise: bool = False,
                 draws: int | None = None, solver: Any = None) -> xr.Dataset:
        """Quantile band of the members' simulations from given initial states.

        Parameters are those of :func:`sysid.simulate` (``initial``, ``times``, ``inputs``,
        ``solver``), plus ``quantiles`` (levels in [0, 1]), ``noise`` (add each member's
        measurement noise: a band for new observations rather than for the trajectory) and
        ``draws`` (noise draws per member; default enough for 1000 samples in all).

        Returns
        -------
        xarray.Dataset
            The trajectory schema with a ``quantile`` dimension on every state variable.
        """
        from sysid import simulate

        kw: dict[str, Any] = {"inputs": inputs}
        if solver is not None:
            kw["solver"] = solver
        sims = self._each("simulate", lambda m, _i: simulate(m.model, initial, times, **kw))
        return self._band(sims, quantiles, noise, draws)

    def predict(self, data: xr.Dataset, *, quantiles: Sequence[float] = DEFAULT_QUANTILES,
                noise: bool = False, draws: int | None = None, settings: Any = None) -> xr.Dataset:
        """Quantile band of the members' free runs on the runs and times of ``data``.

        Each member starts a run where its own fit put that run's initial state (for runs it was
        trained on; a bootstrap copy ``"A#2"`` counts as run ``"A"``), else from the run's first
        sample, as :func:`sysid.analysis.predict`. Measured inputs of ``data`` drive it. To
        forecast held-out years, pass the data that includes them (the band covers every
        sample; :func:`band_coverage` with ``after=`` scores the held-out part).
        """
        from sysid.analysis import predict
        from sysid.solvers import SolverConfig

        settings = settings if settings is not None else SolverConfig(method="RK45", rtol=1e-6,
                                                                        atol=1e-9)
        preds = self._each("predict", lambda m, _i: predict(_renamed(m), data, settings=settings))
        return self._band(preds, quantiles, noise, draws)

    def _each(self, what: str,
              fn: Callable[[Any, int], xr.Dataset]) -> list[tuple[int, xr.Dataset]]:
        out = []
        for i, m in enumerate(self.members):
            if isinstance(m, TaskFailure):
                continue
            try:
                out.append((i, fn(m, i)))
            except SolverError:  # a member that blows up on these conditions is left out, counted
                continue
        if not out:
            raise DataError(self._none_left(what) if not self.fits else
                            f"Ensemble.{what}: every member's simulation failed (SolverError).")
        return out

    def _band(self, sims: list[tuple[int, xr.Dataset]], quantiles: Sequence[float], noise: bool,
              draws: int | None) -> xr.Dataset:
        from sysid.data import state_names

        q = np.asarray(list(quantiles), dtype=float)
        if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 1)) or np.any(np.diff(q) <= 0):
            raise ConfigError(f"Ensemble: quantiles must be increasing levels in [0, 1]; got "
                              f"{list(quantiles)}.")
        first = sims[0][1]
        states = state_names(first)
        n_draws = 1
        if noise:
            n_draws = draws if draws is not None else max(1, math.ceil(1000 / len(sims)))
            if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 1:
                raise ConfigError(f"Ensemble: draws must be an integer >= 1; got {draws!r}.")
        rng = np.random.default_rng([self.seed, 1])
        loss = _loss_kind(self._config())
        out = first.copy()
        for s in states:
            stack = np.stack([ds[s].values for _, ds in sims])  # (M, R, N)
            if noise:
                stack = _with_noise(stack, [self.noise_sd(i).get(s, 0.0) for i, _ in sims], loss,
                                    n_draws, rng)
            with np.errstate(all="ignore"):
                values = np.nanquantile(stack, q, axis=0)
            out[s] = xr.Variable(("quantile", "trajectory", "obs"), values, attrs=first[s].attrs)
        out = out.assign_coords(quantile=("quantile", q))
        out.attrs.update({"ensemble_kind": self.kind, "ensemble_resample": self.resample,
                          "ensemble_members": len(sims),
                          "ensemble_members_left_out": len(self.members) - len(sims),
                          "band": "observations (members + measurement noise)" if noise
                          else "trajectories (members)", "noise_draws_per_member": n_draws})
        return out

    def _config(self) -> Any:
        return self.fits[0].config

    def noise_sd(self, member: int) -> dict[str, float]:
        """RMS residual per measured state of one member's free run on its own training data, in
        the error model's units (log units for "log"/"relative"; data units otherwise)."""
        if member in self._noise:
            return self._noise[member]
        from sysid.analysis import predict
        from sysid.solvers import SolverConfig
        from sysid.data import state_names

        m = self.members[member]
        data = self.member_data[member]
        loss = _loss_kind(m.config)
        pred = predict(m, data, settings=SolverConfig(method="RK45", rtol=1e-6, atol=1e-9))
        sd = {}
        for s in state_names(data):
            y, f = data[s].values, pred[s].values
            if loss in MULTIPLICATIVE_LOSSES:
                with np.errstate(all="ignore"):
                    r = np.log(y) - np.log(np.clip(f, 1e-300, None))
            else:
                r = y - f
            r = r[np.isfinite(r)]
            sd[s] = float(np.sqrt(np.mean(r * r))) if r.size else 0.0
        self._noise[member] = sd
        return sd


def _with_noise(stack: np.ndarray, sd: Sequence[float], loss: str, draws: int,
                rng: np.random.Generator) -> np.ndarray:
    """``draws`` noisy copies of each member's trajectory (M, R, N) -> (M * draws, R, N): the
    error model's noise with each member's residual spread (Poisson counts for "poisson")."""
    base = np.repeat(stack, draws, axis=0)
    sd_all = np.repeat(np.asarray(sd, dtype=float), draws)[:, None, None]
    if loss == "poisson":
        lam = np.clip(np.nan_to_num(base, nan=0.0), 0.0, None)
        return np.where(np.isnan(base), np.nan, rng.poisson(lam).astype(float))
    z = rng.standard_normal(base.shape)
    if loss in MULTIPLICATIVE_LOSSES:
        return base * np.exp(sd_all * z)
    return base + sd_all * z


def _final_metric(result: Any) -> float:
    h = result.history
    for col in ("val_nrmse", "full_loss", "loss"):
        if col in h:
            v = h[col].dropna()
            if len(v):
                return float(v.min())
    return math.inf


def _renamed(result: Any) -> Any:
    """The FitResult with bootstrap run names ``A#k`` mapped back to ``A`` (first copy kept) in its
    tables of fitted initial states, so a prediction on the original runs starts there."""
    def fix(df: pd.DataFrame) -> pd.DataFrame:
        if df is None or df.empty:
            return df
        names = [original_run(r) for r in df.index]
        keep = ~pd.Index(names).duplicated()
        out = df.loc[keep].copy()
        out.index = pd.Index([n for n, k in zip(names, keep) if k], name=df.index.name)
        return out

    return dataclasses.replace(result, initial_states=fix(result.initial_states),
                               latent_initial=fix(result.latent_initial))


def band_coverage(data: xr.Dataset, band: xr.Dataset, *, lower: float = 0.05, upper: float = 0.95,
                  after: float | None = None, runs: Sequence[str] | None = None,
                  variables: Sequence[str] | None = None) -> pd.DataFrame:
    """How many measured samples lie inside the band ``[q_lower, q_upper]``.

    Parameters
    ----------
    data : xarray.Dataset
        Measurements (same runs and times as the band, e.g. the data given to
        :meth:`Ensemble.predict`).
    band : xarray.Dataset
        A band from :meth:`Ensemble.predict` or :meth:`Ensemble.simulate` on the data's times.
    lower, upper : float
        Quantile levels of the band's edges (must be in ``band["quantile"]``).
    after : float, optional
        Count only samples with time > ``after`` (the held-out end of a run).
    runs, variables : sequence of str, optional
        Restrict to these runs / measured variables (default all runs, all states in both).

    Returns
    -------
    pandas.DataFrame
        Rows per variable and ``"all"``: ``n`` (samples scored), ``inside``, ``coverage``
        (= inside / n), ``nominal`` (= upper - lower).
    """
    from sysid.data import run_ids, state_names

    levels = [float(v) for v in band["quantile"].values]
    for q in (lower, upper):
        if not any(abs(q - v) < 1e-12 for v in levels):
            raise ConfigError(f"band_coverage: the band has quantiles {levels}; {q} is not among "
                              f"them.")
    names = list(variables) if variables is not None else [
        s for s in state_names(data) if s in band.data_vars]
    runs = list(runs) if runs is not None else [r for r in run_ids(data) if r in run_ids(band)]
    rows, n_all, in_all = {}, 0, 0
    for s in names:
        if s not in data.data_vars or s not in band.data_vars:
            raise DataError(f"band_coverage: '{s}' is not in both the data and the band.")
        y = data[s].sel(trajectory=runs).values
        t = data["time"].sel(trajectory=runs).values
        b = band[s].sel(trajectory=runs)
        lo = b.sel(quantile=lower, method="nearest").values[:, :y.shape[1]]
        hi = b.sel(quantile=upper, method="nearest").values[:, :y.shape[1]]
        mask = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
        if after is not None:
            mask &= t > after
        inside = mask & (y >= lo) & (y <= hi)
        n, k = int(mask.sum()), int(inside.sum())
        rows[s] = {"n": n, "inside": k, "coverage": k / n if n else math.nan}
        n_all, in_all = n_all + n, in_all + k
    rows["all"] = {"n": n_all, "inside": in_all, "coverage": in_all / n_all if n_all else math.nan}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["nominal"] = upper - lower
    out.index.name = "variable"
    return out


# ----------------------------------------------------------------------------------------------


def _check(model: Any, data: xr.Dataset, config: Any, members: int, kind: str, resample: str,
           spread: float) -> Any:
    from sysid.data import validate
    from sysid.models import Model
    from sysid.training import FitConfig

    if not isinstance(model, Model):
        raise ConfigError(f"ensemble: model must be a sysid.models.Model; got "
                          f"{type(model).__name__}.")
    validate(data, where="ensemble data")
    config = config if config is not None else FitConfig()
    if not isinstance(config, FitConfig):
        raise ConfigError(f"ensemble: config must be a FitConfig; got {type(config).__name__}.")
    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise ConfigError(f"ensemble: members must be an integer >= 2; got {members!r}.")
    if kind not in KINDS:
        raise ConfigError(f"ensemble: kind must be one of {list(KINDS)}; got {kind!r}.")
    if resample not in RESAMPLE:
        raise ConfigError(f"ensemble: resample must be one of {list(RESAMPLE)}; got {resample!r}.")
    if resample != "auto" and kind != "bootstrap":
        raise ConfigError(f"ensemble: resample={resample!r} applies to kind='bootstrap' only.")
    if not (isinstance(spread, (int, float)) and spread > 0 and math.isfinite(spread)):
        raise ConfigError(f"ensemble: spread must be a positive number; got {spread!r}.")
    if kind == "seeds" and not has_neural(model) and config.optimizer.batch_windows is None:
        raise ConfigError(
            "ensemble(kind='seeds'): a seed changes only the initial weights of neural terms and "
            "the order of window batches; this model has no neural term and the config takes all "
            "windows at once (optimizer.batch_windows=None), so every member would be the same "
            "fit. Use kind='bootstrap' (uncertainty from the data) or kind='starts' (random "
            "starting values).")
    return config


def _bootstrap_mode(data: xr.Dataset, resample: str) -> str:
    from sysid.data import run_ids

    n_runs = len(run_ids(data))
    if resample == "auto":
        return "runs" if n_runs >= MIN_RUNS_FOR_CASES else "residuals"
    if resample == "runs" and n_runs < 2:
        raise ConfigError(f"ensemble: resample='runs' draws whole runs and needs at least 2; the "
                          f"data has {n_runs}. Use resample='residuals' (block bootstrap within "
                          f"each run).")
    return resample


def ensemble(model: Any, data: xr.Dataset, config: Any = None, *, members: int = 16,
             kind: str = "seeds", executor: Any = None, resample: str = "auto",
             block: int | None = None, spread: float = 1.0, seed: int | None = None,
             validation: xr.Dataset | None = None, progress: bool = True,
             callback: Callable[[str, Any], None] | None = None) -> Ensemble:
    """Fit an ensemble of ``members`` models and return them with bands and intervals.

    Parameters
    ----------
    model : sysid.models.Model
        The starting model (never changed).
    data : xarray.Dataset
        Training data.
    config : FitConfig, optional
        Settings of every member fit.
    members : int
        Number of member fits (>= 2).
    kind : {"seeds", "bootstrap", "starts"}
        "seeds": member i starts its neural terms from seed ``seed + i`` and fits with
        ``config.seed + i`` (member 0 is the plain fit); the spread is the optimiser's, for neural
        and hybrid models. "bootstrap": each member fits a resampled data set (see ``resample``);
        the spread estimates the uncertainty that comes from the data. "starts": member i > 0
        starts from randomly moved physical parameters (``spread``) and reseeded networks; the
        spread shows how much the answer depends on the start, and :attr:`Ensemble.best` is the
        multi-start answer.
    executor : optional
        Where the fits run (see :func:`sysid.fit_many`): local processes by default.
    resample : {"auto", "runs", "residuals"}
        Bootstrap data sets. "runs": as many runs as the data has, drawn with replacement (case
        bootstrap; runs are the independent units). "residuals": the fit to the original data
        plus moving blocks of its residuals, per run (a block bootstrap that keeps the
        autocorrelation of one long series); additive residuals, or log residuals for the
        multiplicative error models. "auto": "runs" with at least 5 runs, else "residuals".
    block : int, optional
        Block length in samples for "residuals" (default ``ceil(n ** (1/3))``).
    spread : float
        "starts": standard deviation of the move of each raw (unconstrained) parameter.
    seed : int, optional
        Seed of resampling, starts and band noise (default ``config.seed``).
    validation : xarray.Dataset, optional
        Held-out runs for every member's early stopping and model choice.
    progress : bool
        A progress bar over the members.
    callback : callable, optional
        ``callback(label, result)`` as each fit comes back ("base fit", "member 3", ...).

    Returns
    -------
    Ensemble

    Raises
    ------
    ConfigError
        For invalid settings, and for ``kind="seeds"`` on a model that seeds do not change.
    sysid.parallel.Interrupted
        On Ctrl-C, with the fits that came back.
    """
    config = _check(model, data, config, members, kind, resample, spread)
    seed = _seed_of(config) if seed is None else int(seed)
    rng = np.random.default_rng([seed, 0])
    mode = "none" if kind != "bootstrap" else _bootstrap_mode(data, resample)
    base_seed = _seed_of(config)

    def run(tasks: list[FitTask]) -> list[Any]:
        def forward(i: int, result: Any) -> None:
            if callback is not None:
                callback(tasks[i].label, result)

        return run_tasks(fit_task, tasks, executor=executor, labels=[t.label for t in tasks],
                         progress=progress, callback=forward, desc=f"ensemble ({kind})")

    base: Any = None
    tasks, datasets = [], []
    if mode == "residuals":
        base = run([FitTask(model=model, data=data, config=config, validation=validation,
                            label="base fit")])[0]
        if isinstance(base, TaskFailure):
            raise DataError(f"ensemble(kind='bootstrap'): the fit to the original data failed, so "
                            f"there are no residuals to resample: {base.error_type}: "
                            f"{base.message}")
        fitted = _predict_fitted(base, data)
        states = [s for s in model.observed if s in data.data_vars]
        for i in range(members):
            boot = residual_bootstrap(data, fitted, rng, states=states, loss=_loss_kind(config),
                                      block=block)
            datasets.append(boot)
            tasks.append(FitTask(model=model, data=boot, config=own_checkpoint(
                config, f"member_{i:03d}"), validation=validation, label=f"member {i}"))
    else:
        for i in range(members):
            member_model, member_cfg, member_data = model, config, data
            if kind == "seeds":
                member_model = reseed(model, i)
                member_cfg = dataclasses.replace(config, seed=base_seed + i)
            elif kind == "starts" and i > 0:
                member_model = reseed(perturb_start(model, rng, spread), i)
                member_cfg = dataclasses.replace(config, seed=base_seed + i)
            elif kind == "bootstrap":
                member_data = resample_runs(data, rng)
            datasets.append(member_data)
            tasks.append(FitTask(model=member_model, data=member_data,
                                 config=own_checkpoint(member_cfg, f"member_{i:03d}"),
                                 validation=validation, label=f"member {i}"))
        if kind == "bootstrap":  # the point estimate, fitted alongside the members
            tasks.append(FitTask(model=model, data=data, config=config, validation=validation,
                                 label="base fit"))
    interrupted: Interrupted | None = None
    try:
        results = run(tasks)
    except Interrupted as exc:  # keep the members that finished
        results, interrupted = list(exc.results), exc
    if kind == "bootstrap" and mode == "runs":
        base = results.pop()
    out = Ensemble(kind=kind, resample=mode, members=tuple(results), member_data=tuple(datasets),
                   base=base, data=data, seed=seed)
    if interrupted is not None:
        raise Interrupted(interrupted.results, partial=out) from None
    return out


def _predict_fitted(result: Any, data: xr.Dataset) -> xr.Dataset:
    from sysid.analysis import predict
    from sysid.solvers import SolverConfig

    try:
        return predict(result, data,
                       settings=SolverConfig(method="RK45", rtol=1e-8, atol=1e-10))
    except SolverError as exc:
        raise DataError(f"ensemble(kind='bootstrap'): the fit to the original data cannot be "
                        f"simulated over the data ({exc}); there are no residuals to "
                        f"resample.") from None


def summary(ens: Ensemble, level: float = 0.9) -> Mapping[str, Any]:
    """Counts and the parameter table as plain values (for JSON)."""
    from sysid.analysis import jsonable

    return {"kind": ens.kind, "resample": ens.resample, "members": len(ens.members),
            "succeeded": len(ens.fits), "failed": [str(f) for f in ens.failures],
            "parameters": jsonable(ens.parameters(level).reset_index())}
