"""The outcome of a fit, and Gauss-Newton standard errors of the physical parameters."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from sysid.training.config import FitConfig

__all__ = ["FitResult", "StopReason", "gauss_newton_stderr", "STOP_REASONS"]


class StopReason(enum.StrEnum):
    """Why a fit (or one of its stages) stopped; a ``str``, so ``reason == "completed"`` works.

    COMPLETED: every epoch ran. CONVERGED: an iterative refinement met its tolerance.
    ITERATION_LIMIT: it ran out of iterations first. TARGET_REACHED: the validation NRMSE reached
    ``Validation.target``. EARLY_STOPPING: no validation improvement for ``Validation.patience``
    checks. MAX_TIME: the ``max_time`` budget was spent. INTERRUPTED: Ctrl-C or SIGTERM.
    DIVERGED: more than ``Optimizer.max_rollbacks`` failed steps (or, for a refinement, every
    trial point failed to integrate). SKIPPED: a stage that did not run (e.g. a refinement with
    nothing to refine; its message says why).
    """

    COMPLETED = "completed"
    CONVERGED = "converged"
    ITERATION_LIMIT = "iteration_limit"
    TARGET_REACHED = "target_reached"
    EARLY_STOPPING = "early_stopping"
    MAX_TIME = "max_time"
    INTERRUPTED = "interrupted"
    DIVERGED = "diverged"
    SKIPPED = "skipped"


STOP_REASONS = tuple(r.value for r in StopReason)


@dataclass(frozen=True, eq=False)
class FitResult:
    """What :func:`sysid.fit` returns.

    Attributes
    ----------
    model : sysid.models.Model
        The trained copy (the best state seen; the model passed to ``fit`` is never changed).
    history : pandas.DataFrame
        One row per epoch: ``epoch``, ``stage``, ``horizon``, ``loss`` (mean training loss of the
        epoch), ``full_loss`` (without validation data: the loss on windows of the longest
        horizon, which picks the best model), ``val_nrmse`` (with validation data), both NaN on
        epochs without a check, ``lr``, ``nfe`` (cumulative function evaluations), ``time_s``,
        ``event`` (rollbacks and their reason).
    parameters : pandas.DataFrame
        One row per named physical parameter: ``name``, ``value``, ``lower``, ``upper``, ``units``,
        ``vary``, ``stderr`` (Gauss-Newton, NaN for fixed or unidentifiable parameters).
    solver_stats : dict
        ``method``, ``substeps``, ``nfe``, ``rollbacks``, ``epochs_run``, ``time_s``,
        ``warm_start`` (losses before/after, or why skipped), ``windows``, ``initial_metric``
        (the best-model metric of the starting state), ``shooting`` (the method used, why, and
        its stages ``[horizon, epochs, stride]``, see :mod:`sysid.training.shooting`).
    config : FitConfig
        The settings used.
    stopped_reason : StopReason
        Why it stopped (a ``str`` enum: ``result.stopped_reason == "completed"`` works).
    message : str
        Why it stopped, in words (a diverged fit names the failure and the hint), and the
        shooting method used.
    best_epoch : int
        Epoch (1-based) whose state the model holds; 0 means the state after the warm start.
    latent_initial : pandas.DataFrame
        Estimated latent (unmeasured) states at the first sample of each training run, in user
        units (empty without latent states).
    initial_states : pandas.DataFrame
        Every state at the first sample of each training run (runs x states, user units): the
        estimate where the fit treated the initial state as free (latent states, and all states
        with ``FitConfig(initial_states="free")``), else the (smoothed) measurement. Pass a row as
        ``initial=`` to :func:`sysid.analysis.predict` to simulate the fitted trajectory.
    error_model : str
        The error model the fit maximised the likelihood of (``FitConfig.loss.kind``; see
        :mod:`sysid.estimation.error_models`).
    sigma : pandas.Series
        Maximum-likelihood noise level of each measured variable at the optimum (data units; log
        units for "lognormal", a fraction for "relative", a fraction of the state's spread for
        "nmse"; NaN where the error model has none, e.g. Poisson or known sigmas).
    loglik, aic, bic : float
        Log-likelihood of the training data under the error model (single shooting from each
        run's initial state), ``AIC = 2k - 2 loglik`` and ``BIC = k log n - 2 loglik`` with ``k``
        every estimated quantity (parameters, free initial states, sigmas) and ``n`` residuals.
    covariance, correlation : pandas.DataFrame
        Of the estimated quantities (physical parameters, initial states named ``x0[run].state``,
        noise levels ``sigma`` or ``sigma[state]``) from the Jacobian at the optimum; empty
        without the joint refinement. Network weights are not among them.
    convergence : Convergence or None
        How the joint least-squares refinement ended: ``reason`` (a :class:`StopReason`),
        ``converged``, ``gradient_norm``, ``relative_step``, ``predicted_decrease``,
        ``iterations``, ``message`` (see :class:`sysid.estimation.least_squares.Convergence`).
    starts : pandas.DataFrame
        With ``FitConfig(starts=N)``, N > 1: one row per start (``start``, ``loss``,
        ``stopped_reason``, the fitted free parameters, ``optimum``: the distinct optimum it
        reached, 0 = best); see :func:`sysid.estimation.multistart`. Empty for a single start.
    """

    model: Any
    history: pd.DataFrame
    parameters: pd.DataFrame
    solver_stats: dict[str, Any]
    config: FitConfig
    stopped_reason: StopReason
    message: str = ""
    best_epoch: int = 0
    latent_initial: pd.DataFrame = field(default_factory=pd.DataFrame)
    initial_states: pd.DataFrame = field(default_factory=pd.DataFrame)
    error_model: str = ""
    sigma: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    loglik: float = math.nan
    aic: float = math.nan
    bic: float = math.nan
    covariance: pd.DataFrame = field(default_factory=pd.DataFrame)
    correlation: pd.DataFrame = field(default_factory=pd.DataFrame)
    convergence: Any = None
    starts: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self) -> None:
        if not isinstance(self.stopped_reason, StopReason):
            object.__setattr__(self, "stopped_reason", StopReason(self.stopped_reason))

    # ------------------------------------------------------------------ display
    # Short on purpose: the history (one row per epoch) and the config are attributes to look at,
    # not something to print whole.

    def _reason(self) -> str:
        return str(getattr(self.stopped_reason, "value", self.stopped_reason))

    def _facts(self) -> list[tuple[str, str]]:
        """(label, text) pairs shared by ``summary()`` and ``_repr_html_``."""
        facts = [("stopped", self._reason() + (f" ({self.message})" if self.message else ""))]
        if len(self.history):
            last = self.history.iloc[-1]
            facts.append(("epochs", f"{int(last['epoch'])} (model from epoch {self.best_epoch})"))
            if math.isfinite(float(last["loss"])):
                facts.append(("final training loss", f"{float(last['loss']):.4g}"))
            if "val_nrmse" in self.history.columns:
                val = self.history["val_nrmse"].dropna()
                if len(val):
                    facts.append(("best validation NRMSE", f"{float(val.min()):.4g}"))
        secs = self.solver_stats.get("time_s")
        if secs is not None:
            facts.append(("time", f"{float(secs):.1f} s, {int(self.solver_stats.get('nfe', 0))} "
                                  f"function evaluations"))
        if self.convergence is not None:
            c = self.convergence
            facts.append(("least squares", f"{c.reason.value}, {c.iterations} iterations, gradient "
                                           f"norm {c.gradient_norm:.3g}, relative step "
                                           f"{c.relative_step:.3g}"))
        if self.error_model and math.isfinite(self.loglik):
            facts.append(("likelihood", f"{self.error_model} error model: log-likelihood "
                                        f"{self.loglik:.6g}, AIC {self.aic:.6g}, BIC {self.bic:.6g}"))
        return facts

    def _parameter_rows(self) -> pd.DataFrame:
        """name, value, stderr, 95 % interval (the fit's own ``ci95_low``/``ci95_high``, else
        value ± 1.96 stderr), units."""
        p = self.parameters
        if not len(p):
            return pd.DataFrame()
        se = p["stderr"].astype(float) if "stderr" in p.columns else pd.Series(np.nan, index=p.index)
        z = 1.959963984540054
        out = pd.DataFrame({
            "name": p["name"].astype(str) if "name" in p.columns else p.index.astype(str),
            "value": p["value"].astype(float),
            "stderr": se,
            "ci95_low": (p["ci95_low"].astype(float) if "ci95_low" in p.columns
                         else p["value"].astype(float) - z * se),
            "ci95_high": (p["ci95_high"].astype(float) if "ci95_high" in p.columns
                          else p["value"].astype(float) + z * se),
            "units": p["units"].astype(str) if "units" in p.columns else "",
        })
        if "vary" in p.columns:
            out["vary"] = p["vary"].astype(bool)
        return out.reset_index(drop=True)

    def summary(self) -> str:
        """A short text report of the fit.

        Lines: why it stopped (``stopped_reason`` and ``message``), the number of epochs and the
        epoch the model comes from, the final training loss, the best validation NRMSE (with
        validation data), time and solver work, and one row per named parameter with its value,
        Gauss-Newton standard error, 95 % interval (value ± q stderr, q Student's t with n - P
        degrees of freedom when the noise level is estimated, else 1.96; NaN where the parameter
        is fixed or not identifiable) and units, and, after the joint least-squares refinement,
        how it converged and the log-likelihood, AIC and BIC. ``print(result)`` shows the one-line ``repr``; the
        full per-epoch record is ``result.history``.

        Returns
        -------
        str
        """
        lines = [f"{label}: {text}" for label, text in self._facts()]
        rows = self._parameter_rows()
        if len(rows):
            lines += ["parameters:", rows.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
        return "\n".join(lines)

    def __repr__(self) -> str:
        """One line: stop reason, epochs, loss and up to six parameters (value ± stderr)."""
        parts = [f"stopped={self._reason()!r}"]
        if len(self.history):
            last = self.history.iloc[-1]
            parts += [f"epochs={int(last['epoch'])}", f"best_epoch={self.best_epoch}",
                      f"loss={float(last['loss']):.4g}"]
        rows = self._parameter_rows()
        if len(rows):
            shown = [f"{r.name}={r.value:.4g}" + (f"±{r.stderr:.2g}" if np.isfinite(r.stderr) else "")
                     for r in rows.head(6).itertuples()]
            more = f", +{len(rows) - 6} more" if len(rows) > 6 else ""
            parts.append("parameters={" + ", ".join(shown) + more + "}")
        states = list(getattr(self.model, "state_names", []))
        parts.append(f"model={type(getattr(self.model, 'field', self.model)).__name__}{states}")
        return "FitResult(" + ", ".join(parts) + ")"

    def _repr_html_(self) -> str:
        """HTML for Jupyter: the facts of ``summary()``, the parameters with 95 % intervals and a
        small training-loss figure (an inline PNG)."""
        from sysid._display import block, facts_html, figure_png, table_html

        parts = [facts_html(self._facts())]
        rows = self._parameter_rows()
        if len(rows):
            parts.append(table_html(rows))
        fig = self._loss_figure()
        if fig is not None:
            parts.append(figure_png(fig))
        return block("sysid FitResult", parts, "sysid-fit")

    def _loss_figure(self) -> Any:
        """The training loss against epoch as a small figure (None without a history)."""
        if not len(self.history) or "loss" not in self.history.columns:
            return None
        from matplotlib.figure import Figure

        from sysid.plot import training_curves

        fig = Figure(figsize=(4.0, 2.2), layout="constrained")
        cols = [c for c in ("loss", "val_nrmse") if c in self.history.columns]
        training_curves(self.history, ax=fig.subplots(), columns=cols)
        return fig


def gauss_newton_stderr(residual_fn, raw: torch.Tensor, value_fn) -> tuple[np.ndarray, float, int]:
    """Standard errors of physical parameters from the Gauss-Newton approximation.

    ``Cov = s^2 (J^T J)^-1`` with ``J`` the Jacobian of the residual vector with respect to the
    parameter values at the optimum and ``s^2 = SSR / (n - p)``. ``J`` comes from central finite
    differences in the unconstrained ("raw") coordinates (float64), mapped to values by the
    derivative of the bound transform.

    Parameters
    ----------
    residual_fn : callable
        ``residual_fn(raw) -> Tensor (n,)`` residuals for the raw parameter vector.
    raw : Tensor (p,)
        Raw parameters at the optimum (float64).
    value_fn : callable
        ``value_fn(raw) -> Tensor (p,)`` constrained values.

    Returns
    -------
    stderr : ndarray (p,)
        NaN where the parameter is not identifiable (singular ``J^T J``).
    sigma2 : float
        Residual variance estimate.
    n : int
        Number of residuals.
    """
    with torch.no_grad():
        r0 = residual_fn(raw)
        n, p = r0.numel(), raw.numel()
        if n <= p or p == 0:
            return np.full(p, np.nan), float("nan"), n
        cols = []
        dvals = []
        for j in range(p):
            h = 1e-6 * max(1.0, abs(float(raw[j])))
            up, down = raw.clone(), raw.clone()
            up[j] += h
            down[j] -= h
            cols.append(((residual_fn(up) - residual_fn(down)) / (2 * h)).double())
            dvals.append(float((value_fn(up)[j] - value_fn(down)[j]) / (2 * h)))
        J = torch.stack(cols, dim=1).numpy()
        dv = np.asarray(dvals)
        ssr = float((r0.double() ** 2).sum())
        sigma2 = ssr / (n - p)
        with np.errstate(divide="ignore", invalid="ignore"):
            Jv = J / dv[None, :]
        norms = np.sqrt((Jv**2).sum(axis=0))
        if not np.all(np.isfinite(norms)):
            return np.full(p, np.nan), sigma2, n
        # equilibrate the columns: parameters of very different magnitude (a rate of 1e-5 next to
        # an amplitude of 20) must not look singular
        safe = np.where(norms > 0, norms, 1.0)
        Jn = Jv / safe[None, :]
        w, V = np.linalg.eigh(Jn.T @ Jn)
        tol = max(w.max(), 0.0) * 1e-10
        keep = w > tol
        inv = (V[:, keep] / w[keep]) @ V[:, keep].T
        cov = sigma2 * inv / np.outer(safe, safe)
        stderr = np.sqrt(np.clip(np.diag(cov), 0.0, math.inf))
        if not keep.all():  # parameters in the null space are not identifiable
            bad = np.abs(V[:, ~keep]).max(axis=1) > 1e-6
            stderr[bad] = np.nan
        stderr[norms == 0] = np.nan
        return stderr, sigma2, n
