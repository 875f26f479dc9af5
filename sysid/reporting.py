"""``sysid.report``: one fit judged every way sysid knows, written as HTML, Markdown and JSON.

The report holds a data summary, the model, the training history, trajectory metrics (free run and
k-step-ahead, training and held-out runs apart), residual whiteness and, with a reference ODE, the
comparison of trajectories, vector fields, fixed points, limit cycles and parameters. Files:

- ``report.html``: self-contained (figures embedded as base64 PNG, no external resources);
- ``report.md``: the same tables in Markdown, figures linked from ``figures/``;
- ``report.json``: every number of the report (NaN/inf as null);
- ``figures/*.png``.

Each file is written to a temporary file in the same folder, flushed to disk and moved into place
(:mod:`sysid.atomic`), so a crash never leaves a half-written report. Existing report files are only
replaced with ``overwrite=True``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, DataError, SysidError
from sysid.solvers import default_solver

REPORT_FILES = ("report.html", "report.md", "report.json")
def _write_atomic(path: Path, payload: bytes) -> None:
    """Write bytes to ``path`` atomically (:func:`sysid.atomic.write_bytes`)."""
    from sysid import atomic

    atomic.write_bytes(path, payload)


#: Rows of a table shown in report.md and report.html (report.json has them all).
TABLE_ROWS = 60


@dataclass
class _Doc:
    """The report being assembled: Markdown and HTML side by side, figures, JSON payload."""

    title: str
    md: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.md += ["#" * level + " " + text, ""]
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str) -> None:
        self.md += [text, ""]
        self.html.append(f"<p>{html.escape(text)}</p>")

    def table(self, df: pd.DataFrame, *, index: bool = True) -> None:
        """A table in both documents; beyond :data:`TABLE_ROWS` rows (a row per run of 10 000
        runs) the first rows and the pooled ones ("all ...") are shown and the text says so
        (``report.json`` keeps every row)."""
        from sysid.analysis.tables import format_value, markdown_table

        if len(df) > TABLE_ROWS:
            labels = pd.Series(df.index.get_level_values(0).astype(str), index=range(len(df)))
            pooled = labels.str.startswith("all").to_numpy()
            keep = np.flatnonzero(~pooled)[:TABLE_ROWS]
            total = len(df)
            df = df.iloc[np.sort(np.concatenate([keep, np.flatnonzero(pooled)]))]
            self.text(f"The first {len(keep)} of {total} rows are shown"
                      + (" with the pooled rows" if pooled.any() else "")
                      + "; report.json has all of them.")
        self.md += [markdown_table(df, index=index), ""]
        shown = df.copy()
        for c in shown.columns:
            shown[c] = [format_value(v) for v in shown[c].tolist()]
        # a wide table scrolls inside its box instead of widening the page
        self.html.append('<div class="tblwrap">'
                         + shown.to_html(index=index, escape=True, border=0, classes="tbl") + "</div>")

    def figure(self, name: str, fig: Any, caption: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        png = buf.getvalue()
        self.figures[name] = png
        self.md += [f"![{caption}](figures/{name}.png)", ""]
        b64 = base64.b64encode(png).decode("ascii")
        self.html.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def section(self, name: str, build: Callable[[], None]) -> None:
        """Run one optional section; a sysid error skips it with the reason written down."""
        try:
            build()
        except SysidError as exc:
            msg = f"{name}: skipped ({type(exc).__name__}: {exc})"
            self.notes.append(msg)
            self.text(msg)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
p{overflow-wrap:anywhere}div.tblwrap{max-width:100%;overflow-x:auto}
table.tbl{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
table.tbl td,table.tbl th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:0.9em}"""


def _plural(n: int, word: str) -> str:
    """ "1 run", "2 runs"."""
    return f"{n} {word}{'' if n == 1 else 's'}"


DENSE_POINTS = 400


def _dense_grid(ds: xr.Dataset, interpolation: str, n: int = DENSE_POINTS) -> xr.Dataset:
    """``ds`` on a dense time grid per run (the sample times plus ``n`` evenly spaced ones): states
    keep their measured values at the sample times (NaN between them, so each run still starts
    at its first sample), inputs are interpolated as the model interpolates them. Runs with at
    least ``n`` samples keep their own grid. Simulating on it draws the model as the continuous
    curve it is rather than a polyline through the sample times."""
    from sysid.data import from_arrays, get_run, input_names, run_ids, state_names
    from sysid.inputs import input_source

    states, inputs = state_names(ds), input_names(ds)
    times: list[np.ndarray] = []
    values: dict[str, list[np.ndarray]] = {v: [] for v in states + inputs}
    source = input_source(ds if inputs else None, inputs, run_ids(ds), kind=interpolation, where="report")
    for i, r in enumerate(run_ids(ds)):
        one = get_run(ds, r)
        t = one["time"].values
        grid = t if t.size >= n else np.union1d(t, np.linspace(t[0], t[-1], n))
        at = np.searchsorted(grid, t)
        times.append(grid)
        for v in states:
            col = np.full(grid.size, np.nan)
            col[at] = one[v].values
            values[v].append(col)
        if source is not None:
            u = source.values_at(i, grid)
            for j, v in enumerate(inputs):
                values[v].append(u[:, j])
    return from_arrays(
        times, values, states=states, inputs=inputs, runs=run_ids(ds),
        units={**{v: ds[v].attrs.get("units", "") for v in states + inputs},
               "time": ds["time"].attrs.get("units", "")},
        long_names={v: ds[v].attrs.get("long_name", v) for v in states + inputs},
        attrs={k: v for k, v in ds.attrs.items() if k not in ("featureType", "Conventions")},
    )


def _sampling(ds: xr.Dataset) -> tuple[bool, str]:
    """(regular, description): whether every run is evenly sampled (time steps equal to 1e-6
    relative), and the range of time steps in words."""
    from sysid.data import run_values

    lo, hi, regular = np.inf, 0.0, True
    for t in run_values(ds)[0]:
        dt = np.diff(t)
        if dt.size == 0:
            continue
        lo, hi = min(lo, float(dt.min())), max(hi, float(dt.max()))
        if dt.max() - dt.min() > 1e-6 * max(abs(float(dt.max())), 1e-300):
            regular = False
    units = ds["time"].attrs.get("units", "")
    unit = f" {units}" if units else ""
    if regular:
        return True, f"every {lo:.4g}{unit}"
    return False, f"time steps from {lo:.4g} to {hi:.4g}{unit}"


def _data_summary(ds: xr.Dataset, held_out: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sysid.data import run_ids, run_values

    runs = []
    names = [str(n) for n in ds.data_vars]
    times, columns = run_values(ds, names)  # read once, not a Dataset per run
    for i, r in enumerate(run_ids(ds)):
        t = times[i]
        cells = np.stack([columns[n][i] for n in names], -1) if names else np.zeros((t.size, 0))
        runs.append({"run": r, "set": "held-out" if r in held_out else "train", "samples": int(t.size),
                     "t_start": float(t[0]), "t_end": float(t[-1]),
                     "missing_percent": float(100 * np.mean(~np.isfinite(cells))) if cells.size else 0.0})
    variables = pd.DataFrame(
        [{"variable": n, "role": ds[n].attrs.get("role", ""), "units": ds[n].attrs.get("units", ""),
          "long_name": ds[n].attrs.get("long_name", n),
          "min": float(np.nanmin(ds[n].values)), "max": float(np.nanmax(ds[n].values))} for n in names]
    ).set_index("variable")
    return pd.DataFrame(runs).set_index("run"), variables


def _merge(train: xr.Dataset, validation: xr.Dataset | None) -> tuple[xr.Dataset, list[str]]:
    """Training and validation runs in one dataset; returns it and the validation run ids."""
    from sysid.data import from_arrays, input_names, run_ids, run_values, state_names

    if validation is None:
        return train, []
    a, b = run_ids(train), run_ids(validation)
    clash = sorted(set(a) & set(b))
    if clash:
        raise DataError(f"report: validation runs {clash} have the same ids as training runs; rename them.")
    states, inputs = state_names(train), input_names(train)
    missing = [n for n in states + inputs if n not in validation.data_vars]
    if missing:
        raise DataError(f"report: the validation data has no variables {missing}.")
    ta, va = run_values(train, states + inputs)
    tb, vb = run_values(validation, states + inputs)
    merged = from_arrays(
        ta + tb, {n: va[n] + vb[n] for n in states + inputs},
        states=states, inputs=inputs, runs=a + b,
        units={**{n: train[n].attrs.get("units", "") for n in states + inputs},
               "time": train["time"].attrs.get("units", "")},
        long_names={n: train[n].attrs.get("long_name", n) for n in states + inputs},
        attrs={k: v for k, v in train.attrs.items() if k not in ("featureType", "Conventions")},
    )
    return merged, b


def _model_parts(model: Any) -> tuple[Any, pd.DataFrame | None, pd.DataFrame | None, dict[str, Any]]:
    """(model, history, parameters, fit info) from a FitResult or a Model."""
    from sysid.training import FitResult

    if isinstance(model, FitResult):
        info = {"stopped_reason": model.stopped_reason, "message": model.message,
                "best_epoch": model.best_epoch, "solver_stats": model.solver_stats}
        return model.model, model.history, model.parameters, info
    return model, None, None, {}


def report(
    model: Any,
    data: xr.Dataset,
    *,
    out: str | os.PathLike[str],
    reference: Any = None,
    params: Mapping[str, float] | None = None,
    validation: xr.Dataset | None = None,
    held_out: Sequence[str] = (),
    history: pd.DataFrame | None = None,
    parameters: pd.DataFrame | None = None,
    metrics: Mapping[str, Any] | None = None,
    title: str | None = None,
    k: int = 1,
    threshold: float = 0.4,
    settings: Any = None,
    overwrite: bool = False,
    band: xr.Dataset | None = None,
    derived: Any = None,
) -> list[Path]:
    """Write the report of one fit (HTML, Markdown, JSON and figures) into the folder ``out``.

    Parameters
    ----------
    model : FitResult or Model
        The fit (its history and parameter table are used) or a trained model.
    data : xarray.Dataset
        The data it was trained on (all runs; ``held_out`` marks those not trained on).
    out : path
        Output folder (created if missing).
    reference : System or callable, optional
        A reference ODE: adds the comparison of trajectories, vector fields, fixed points, limit
        cycles and parameters.
    params : mapping, optional
        Reference parameter values overriding the system's defaults.
    validation : xarray.Dataset, optional
        Held-out runs in a separate dataset (their ids must differ from the training runs').
    held_out : sequence of str
        Runs of ``data`` not used for training.
    history, parameters : pandas.DataFrame, optional
        Training history and parameter table when ``model`` is not a FitResult.
    metrics : mapping, optional
        Extra JSON-able numbers to carry into ``report.json`` (under ``"extra"``).
    title : str, optional
        Page title.
    k : int
        Horizon of the k-step-ahead metrics and of the residual analysis (1 = one-step, as
        MATLAB's ``resid``).
    threshold : float
        Normalised-error threshold of the valid prediction time.
    settings : sysid.SolverConfig, optional
        Solver settings for every simulation of the report (default ``default_solver("report")``:
        SciPy RK45 with rtol 1e-6, atol 1e-9, far below the model errors a report is about, and
        fast).
    overwrite : bool
        Replace existing report files in ``out``.
    band : xarray.Dataset, optional
        A quantile band over ``data`` from an ensemble (:meth:`sysid.parallel.Ensemble.predict`):
        adds the "Prediction band" section (figure and coverage of the data by the band).
    derived : sysid.analysis.DerivedQuantities, optional
        Fixed points, eigenvalues, cycle period and amplitude across ensemble members or
        bootstrap fits (:func:`sysid.analysis.derived`): adds the "Derived quantities" section
        (each with its interval, distance to the data and extrapolation flag).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    import sysid.analysis as an
    from sysid import plot
    from sysid.data import run_ids, select_runs, state_names

    if not isinstance(data, xr.Dataset):
        raise DataError(f"report: data must be a trajectory dataset (xarray.Dataset, e.g. from "
                        f"sysid.load_csv); got {type(data).__name__}.")
    if not isinstance(out, (str, os.PathLike)):
        raise ConfigError(f"report: out must be a folder path; got {type(out).__name__}.")
    out = Path(out)
    existing = [out / f for f in REPORT_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"report: {[str(p) for p in existing]} already exist; pass overwrite=True to replace them "
            f"or choose another folder."
        )
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"report: k must be a positive integer; got {k!r}.")
    if derived is not None and not isinstance(derived, an.DerivedQuantities):
        raise ConfigError(f"report: derived= must be what sysid.analysis.derived returns (a "
                          f"DerivedQuantities); got {type(derived).__name__}.")
    from sysid.models import Model

    mdl, hist, pars, fit_info = _model_parts(model)
    if not isinstance(mdl, Model):
        raise ConfigError(f"report: model must be a sysid FitResult or Model; got {type(model).__name__}.")
    hist = history if history is not None else hist
    pars = parameters if parameters is not None else pars
    if pars is None and len(mdl.parameter_table()):
        pars = mdl.parameter_table()
    _check_held_out(data, held_out)
    full, val_ids = _merge(data, validation)
    held = list(held_out) + val_ids
    held_set = set(held)
    train = select_runs(full, [r for r in run_ids(full) if r not in held_set]) if held else full
    settings = settings if settings is not None else default_solver("report")
    doc = _Doc(title=title or "sysid fit report")
    doc.data["title"] = doc.title

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", an.ExtrapolationWarning)
        _data_section(doc, full, held)
        _model_section(doc, mdl, pars, fit_info, hist)
        # a FitResult carries the fitted initial states: free runs of training runs start there
        fitted = model if fit_info else mdl
        resolved = _resolve_reference(an, mdl, reference, params) if reference is not None else None
        same_states = resolved is not None and tuple(resolved[1].states) == tuple(mdl.state_names)
        _metrics_sections(doc, an, plot, fitted, full, train, held, k, threshold, settings,
                          ref_dyn=resolved[1] if same_states else None)
        if resolved is not None:
            _reference_sections(doc, an, plot, mdl, fitted, resolved, params, full, train, held, pars,
                                threshold, settings)
        elif len(state_names(full)) >= 2:
            def portrait() -> None:
                shown, sample = _plotted_runs(train, "orbits")
                orbits = an.predict(fitted, _dense_grid(select_runs(train, shown), mdl.input_interpolation),
                                    settings=settings)
                doc.figure("phase_portrait", plot.phase_portrait(mdl, data=train, learned_orbits=orbits),
                           "Phase portrait of the learned field with the model's orbits from the "
                           f"training runs' initial states{sample}")
            doc.section("phase portrait", portrait)
        if band is not None:  # hook: the ensemble band section, defined at the end of this module
            doc.section("prediction band", lambda: _band_section(doc, band, full, held))
        if derived is not None:  # hook: derived quantities with intervals (end of this module)
            doc.section("derived quantities", lambda: _derived_section(doc, derived))
    for w in caught:
        doc.notes.append(f"{w.category.__name__}: {w.message}")
    if doc.notes:
        doc.heading("Warnings and skipped sections")
        for n in doc.notes:
            doc.text(n)
    if metrics:
        doc.data["extra"] = an.jsonable(dict(metrics))
    doc.data["notes"] = list(doc.notes)
    written = _write(doc, out)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    return written


def _data_section(doc: _Doc, full: xr.Dataset, held: list[str]) -> None:
    from sysid.analysis import jsonable

    runs, variables = _data_summary(full, held)
    doc.heading("Data")
    regular, steps = _sampling(full)
    doc.text(f"Source: {full.attrs.get('source', 'arrays')}; {_plural(len(runs), 'run')} "
             f"({len(held)} held out); time unit: {full['time'].attrs.get('units', '') or 'unspecified'}; "
             f"{'regular' if regular else 'irregular'} sampling ({steps}).")
    doc.table(runs)
    doc.table(variables)
    doc.data["data"] = {"runs": jsonable(runs), "variables": jsonable(variables),
                        "source": str(full.attrs.get("source", "arrays"))}


def _model_section(doc: _Doc, mdl: Any, pars: pd.DataFrame | None, fit_info: dict[str, Any],
                   hist: pd.DataFrame | None) -> None:
    from sysid import plot
    from sysid.analysis import jsonable

    doc.heading("Model")
    field_name = type(mdl.field).__name__
    n_weights = int(sum(p.numel() for p in mdl.parameters()))
    doc.text(f"{field_name} over states {list(mdl.state_names)}"
             + (f" with inputs {list(mdl.input_names)}" if mdl.input_names else "")
             + f"; {n_weights} trainable numbers; observed states {list(mdl.observed)}.")
    info = {"field": field_name, "states": list(mdl.state_names), "inputs": list(mdl.input_names),
            "observed": list(mdl.observed), "n_weights": n_weights}
    lines = [f"{name} = {text}" for name, text in _equations_text(mdl).items()]
    if lines:
        info["equations"] = lines
    if mdl.outputs is not None:
        eqs = {n: mdl.outputs.expressions[n].text for n in mdl.output_names}
        lines += [f"{n} = {e}" + (f"   [{u}]" if u else "")
                  for (n, e), u in zip(eqs.items(), mdl.output_units)]
        info["outputs"] = eqs
    if lines:  # the equations as written (an equations file), and the measurement equations
        doc.md += ["```", *lines, "```", ""]
        doc.html.append("<pre>" + html.escape("\n".join(lines)) + "</pre>")
    if pars is not None and len(pars):
        doc.table(pars, index=False)
        info["parameters"] = jsonable(pars)
    doc.data["model"] = info
    if hist is not None and len(hist):
        doc.heading("Training")
        if fit_info:
            doc.text(f"Stopped: {fit_info['stopped_reason']}"
                     + (f" ({fit_info['message']})" if fit_info.get("message") else "")
                     + f"; best epoch {fit_info['best_epoch']}.")
        last = hist.iloc[-1]
        stages = ""
        if "horizon" in hist.columns and hist["horizon"].nunique() > 1:
            hz = hist["horizon"].to_numpy()
            firsts = [int(hz[0])] + [int(h) for a, h in zip(hz[:-1], hz[1:]) if h != a]
            stages = (f" Curriculum: windows of {', '.join(map(str, firsts))} samples in turn (dotted "
                      f"lines in the plot); the loss jumps where the windows lengthen, as longer "
                      f"windows are harder to fit.")
        doc.text(f"{_plural(len(hist), 'epoch')}; final loss {float(last.get('loss', np.nan)):.4g}." + stages)
        cols = [c for c in hist.columns if c in ("loss", "val_nrmse") or "loss" in str(c)]
        doc.section("training curves", lambda: doc.figure(
            "training", plot.training_curves(hist, columns=cols).figure, "Training history"))
        doc.data["training"] = {**jsonable(fit_info), "history": jsonable(hist)}


def _start_states(fitted: Any, mdl: Any, full: xr.Dataset) -> dict[str, list[float]] | None:
    """Per run and state, where the model's free run starts: the fit's estimate for that run where
    it made one, else the first sample, else the model's default. None when some state has no
    value for some run (then the simulation picks its own start)."""
    from sysid.analysis.prediction import fitted_initial_states
    from sysid.data import run_ids, run_values

    est = fitted_initial_states(fitted)
    out: dict[str, list[float]] = {}
    measured = [s_ for s_ in mdl.state_names if s_ in full.data_vars]
    firsts = {n: [v[0] for v in vs] for n, vs in run_values(full, measured)[1].items()}
    estimated = {} if est is None else {  # state -> {run: value}
        s_: dict(zip(map(str, est.index), est[s_].to_numpy(dtype=float))) for s_ in est.columns}
    for s_ in mdl.state_names:
        vals = []
        for i, r in enumerate(run_ids(full)):
            if s_ in estimated and r in estimated[s_]:
                vals.append(float(estimated[s_][r]))
            elif s_ in firsts and np.isfinite(firsts[s_][i]):
                vals.append(float(firsts[s_][i]))
            elif s_ in mdl.latent_initial:
                vals.append(float(mdl.latent_initial[s_]))
            else:
                return None
        out[s_] = vals
    return out


VALID_TIME_NOTE = (
    "Valid prediction time: time from a run's start until the normalised error "
    "E(t) = sqrt(mean_i ((ŷ_i - y_i) / σ_i)²) (σ_i: standard deviation of variable i in the data) "
    "first exceeds {threshold:g}; censored = never exceeded, so the run's duration is a lower "
    "bound. Against measured data the noise of a single sample counts as error, so one noisy "
    "sample can end it early even for a good model"
)


def _metrics_sections(doc: _Doc, an: Any, plot: Any, mdl: Any, full: xr.Dataset, train: xr.Dataset,
                      held: list[str], k: int, threshold: float, settings: Any,
                      ref_dyn: Any = None) -> None:
    """Free-run and k-step sections. ``mdl`` is the FitResult (its fitted initial states start
    the free runs) or the Model; ``ref_dyn``, when given, is also scored against the data from the
    same initial states so that the model's numbers have a yardstick."""
    model = mdl.model if hasattr(mdl, "stopped_reason") else mdl

    def free_run() -> None:
        cmp = an.compare(mdl, full, held_out=held, threshold=threshold,
                         training_data=train if held else None, settings=settings)
        doc.heading("Fit to the data (free run from each run's initial state: fitted where the fit estimated it, else the first sample)")
        doc.text("fit_percent as MATLAB compare: 100 (1 - |y - ŷ| / |y - mean y|); "
                 f"NRMSE = RMSE / {cmp.metrics.attrs['normalise']} of the data.")
        doc.table(cmp.table())
        doc.heading(f"Valid prediction time (normalised error < {threshold:g})", 3)
        valid = cmp.valid_time.copy()
        note = VALID_TIME_NOTE.format(threshold=threshold)
        if ref_dyn is not None:
            start = _start_states(mdl, model, full)
            ref_cmp = an.compare(ref_dyn, full, threshold=threshold, settings=settings, initial=start)
            valid.insert(1, "valid_time_reference", ref_cmp.valid_time["valid_time"])
            note += (f". valid_time_reference is the same measure for the reference {_bare(ref_dyn.name)} "
                     "started from the same initial states: the yardstick for this data's noise.")
        else:
            note += "."
        doc.text(note)
        doc.table(valid)
        from sysid.data import select_runs

        # the figures draw PLOTTED_RUNS runs: only those are simulated densely (10 000 runs at
        # 400 points each cost minutes for 8 panels)
        shown, sample = _plotted_runs(full)
        dense = an.predict(mdl, _dense_grid(select_runs(full, shown), model.input_interpolation),
                           settings=settings)
        doc.figure("trajectories", plot.trajectories(full, dense, runs=shown, held_out=held),
                   "Data (dots) and the free-run model simulated densely (lines); held-out runs "
                   f"shaded{sample}")
        doc.figure("residuals_time", plot.residuals(full, cmp.predicted, runs=shown, held_out=held),
                   f"Free-run residuals (data - model) against time; held-out runs dashed{sample}")
        doc.data["free_run"] = {**cmp.to_dict(), "valid_time": an.jsonable(valid)}

    def k_step() -> None:
        pred = an.predict(mdl, full, k=k, settings=settings)
        m = an.trajectory_metrics(full, pred, held_out=held)
        tab = an.metrics_table(m)
        pooled = tab[tab.index.get_level_values("run").str.startswith("all")]
        doc.heading(f"{k}-step-ahead prediction")
        doc.table(pooled)
        doc.data["k_step"] = {"k": k, "metrics": an.jsonable(tab)}
        doc.heading(f"Residual whiteness ({k}-step residuals, as MATLAB resid)")
        regular, steps = _sampling(full)
        if not regular:
            reason = (f"skipped: the runs are irregularly sampled ({steps}), so a lag of one sample "
                      f"is not a fixed time lag and the autocorrelation test (Ljung-Box, bands "
                      f"±z/√N) does not apply. The residuals-vs-time plot above shows any trend.")
            doc.text(f"Residual whiteness {reason}")
            doc.data["residuals"] = {"skipped": reason}
            return
        acf = an.residual_autocorrelation(full, pred, max_lag=min(25, _min_len(full) // 3 or 1))
        white = an.whiteness_table(acf)
        doc.table(white)
        doc.figure("residuals", plot.residual_autocorrelation(acf),
                   "Residual autocorrelation with 99 % (shaded) and 95 % (dashed) bands")
        doc.data["residuals"] = an.jsonable(white)

    doc.section("free-run metrics", free_run)
    doc.section("k-step metrics", k_step)


#: Runs drawn in the trajectory and residual figures (the tables score every run).
PLOTTED_RUNS = 8


def _plotted_runs(ds: xr.Dataset, what: str = "runs") -> tuple[list[str], str]:
    """The runs the figures draw (the first :data:`PLOTTED_RUNS`) and a caption suffix that says
    so when there are more."""
    from sysid.data import run_ids

    runs = run_ids(ds)
    if len(runs) <= PLOTTED_RUNS:
        return runs, ""
    scored = "; the tables score all of them" if what == "runs" else ""
    return runs[:PLOTTED_RUNS], (f" ({what} of the first {PLOTTED_RUNS} of {len(runs)} runs are "
                                 f"drawn{scored})" if what != "runs" else
                                 f" (the first {PLOTTED_RUNS} of {len(runs)} runs are drawn{scored})")


def _check_held_out(data: xr.Dataset, held_out: Sequence[str]) -> None:
    from sysid.data import run_ids

    known = set(run_ids(data))  # a set: a list per held-out run was quadratic in the runs
    unknown = [r for r in held_out if r not in known]
    if unknown:
        raise DataError(f"report: held_out runs {unknown} are not in the data; runs are {run_ids(data)}.")


def _min_len(ds: xr.Dataset) -> int:
    from sysid.data import run_values

    return min(len(t) for t in run_values(ds)[0])


def _equations_text(mdl: Any) -> dict[str, str]:
    """The right-hand sides of an equations model as written (empty for other models)."""
    from sysid.models import EquationsRhs, PhysicsField

    for module in mdl.field.modules():
        if isinstance(module, PhysicsField) and isinstance(module.fn, EquationsRhs):
            return {f"d{s}/dt": text for s, text in module.fn.texts.items()}
    return {}


def reference_names(mdl: Any, reference: Any) -> tuple[str, ...] | None:
    """The model's state names for a catalogue reference when the model's physics term was built
    from that same system under the data's names (``physics("lotka_volterra", states=[...])``):
    the order is the system's, so the names map one to one. None otherwise."""
    from sysid.models import PhysicsField
    from sysid.systems import System

    if not isinstance(reference, System):
        return None
    name = reference.name
    for module in mdl.field.modules():
        if isinstance(module, PhysicsField) and module.system == name and \
                tuple(module.state_names) == tuple(mdl.state_names):
            return tuple(mdl.state_names)
    return None


def _bare(name: str) -> str:
    """A reference's name without the " (reference)" that marks it in tables."""
    return name.removesuffix(" (reference)")


def _resolve_reference(an: Any, mdl: Any, reference: Any,
                       params: Mapping[str, float] | None) -> tuple[Any, Any]:
    """(the reference as given, a System for a catalogue name; its Dynamics with ``params`` and,
    for a catalogue system the model was built from, the model's state names)."""
    if isinstance(reference, str):  # a catalogue name
        from sysid import systems

        reference = systems.get(reference)
    return reference, an.as_dynamics(reference, params=params, states=reference_names(mdl, reference))


def _units_note(doc: _Doc, system: Any, ref: Any, full: xr.Dataset) -> None:
    """Say so when the reference system writes a state's units differently from the data (the
    parameter units below are the system's)."""
    own = dict(zip(getattr(system, "states", ()), getattr(system, "state_units", ())))
    pairs = []
    for sys_name, name in zip(getattr(system, "states", ()), ref.states):
        data_units = str(full[name].attrs.get("units", "")) if name in full else ""
        if own.get(sys_name) and data_units and own[sys_name] != data_units:
            pairs.append(f"{name}: '{data_units}' in the data, '{own[sys_name]}' in {_bare(ref.name)}")
    if pairs:
        doc.text("Units: " + "; ".join(pairs) + f". Tables below use the data's units; parameter "
                 f"units are written in {_bare(ref.name)}'s.")


def _reference_sections(doc: _Doc, an: Any, plot: Any, mdl: Any, fitted: Any, resolved: tuple[Any, Any],
                        params: Mapping[str, float] | None, full: xr.Dataset, train: xr.Dataset,
                        held: list[str], pars: pd.DataFrame | None, threshold: float,
                        settings: Any) -> None:
    # long: five short report sections written as closures over the same shared state (model,
    # reference, data, settings), each run by doc.section so that one failing section is reported
    # and the others still appear; splitting them out would pass these ten values to each.
    from sysid.data import select_runs
    from sysid.systems import System

    system, ref = resolved
    reference = ref  # the analyses below take the reference with its parameters and names applied
    doc.heading(f"Comparison with {ref.name}")
    if tuple(ref.states) != tuple(mdl.state_names):
        doc.section("reference", lambda: _raise(DataError(
            f"the reference's states {list(ref.states)} differ from the model's {list(mdl.state_names)}; "
            f"compare with a system over the same states (in the same order).")))
        return
    doc.data["reference"] = {"name": ref.name, "params": an.jsonable(dict(params or {}))}
    _units_note(doc, system, ref, full)
    u = {n: 0.0 for n in ref.inputs} or None
    if u:
        doc.text(f"Vector fields, fixed points and cycles are evaluated at zero input ({', '.join(u)} = 0).")

    def trajectories() -> None:
        cmp = an.compare(mdl, reference, data=full, held_out=held, threshold=threshold, params=params,
                         settings=settings)
        doc.heading("Trajectories from the same initial states", 3)
        doc.text(f"Both models start from each run's first sample; here {_bare(ref.name)}'s trajectory "
                 f"takes the place of the data (no measurement noise), so the metrics and the valid "
                 f"prediction time say how long the two dynamics agree, not how well either fits "
                 f"the data.")
        doc.table(cmp.table())
        doc.table(cmp.valid_time)
        shown, sample = _plotted_runs(full)
        dense = an.predict(mdl, _dense_grid(select_runs(full, shown), mdl.input_interpolation),
                           settings=settings)
        doc.figure("reference_trajectories",
                   plot.trajectories(cmp.reference, dense, runs=shown, held_out=held,
                                     data_label="reference", model_label="learned"),
                   f"Reference {_bare(ref.name)} (dots, at the sample times) and the learned model (lines) "
                   f"from the same initial states{sample}")
        doc.data["reference"]["trajectories"] = cmp.to_dict()

    def fields() -> None:
        if ref.n_states < 2:
            return
        fe = an.field_error(mdl, reference, train, params=params, u=u)
        doc.heading("Vector field", 3)
        doc.text("RMS of |f_learned - f_reference| (each state in units of its data std) divided by the "
                 "RMS of the reference field on the data; support = within "
                 f"{fe.grid.attrs['threshold']:g} std units of a training sample.")
        doc.table(fe.summary.to_frame("value"))
        shown, sample = _plotted_runs(train, "orbits")
        drawn = select_runs(train, shown)
        grid = _dense_grid(drawn, mdl.input_interpolation)
        start = _start_states(fitted, mdl, drawn)
        lo = an.predict(fitted, grid, settings=settings)
        ro = an.predict(reference, grid, settings=settings, initial=start)
        doc.figure("phase_portrait", plot.phase_portrait(mdl, reference, data=train, params=params, u=u,
                                                         learned_orbits=lo, reference_orbits=ro),
                   "Learned (left) and reference (right) fields with the training data and each "
                   f"model's orbits from the training runs' initial states{sample}")
        doc.figure("field_error", plot.field_error_map(fe, data=train).figure,
                   "Normalised field error; dashed: edge of the data's support")
        doc.data["reference"]["vector_field"] = fe.to_dict()

    def fixed() -> None:
        table = an.compare_fixed_points(mdl, reference, data=train, params=params, u=u)
        doc.heading("Fixed points", 3)
        n_ref, n_lrn = table.attrs.get("non_isolated_reference", 0), table.attrs.get("non_isolated_learned", 0)
        if n_ref or n_lrn:
            doc.text(f"Continua of equilibria (not isolated points; omitted from the table): "
                     f"{n_ref} roots of the reference and {n_lrn} of the learned field lie on one.")
        if len(table):
            doc.table(table, index=False)
        else:
            doc.text("No fixed point in the data's range (widened by 25 %) for either field.")
        doc.data["reference"]["fixed_points"] = an.jsonable(table)

    def cycles() -> None:
        from sysid.data import get_run, run_ids

        one = get_run(train, run_ids(train)[0])
        # unmeasured states start where the model starts them (its latent_initial)
        y0 = [float(one[s].values[0]) if s in one.data_vars else float(mdl.latent_initial.get(s, 0.0))
              for s in ref.states]
        duration = float(one["time"].values[-1] - one["time"].values[0])
        table = an.compare_limit_cycles(mdl, reference, y0, t_end=6 * duration, u=u, params=params,
                                        settings=settings)
        # the data's spelling of units (the catalogue writes its own)
        table["units"] = [
            str(full["time"].attrs.get("units", "") or un) if q == "period" else
            str(full[q.split(" ", 1)[1]].attrs.get("units", "") or un)
            if q.startswith("amplitude ") and q.split(" ", 1)[1] in full else un
            for q, un in zip(table.index, table["units"])]
        doc.heading("Periodic orbit from the first run's initial state", 3)
        doc.table(table)
        doc.data["reference"]["limit_cycle"] = {"table": an.jsonable(table), **table.attrs}

    def parameters() -> None:
        if pars is None or not len(pars):
            return
        refvals = ({**system.defaults(), **dict(params or {})} if isinstance(system, System)
                   else dict(params or {}))
        units = {p.name: p.units for p in getattr(system, "parameters", ())}
        names = set(map(str, pars["name"] if "name" in pars.columns else pars.index))
        common = {n: v for n, v in refvals.items() if n in names}
        if not common:
            return
        table = an.parameter_table(pars, common)
        table["units"] = [u_ or units.get(n, "") for n, u_ in zip(table.index, table["units"])]
        doc.heading("Recovered parameters", 3)
        doc.table(table)
        doc.figure("parameters", plot.parameter_recovery(table).figure,
                   "Error of each recovered parameter with its 95 % interval")
        doc.data["reference"]["parameters"] = an.jsonable(table)

    for name, build in (("reference trajectories", trajectories), ("vector field", fields),
                        ("fixed points", fixed), ("limit cycle", cycles), ("parameters", parameters)):
        doc.section(name, build)


def _raise(exc: Exception) -> None:
    raise exc


def _write(doc: _Doc, out: Path) -> list[Path]:
    from sysid.analysis import jsonable

    out.mkdir(parents=True, exist_ok=True)
    figdir = out / "figures"
    written: list[Path] = []
    if doc.figures:
        figdir.mkdir(exist_ok=True)
        for name, png in doc.figures.items():
            p = figdir / f"{name}.png"
            _write_atomic(p, png)
            written.append(p)
    title = html.escape(doc.title)
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>"
            f"<style>{_CSS}</style></head><body><h1>{title}</h1>\n" + "\n".join(doc.html) + "\n</body></html>\n")
    md = "\n".join([f"# {doc.title}", "", *doc.md])
    payload = json.dumps(jsonable(doc.data), indent=1, allow_nan=False)
    for name, text in (("report.html", page), ("report.md", md), ("report.json", payload)):
        p = out / name
        _write_atomic(p, text.encode("utf-8"))
        written.append(p)
    return written


__all__ = ["report", "REPORT_FILES", "reference_names"]


# ----------------------------------------------------------------------------------------------
# The ensemble band section (sysid.parallel); kept apart from the single-fit sections above.


def _band_section(doc: _Doc, band: xr.Dataset, full: xr.Dataset, held: list[str]) -> None:
    """Figure of the quantile band over the data, and how much of the data it covers."""
    from sysid import plot
    from sysid.parallel.ensembles import band_coverage

    levels = [float(q) for q in band["quantile"].values]
    lower, upper = levels[0], levels[-1]
    doc.heading("Prediction band")
    doc.text(f"{band.attrs.get('ensemble_members', '?')} ensemble members "
             f"({band.attrs.get('ensemble_kind', '')}); band of {band.attrs.get('band', '')}, "
             f"quantiles {lower:g} to {upper:g}.")
    doc.figure("band", plot.band(full, band, held_out=held),
               f"Ensemble band ({lower:g}-{upper:g} quantiles) and the data")
    rows = {"all runs": band_coverage(full, band, lower=lower, upper=upper).loc["all"]}
    if held:
        rows["held-out runs"] = band_coverage(full, band, lower=lower, upper=upper,
                                              runs=held).loc["all"]
    table = pd.DataFrame(rows).T[["n", "inside", "coverage", "nominal"]]
    doc.table(table)
    doc.data["band"] = {k: {c: float(v) for c, v in r.items()} for k, r in table.iterrows()}


# ----------------------------------------------------------------------------------------------
# Derived quantities with intervals (sysid.analysis.derived); kept apart like the band section.


def _derived_section(doc: _Doc, derived: Any) -> None:
    """The table of fixed points, eigenvalues, period and amplitude with their intervals."""
    doc.heading("Derived quantities")
    tab = derived.table
    kind = ("a percentile confidence interval" if "bootstrap" in derived.source
            or "draws" in derived.source else
            "the spread over the members, not a confidence interval")
    doc.text(f"From {derived.n_members} members ({derived.source}; {derived.n_failed} left out): "
             f"estimate and central {100 * derived.level:g} % interval over the members "
             f"({kind}). distance_to_data is in data-std units; beyond the support the learned "
             "field is an extrapolation.")
    flagged = tab[tab["extrapolation"] & tab["kind"].isin(["fixed point", "period"])]
    if len(flagged):
        doc.text("Extrapolation: " + ", ".join(flagged.index) + " lie outside the data's support.")
    if tab.empty:
        doc.text("No fixed point or limit cycle was found in any member.")
    else:
        cols = ["estimate", "low", "high", "n_members", "units", "distance_to_data",
                "extrapolation", "note"]
        doc.table(tab[cols])
    doc.data["derived"] = derived.to_dict()
