"""Figures for judging learned dynamics (matplotlib; nothing here changes any data).

Every function returns a :class:`matplotlib.figure.Figure` (or draws into given Axes and returns
them), built without pyplot's global state, so it renders headless and in notebooks alike. Axis
labels read ``long_name`` and ``units`` from the datasets' attrs: ``"prey [thousands]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sysid.errors import ConfigError, DataError

STABILITY_STYLE = {
    # marker, filled
    "stable node": ("o", True),
    "stable focus": ("o", True),
    "stable": ("o", True),
    "unstable node": ("o", False),
    "unstable focus": ("o", False),
    "unstable": ("o", False),
    "saddle": ("X", True),
    "centre": ("D", False),
    "non-hyperbolic": ("s", False),
}
HELD_OUT_COLOUR = "#fff4e0"


def label(attrs: Mapping[str, Any], name: str) -> str:
    """``"long_name [units]"`` from attrs (just the name when units are empty).

    Examples
    --------
    >>> label({"long_name": "prey", "units": "thousands"}, "prey")
    'prey [thousands]'
    >>> label({}, "x")
    'x'
    """
    long_name = str(attrs.get("long_name") or name)
    units = str(attrs.get("units") or "")
    return f"{long_name} [{units}]" if units else long_name


def _var_label(ds: xr.Dataset, name: str) -> str:
    return label(ds[name].attrs if name in ds.variables else {}, name)


def _wrap(text: str, width: int = 26) -> str:
    """Break a long axis label onto lines of at most ``width`` characters (at spaces), so that a
    label such as "snowshoe hare pelts [thousand pelts]" fits beside a short panel instead of
    being clipped at the figure's edge."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False)) or text


def _time_label(ds: xr.Dataset) -> str:
    return label(ds["time"].attrs, "time")


def trajectories(
    data: xr.Dataset,
    predicted: xr.Dataset | None = None,
    *,
    runs: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
    held_out: Sequence[str] = (),
    max_runs: int = 8,
    model_label: str = "model",
    data_label: str = "data",
) -> Figure:
    """Measured samples (markers) and model trajectories (lines): one row per run, one column per
    variable. Held-out runs are titled "(held-out)" and shaded.

    Parameters
    ----------
    data : xarray.Dataset
        The samples drawn as markers (measurements, or a reference simulation).
    predicted : xarray.Dataset, optional
        Trajectories drawn as lines, on any time grid (pass a dense simulation for smooth curves;
        the report simulates each run on at least 400 points).
    runs, variables : sequence of str, optional
        What to draw (default: the first ``max_runs`` runs, every state).
    held_out : sequence of str
        Runs shaded and titled as held out.
    model_label, data_label : str
        Legend entries of the lines and the markers (e.g. "learned" and "reference" when the
        markers are a reference model's trajectory rather than measurements).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from sysid.data import get_run, run_ids, state_names

    all_runs = run_ids(data)
    runs = list(runs) if runs is not None else all_runs[:max_runs]
    bad = [r for r in runs if r not in all_runs]
    if bad:
        raise DataError(f"trajectories: runs {bad} are not in the data; runs are {all_runs}.")
    names = list(variables) if variables is not None else state_names(data)
    missing = [n for n in names if n not in data.data_vars]
    if missing:
        raise DataError(f"trajectories: variables {missing} are not in the data ({list(data.data_vars)}).")
    fig = Figure(figsize=(3.8 * len(names), 2.6 * len(runs)), layout="constrained")
    axs = fig.subplots(len(runs), len(names), squeeze=False, sharex="row")
    pred_runs = set(run_ids(predicted)) if predicted is not None else set()
    for i, r in enumerate(runs):
        d = get_run(data, r)
        p = get_run(predicted, r) if r in pred_runs else None
        for j, n in enumerate(names):
            ax = axs[i, j]
            ax.plot(d["time"].values, d[n].values, "o", ms=3, color="0.35", label=data_label)
            if p is not None and n in p:
                ax.plot(p["time"].values, p[n].values, "-", lw=1.5, color="C0", label=model_label)
            ax.set_ylabel(_wrap(_var_label(data, n)))
            ax.set_xlabel(_wrap(_time_label(data), 40))
            title = str(r) + (" (held-out)" if r in held_out else "")
            ax.set_title(title, fontsize=9)
            if r in held_out:
                ax.set_facecolor(HELD_OUT_COLOUR)
    axs[0, 0].legend(fontsize=8)
    return fig


def _plane(
    dyn_ref: Any,
    data: xr.Dataset | None,
    axes: tuple[str, str] | None,
    bounds: Mapping[str, tuple[float, float]] | None,
    n: int,
    fixed: Mapping[str, float] | None,
) -> tuple[tuple[str, str], np.ndarray, np.ndarray, np.ndarray]:
    from sysid.analysis.fixed_points import state_box

    names = dyn_ref.states
    if len(names) < 2:
        raise ConfigError("phase_portrait: a phase plane needs two states; the system has one.")
    pair = tuple(axes) if axes is not None else (names[0], names[1])
    if len(pair) != 2 or any(a not in names for a in pair) or pair[0] == pair[1]:
        raise ConfigError(f"phase_portrait: axes must be two different states of {list(names)}; got {list(pair)}.")
    box = state_box(list(pair), bounds=bounds, data=data)
    gx, gy = np.linspace(*box[0], n), np.linspace(*box[1], n)
    X, Y = np.meshgrid(gx, gy)
    base = np.zeros(len(names))
    for k, s in enumerate(names):
        if fixed is not None and s in fixed:
            base[k] = float(fixed[s])
        elif data is not None and s in data:
            base[k] = float(np.nanmean(data[s].values))
    pts = np.tile(base, (X.size, 1))
    pts[:, names.index(pair[0])] = X.ravel()
    pts[:, names.index(pair[1])] = Y.ravel()
    return pair, gx, gy, pts


def phase_portrait(
    learned: Any,
    reference: Any = None,
    *,
    data: xr.Dataset | None = None,
    axes: tuple[str, str] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    n: int = 30,
    fixed: Mapping[str, float] | None = None,
    fixed_points: bool = True,
    t: float = 0.0,
    u: Mapping[str, float] | Sequence[float] | None = None,
    params: Mapping[str, float] | None = None,
    learned_orbits: xr.Dataset | None = None,
    reference_orbits: xr.Dataset | None = None,
) -> Figure:
    """Stream lines of the learned field, and of the reference beside it, with the data on top.

    Parameters
    ----------
    learned : Model, FitResult, System, Dynamics or callable
        The learned dynamics (a callable takes the reference's state names).
    reference : optional
        The reference dynamics (a second panel).
    data : xarray.Dataset, optional
        Trajectories drawn over the stream lines (and the plot range, widened by 25 %).
    axes : (str, str), optional
        The two states of the plane (others at ``fixed`` or their data mean).
    bounds : mapping, optional
        Plot range per state.
    fixed_points : bool
        Mark each field's fixed points with their stability (two-state systems).
    learned_orbits, reference_orbits : xarray.Dataset, optional
        Simulated trajectories (sysid schema, any time grid) drawn as lines over the learned and
        the reference panel: the orbit each model actually follows from the data's initial states,
        which a stream plot alone does not show.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per field; titles "learned" and "reference".
    """
    from sysid.analysis.dynamics import as_dynamics
    from sysid.analysis.fixed_points import find_fixed_points

    ref = as_dynamics(reference, params=params) if reference is not None else None
    lrn = as_dynamics(learned, states=ref.states if ref is not None else None)
    pair, gx, gy, pts = _plane(ref or lrn, data, axes, bounds, n, fixed)
    fields = [("learned", lrn)] + ([("reference", ref)] if ref is not None else [])
    fig = Figure(figsize=(4.6 * len(fields), 4.2), layout="constrained")
    axs = fig.subplots(1, len(fields), squeeze=False, sharex=True, sharey=True)[0]
    i, j = lrn.states.index(pair[0]), lrn.states.index(pair[1])
    for ax, (title, dyn) in zip(axs, fields):
        uc = dyn.constant_inputs(u, purpose="phase portraits")
        f = dyn(t, pts, uc)
        U = f[:, i].reshape(gy.size, gx.size)
        V = f[:, j].reshape(gy.size, gx.size)
        speed = np.hypot(U, V)
        ax.streamplot(gx, gy, U, V, color=speed, cmap="Blues", density=0.9, linewidth=0.8, arrowsize=0.8)
        if data is not None and pair[0] in data.data_vars and pair[1] in data.data_vars:
            from sysid.data import run_values

            # every run's samples in one call (markers only: no line joins the runs)
            cols = run_values(data, pair)[1]
            ax.plot(np.concatenate(cols[pair[0]]), np.concatenate(cols[pair[1]]), ".", ms=2.5,
                    color="C1", label="data")
        orbits = learned_orbits if title == "learned" else reference_orbits
        if orbits is not None:
            _draw_orbits(ax, orbits, pair, f"{'model' if title == 'learned' else 'reference'} orbit")
        if fixed_points and dyn.n_states == 2:
            bnd = {pair[0]: (gx[0], gx[-1]), pair[1]: (gy[0], gy[-1])}
            fp = find_fixed_points(dyn, bounds=bnd, n_seeds=32, t=t, u=uc)
            if len(fp):
                draw_fixed_points(fp, ax=ax, axes=pair)
        ax.set_xlim(gx[0], gx[-1])
        ax.set_ylim(gy[0], gy[-1])
        ax.set_title(title)
        ax.set_xlabel(_state_label(data, dyn, pair[0]))
        ax.set_ylabel(_state_label(data, dyn, pair[1]))
    if data is not None or learned_orbits is not None:
        axs[0].legend(fontsize=8, loc="upper right")
    return fig


def _draw_orbits(ax: Axes, orbits: xr.Dataset, pair: tuple[str, str], name: str) -> None:
    """Each run of ``orbits`` as a line in the plane ``pair`` (one legend entry)."""
    from sysid.data import run_values

    missing = [a for a in pair if a not in orbits.data_vars]
    if missing:
        raise DataError(f"phase_portrait: the orbits have no variables {missing}; they have "
                        f"{list(orbits.data_vars)}.")
    cols = run_values(orbits, pair)[1]
    for k in range(len(cols[pair[0]])):
        ax.plot(cols[pair[0]][k], cols[pair[1]][k], "-", lw=1.3, color="C3", alpha=0.9,
                label=name if k == 0 else None, zorder=4)


def _state_label(data: xr.Dataset | None, dyn: Any, name: str) -> str:
    if data is not None and name in data:
        return _var_label(data, name)
    return label({"units": dyn.state_units[dyn.states.index(name)]}, name)


def draw_fixed_points(table: pd.DataFrame, *, ax: Axes | None = None, axes: tuple[str, str] | None = None) -> Axes:
    """Mark fixed points (from :func:`sysid.analysis.find_fixed_points`) by stability class.

    Stable: filled circle; unstable: open circle; saddle: cross; centre: open diamond;
    non-hyperbolic: open square. One legend entry per class present.
    """
    names = list(table.attrs.get("states") or [c for c in table.columns[:2]])
    pair = tuple(axes) if axes is not None else (names[0], names[1])
    missing = [a for a in pair if a not in table.columns]
    if missing:
        raise DataError(f"draw_fixed_points: the table has no columns {missing}.")
    if ax is None:
        ax = Figure(figsize=(4.4, 4.0), layout="constrained").subplots()
        ax.set_xlabel(pair[0])
        ax.set_ylabel(pair[1])
    for cls, group in table.groupby("stability", sort=True):
        marker, filled = STABILITY_STYLE.get(str(cls), ("*", True))
        ax.plot(group[pair[0]], group[pair[1]], linestyle="none", marker=marker, ms=9,
                markeredgecolor="k", markerfacecolor="k" if filled else "white", label=str(cls), zorder=5)
    return ax


def field_error_map(comparison: Any, *, ax: Axes | None = None, data: xr.Dataset | None = None) -> Axes:
    """Heat map of the normalised field error (from :func:`sysid.analysis.field_error`), the
    support boundary as a dashed contour and, optionally, the data.

    Returns
    -------
    matplotlib.axes.Axes
    """
    grid = comparison.grid
    err = grid["normalised_error"]
    ydim, xdim = err.dims
    if ax is None:
        ax = Figure(figsize=(5.2, 4.2), layout="constrained").subplots()
    x, y = grid[xdim].values, grid[ydim].values
    mesh = ax.pcolormesh(x, y, err.values, shading="auto", cmap="magma_r")
    ax.figure.colorbar(mesh, ax=ax, label=label(err.attrs, "normalised error"))
    ax.contour(x, y, grid["inside"].values.astype(float), levels=[0.5], colors="C0", linestyles="--")
    if data is not None:
        ax.plot(data[xdim].values.ravel(), data[ydim].values.ravel(), ".", ms=2, color="C0", label="data")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel(label(grid[xdim].attrs, xdim))
    ax.set_ylabel(label(grid[ydim].attrs, ydim))
    s = comparison.summary
    ax.set_title(f"field error: {s['inside_support']:.3g} on the data, {s['outside_support']:.3g} off it",
                 fontsize=9)
    return ax


def training_curves(
    history: pd.DataFrame, *, ax: Axes | None = None, columns: Sequence[str] | None = None, logy: bool = True
) -> Axes:
    """Loss curves from a fit's history: x is the ``epoch`` column (or the index).

    By default every numeric column whose name contains "loss" is drawn; NaN entries (epochs a
    column was not computed, e.g. ``val_nrmse``) are skipped, sparse columns get markers, and a
    column with no value at all (``val_nrmse`` of a fit without validation data) is left out of
    the plot and its legend. When the history has a ``horizon`` column, each change of curriculum
    stage is a dotted vertical line labelled with the new horizon (in samples), so the jumps of
    the loss where the windows lengthen read as what they are.
    """
    if not isinstance(history, pd.DataFrame) or history.empty:
        raise DataError("training_curves: history must be a non-empty pandas DataFrame (FitResult.history).")
    cols = list(columns) if columns is not None else [
        c for c in history.columns if "loss" in str(c).lower() and pd.api.types.is_numeric_dtype(history[c])
    ]
    missing = [c for c in cols if c not in history.columns]
    if missing or not cols:
        raise DataError(
            f"training_curves: columns {missing or 'with loss in the name'} not in the history; "
            f"it has {list(history.columns)}. Pass columns=[...]."
        )
    x = history["epoch"].to_numpy() if "epoch" in history.columns else history.index.to_numpy()
    if ax is None:
        ax = Figure(figsize=(5.2, 3.4), layout="constrained").subplots()
    drawn = []
    for c in cols:
        y = history[c].to_numpy(dtype=float)
        ok = np.isfinite(y)  # columns scored every few epochs (val_nrmse) are NaN in between
        if not ok.any():
            continue  # never computed: no curve, so no legend entry either
        ax.plot(x[ok], y[ok], marker="o" if ok.sum() < 0.5 * len(y) else None, ms=3, label=str(c))
        drawn.append(c)
    vals = history[drawn].to_numpy(dtype=float)
    if logy and drawn and np.all(vals[np.isfinite(vals)] > 0):
        ax.set_yscale("log")
    if "horizon" in history.columns and len(history) > 1:
        _mark_stages(ax, x, history["horizon"].to_numpy())
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if drawn:
        ax.legend(fontsize=8, loc="best")
    return ax


def _mark_stages(ax: Axes, x: np.ndarray, horizon: np.ndarray) -> None:
    """Dotted lines where the curriculum horizon changes, labelled "horizon N"."""
    change = np.flatnonzero(horizon[1:] != horizon[:-1]) + 1
    if change.size == 0:
        return
    trans = ax.get_xaxis_transform()  # x in data units, y in axes units
    for i in [0, *change]:
        if i:
            ax.axvline(x[i], color="0.5", lw=0.8, ls=":")
        ax.text(x[i], 0.97, f"horizon {horizon[i]:g} ", transform=trans, fontsize=7, va="top",
                ha="left" if i == 0 else "right", rotation=90, color="0.3")


def residuals(
    data: xr.Dataset,
    predicted: xr.Dataset,
    *,
    runs: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
    held_out: Sequence[str] = (),
    max_runs: int = 8,
) -> Figure:
    """Residuals ``data - predicted`` against time: one panel per variable, one colour per run.

    A good model leaves residuals that scatter around zero with no trend or slow wave; a drift or
    an oscillation shows what the model misses and when (the autocorrelation plot shows the same
    only for evenly sampled runs). ``predicted`` must hold the data's sample times (e.g.
    :func:`sysid.analysis.predict` or ``Comparison.predicted``). Held-out runs are dashed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from sysid.data import get_run, run_ids, state_names

    all_runs = run_ids(data)
    runs = list(runs) if runs is not None else all_runs[:max_runs]
    bad = [r for r in runs if r not in all_runs or r not in run_ids(predicted)]
    if bad:
        raise DataError(f"residuals: runs {bad} are not in both the data and the prediction; the "
                        f"data has {all_runs}, the prediction {run_ids(predicted)}.")
    names = list(variables) if variables is not None else [
        n for n in state_names(data) if n in predicted.data_vars]
    missing = [n for n in names if n not in data.data_vars or n not in predicted.data_vars]
    if missing or not names:
        raise DataError(f"residuals: variables {missing or names} are not in both the data and the "
                        f"prediction.")
    fig = Figure(figsize=(3.8 * len(names), 2.8), layout="constrained")
    axs = fig.subplots(1, len(names), squeeze=False)[0]
    for k, r in enumerate(runs):
        d, p = get_run(data, r), get_run(predicted, r)
        if d.sizes["time"] != p.sizes["time"] or not np.allclose(d["time"].values, p["time"].values):
            raise DataError(f"residuals: run {r!r} of the prediction is not on the data's sample "
                            f"times; predict on the data (sysid.analysis.predict(model, data)).")
        for ax, n in zip(axs, names):
            e = d[n].values - p[n].values
            ok = np.isfinite(e)
            ax.plot(d["time"].values[ok], e[ok], marker="o" if ok.sum() < 200 else None, ms=2.5,
                    lw=0.8, color=f"C{k % 10}", ls="--" if r in held_out else "-",
                    label=str(r) + (" (held-out)" if r in held_out else ""))
    for ax, n in zip(axs, names):
        ax.axhline(0.0, color="k", lw=0.7)
        ax.set_xlabel(_wrap(_time_label(data), 40))
        ax.set_ylabel(_wrap(f"residual of {_var_label(data, n)}"))
    if 1 < len(runs) <= 8:
        axs[0].legend(fontsize=7)
    return fig


def residual_autocorrelation(acf: xr.Dataset, *, run: str = "all") -> Figure:
    """Residual autocorrelation per variable (stems) with the 99 % band shaded and the 95 % band
    dashed, as MATLAB's ``resid``. ``acf`` is from :func:`sysid.analysis.residual_autocorrelation`.
    """
    runs = [str(r) for r in acf["run"].values]
    if run not in runs:
        raise DataError(f"residual_autocorrelation: no run {run!r}; runs are {runs}.")
    sel = acf.sel(run=run)
    names = [str(v) for v in acf["variable"].values]
    fig = Figure(figsize=(3.8 * len(names), 3.0), layout="constrained")
    axs = fig.subplots(1, len(names), squeeze=False)[0]
    lags = acf["lag"].values
    for ax, n in zip(axs, names):
        r = sel["autocorrelation"].sel(variable=n).values
        b99, b95 = float(sel["bound_99"]), float(sel["bound_95"])
        ax.fill_between([lags[0], lags[-1]], -b99, b99, color="C0", alpha=0.15, label="99 % band")
        ax.hlines([-b95, b95], lags[0], lags[-1], colors="C0", linestyles="--", lw=0.8, label="95 % band")
        ax.vlines(lags, 0, r, colors="k", lw=1.2)
        ax.plot(lags, r, "o", ms=3, color="k", label="autocorrelation")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xlabel(label(acf["lag"].attrs, "lag"))
        ax.set_ylabel(f"autocorrelation of {n} residual")
        ax.set_title(f"{n} ({run})", fontsize=9)
    axs[0].legend(fontsize=7)
    return fig


def parameter_recovery(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Bars of the % error of each recovered parameter with 95 % error bars (1.96 stderr).

    Without reference values the bars are the values themselves with their 95 % error bars.
    ``table`` is from :func:`sysid.analysis.parameter_table`.
    """
    need = {"value", "reference", "stderr"}
    if not need <= set(table.columns):
        raise DataError(f"parameter_recovery: the table needs columns {sorted(need)}; it has {list(table.columns)}.")
    if ax is None:
        ax = Figure(figsize=(1.0 + 0.8 * len(table), 3.4), layout="constrained").subplots()
    names = [str(i) for i in table.index]
    x = np.arange(len(names))
    se = table["stderr"].to_numpy(dtype=float)
    if table["reference"].notna().all():
        ref = np.abs(table["reference"].to_numpy(dtype=float))
        y = 100.0 * (table["value"].to_numpy(dtype=float) - table["reference"].to_numpy(dtype=float)) / ref
        yerr = 100.0 * 1.959963984540054 * se / ref
        ax.set_ylabel("error vs reference [%]")
        ax.axhline(0.0, color="k", lw=0.8)
    else:
        y = table["value"].to_numpy(dtype=float)
        yerr = 1.959963984540054 * se
        ax.set_ylabel("value")
    ax.bar(x, y, color="C0", alpha=0.8)
    ok = np.isfinite(yerr)
    if ok.any():
        ax.errorbar(x[ok], y[ok], yerr=yerr[ok], fmt="none", ecolor="k", capsize=4, label="95 % interval")
        ax.legend(fontsize=8)
    units = table["units"] if "units" in table.columns else pd.Series("", index=table.index)
    ax.set_xticks(x, [f"{n} [{u}]" if u else n for n, u in zip(names, units.astype(str))], rotation=30, ha="right")
    ax.set_xlabel("parameter")
    return ax


# ----------------------------------------------------------------------------------------------
# Ensemble bands (sysid.parallel)


def band(
    data: xr.Dataset | None,
    band: xr.Dataset,
    *,
    runs: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
    lower: float | None = None,
    upper: float | None = None,
    held_out: Sequence[str] = (),
    after: float | None = None,
    max_runs: int = 8,
    inner: xr.Dataset | None = None,
) -> Figure:
    """An ensemble's quantile band (shaded), its median (line) and the data (markers).

    Parameters
    ----------
    data : xarray.Dataset or None
        Measurements to draw over the band (None: the band alone).
    band : xarray.Dataset
        A band with a ``quantile`` dimension (:meth:`sysid.parallel.Ensemble.predict` or
        ``.simulate``).
    runs, variables : sequence of str, optional
        Which runs (rows, default the first ``max_runs``) and variables (columns, default the
        band's states).
    lower, upper : float, optional
        Quantile levels of the band's edges (default its lowest and highest).
    held_out : sequence of str
        Runs not trained on (titled and shaded as in :func:`trajectories`).
    after : float, optional
        Shade times after this (a held-out end of every run, e.g. the last training year).
    inner : xarray.Dataset, optional
        A second, narrower band drawn darker on top (e.g. the trajectory band inside the
        observation band).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from sysid.data import run_ids, state_names

    if "quantile" not in band.dims:
        raise DataError("band: the dataset has no 'quantile' dimension; pass the result of "
                        "Ensemble.predict or Ensemble.simulate.")
    levels = [float(q) for q in band["quantile"].values]
    lo = levels[0] if lower is None else lower
    hi = levels[-1] if upper is None else upper
    for q in (lo, hi):
        if not any(abs(q - v) < 1e-12 for v in levels):
            raise DataError(f"band: quantile {q} is not in the band (it has {levels}).")
    all_runs = run_ids(band)
    runs = list(runs) if runs is not None else all_runs[:max_runs]
    bad = [r for r in runs if r not in all_runs]
    if bad:
        raise DataError(f"band: runs {bad} are not in the band; its runs are {all_runs}.")
    names = list(variables) if variables is not None else [
        n for n in state_names(band) if "quantile" in band[n].dims
        and (data is None or n in data.data_vars)]
    if not names:
        raise DataError("band: no state variable of the band has a 'quantile' dimension.")
    fig = Figure(figsize=(3.6 * len(names), 2.4 * len(runs)), layout="constrained")
    axs = fig.subplots(len(runs), len(names), squeeze=False, sharex="row")
    data_runs = set(run_ids(data)) if data is not None else set()
    for i, r in enumerate(runs):
        b = band.sel(trajectory=r)
        t = b["time"].values
        ok = np.isfinite(t)
        for j, n in enumerate(names):
            ax = axs[i, j]
            for ds, alpha, tag in ((band, 0.25, "band"), (inner, 0.35, "inner band")):
                if ds is None:
                    continue
                v = ds[n].sel(trajectory=r)
                ax.fill_between(t[ok], v.sel(quantile=lo, method="nearest").values[ok],
                                v.sel(quantile=hi, method="nearest").values[ok], color="C0",
                                alpha=alpha, lw=0, label=f"{tag} {lo:g}-{hi:g}")
            if any(abs(v - 0.5) < 1e-12 for v in levels):
                ax.plot(t[ok], b[n].sel(quantile=0.5, method="nearest").values[ok], "-", color="C0",
                        lw=1.5, label="median")
            if r in data_runs and n in data.data_vars:
                d = data.sel(trajectory=r)
                ax.plot(d["time"].values, d[n].values, "o", ms=3, color="0.2", label="data")
            if after is not None:
                ax.axvspan(after, float(np.nanmax(t)), color=HELD_OUT_COLOUR, zorder=0)
            ax.set_ylabel(_var_label(band, n))
            ax.set_xlabel(_time_label(band))
            ax.set_title(str(r) + (" (held-out)" if r in held_out else ""), fontsize=9)
            if r in held_out:
                ax.set_facecolor(HELD_OUT_COLOUR)
    axs[0, 0].legend(fontsize=8)
    return fig


def profile(result: Any, *, names: Sequence[str] | None = None) -> Figure:
    """Profile likelihood of each parameter: the rise of the objective above its minimum (dots,
    line) against the parameter, the threshold of the interval (dashed), the interval's ends
    (vertical lines) and the quadratic the Jacobian standard error implies (dotted).

    ``result`` is from :func:`sysid.analysis.profile`.
    """
    table = result.table
    names = list(names) if names is not None else result.names
    bad = [n for n in names if n not in result.names]
    if bad:
        raise DataError(f"profile: no profile of {bad}; profiled parameters are {result.names}.")
    fig = Figure(figsize=(3.6 * len(names), 3.2), layout="constrained")
    axs = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axs, names):
        pts = table[(table["name"] == name) & np.isfinite(table["delta"])].sort_values("value")
        row = result.intervals.loc[name]
        ax.plot(pts["value"], pts["delta"].clip(lower=0.0), "-o", ms=3, color="C0",
                label="profile")
        est, se = float(row["estimate"]), float(row["stderr"])
        if np.isfinite(se) and se > 0 and len(pts):
            grid = np.linspace(float(pts["value"].min()), float(pts["value"].max()), 200)
            quad = result.threshold * ((grid - est) / (result.quantile * se)) ** 2
            ax.plot(grid, quad, ":", color="0.4", label="Jacobian (quadratic)")
        ax.axhline(result.threshold, color="C3", ls="--", lw=0.8,
                   label=f"{100 * result.level:g} % threshold")
        for side in ("lower", "upper"):
            if row[f"{side}_status"] == "found":
                ax.axvline(float(row[side]), color="C3", lw=0.8)
        ax.plot([est], [0.0], "k^", ms=6, label="estimate")
        top = max(2.0 * result.threshold, 1.0)
        ax.set_ylim(-0.05 * top, top)
        ax.set_xlabel(name)
        ax.set_ylabel("objective rise (deviance)")
        flag = "" if bool(row["identifiable"]) else " (not identifiable)"
        ax.set_title(f"{name}{flag}", fontsize=9)
    axs[0].legend(fontsize=7)
    return fig


__all__ = [
    "label",
    "trajectories",
    "phase_portrait",
    "draw_fixed_points",
    "field_error_map",
    "training_curves",
    "residuals",
    "residual_autocorrelation",
    "parameter_recovery",
    "band",
    "profile",
]
