"""Figures render headless and carry the right content (labels with units, lines, markers, bands)."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

import sysid.systems as systems
from sysid import plot
from sysid.analysis import (
    field_error,
    find_fixed_points,
    parameter_table,
    predict,
    residual_autocorrelation,
)
from sysid.errors import ConfigError, DataError

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def lv_data():
    return systems.make_dataset("lotka_volterra", n_runs=3, n_obs=60, noise=0.05, seed=3)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_label_reads_long_name_and_units():
    assert plot.label({"long_name": "angle", "units": "rad"}, "theta") == "angle [rad]"
    assert plot.label({"units": ""}, "theta") == "theta"


def test_trajectories_content(lv_data):
    lv = systems.get("lotka_volterra")
    pred = predict(lv, lv_data)
    fig = plot.trajectories(lv_data, pred, held_out=["run2"])
    axs = fig.axes
    assert len(axs) == 3 * 2  # runs x states
    assert axs[0].get_ylabel() == "prey [thousands]" and axs[1].get_ylabel() == "predator [thousands]"
    assert axs[0].get_xlabel() == "time [year]"
    for ax in axs:
        assert len(ax.get_lines()) == 2  # data markers + model line
    data_line, model_line = axs[0].get_lines()
    assert data_line.get_linestyle() == "None" and data_line.get_marker() == "o"
    np.testing.assert_allclose(model_line.get_ydata(), pred["prey"].values[0, :60])
    assert axs[4].get_title() == "run2 (held-out)" and axs[0].get_title() == "run0"
    assert axs[4].get_facecolor() != axs[0].get_facecolor()
    assert _png(fig).startswith(b"\x89PNG")
    with pytest.raises(DataError, match=r"runs \['zz'\] are not in the data"):
        plot.trajectories(lv_data, runs=["zz"])


def test_phase_portrait_side_by_side_with_fixed_points(lv_data):
    lv = systems.get("lotka_volterra")
    learned = lv.numpy_rhs({"a": 0.6})
    fig = plot.phase_portrait(learned, lv, data=lv_data)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["learned", "reference"]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "prey [thousands]" and ax.get_ylabel() == "predator [thousands]"
    # stream lines are a LineCollection; the data are the 3 runs' dots in one line (one call
    # for any number of runs); 2 fixed-point classes
    assert any(type(c).__name__ == "LineCollection" for c in ax.collections)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels.count("data") == 1 and not [lb for lb in labels if lb.startswith("_")]
    dots = ax.get_lines()[labels.index("data")]
    np.testing.assert_array_equal(dots.get_xdata()[np.isfinite(dots.get_xdata())],
                                  lv_data["prey"].values[np.isfinite(lv_data["prey"].values)])
    assert {"saddle", "centre"} <= set(labels)
    _png(fig)
    with pytest.raises(ConfigError, match="axes must be two different states"):
        plot.phase_portrait(learned, lv, data=lv_data, axes=("prey", "prey"))


def test_field_error_map_and_fixed_points(lv_data):
    lv = systems.get("lotka_volterra")
    comp = field_error(lv.numpy_rhs({"a": 0.6}), lv, lv_data, n=21)
    ax = plot.field_error_map(comp, data=lv_data)
    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    assert ax.get_xlabel() == "prey [thousands]"
    cbar_ax = ax.figure.axes[1]
    assert cbar_ax.get_ylabel() == "normalised field error [1]"
    fp = find_fixed_points(lv, bounds={"prey": (-5, 80), "predator": (-5, 50)})
    ax2 = plot.draw_fixed_points(fp)
    markers = {ln.get_label(): ln.get_marker() for ln in ax2.get_lines()}
    assert markers == {"centre": "D", "saddle": "X"}


def test_training_curves():
    h = pd.DataFrame({"epoch": np.arange(1, 21), "train_loss": np.geomspace(1, 1e-3, 20),
                      "val_loss": np.geomspace(2, 1e-2, 20), "lr": 1e-3})
    ax = plot.training_curves(h)
    assert [ln.get_label() for ln in ax.get_lines()] == ["train_loss", "val_loss"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), np.arange(1, 21))
    sparse = h.assign(val_nrmse=np.where(np.arange(20) % 5 == 4, 0.1, np.nan))
    ax = plot.training_curves(sparse, columns=["train_loss", "val_nrmse"])
    val = ax.get_lines()[1]
    np.testing.assert_array_equal(val.get_xdata(), [5, 10, 15, 20])  # NaN epochs skipped
    assert val.get_marker() == "o"
    with pytest.raises(DataError, match="columns .* not in the history"):
        plot.training_curves(h, columns=["nope"])


def test_residual_autocorrelation_plot(lv_data):
    lv = systems.get("lotka_volterra")
    acf = residual_autocorrelation(lv_data, predict(lv, lv_data, k=1), max_lag=10)
    fig = plot.residual_autocorrelation(acf)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # 99 % band
    assert ax.get_xlabel() == "lag [samples]"
    stems = [c for c in ax.collections if type(c).__name__ == "LineCollection"]
    assert len(stems[-1].get_segments()) == 11  # lags 0..10
    with pytest.raises(DataError, match="no run 'x'"):
        plot.residual_autocorrelation(acf, run="x")


def test_parameter_recovery_bars():
    lv = systems.get("lotka_volterra")
    tab = parameter_table({"a": 0.605, "b": 0.028, "c": 0.8, "d": 0.0228}, lv,
                          stderr={"a": 0.01, "b": 0.001, "c": 0.02, "d": 0.001})
    ax = plot.parameter_recovery(tab)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [10.0, 0.0, 0.0, -5.0], atol=1e-9)  # % errors
    assert ax.get_xticklabels()[0].get_text() == "a [1/year]"
    assert ax.get_ylabel() == "error vs reference [%]"
    with pytest.raises(DataError, match="needs columns"):
        plot.parameter_recovery(tab[["value"]])


# --- report fixes (issue 15): readable labels, no empty legend entries, stages, orbits, residuals


def test_long_axis_labels_wrap_and_markers_take_their_label(lv_data):
    ds = lv_data.copy()
    ds["prey"].attrs.update(long_name="snowshoe hare pelts", units="thousand pelts")
    pred = predict(systems.get("lotka_volterra"), ds)
    fig = plot.trajectories(ds, pred, runs=["run0"], data_label="reference", model_label="learned")
    ax = fig.axes[0]
    # 36 characters beside a 2.6-inch panel were clipped at the figure edge; now two lines
    assert ax.get_ylabel() == "snowshoe hare pelts\n[thousand pelts]"
    assert [ln.get_label() for ln in ax.get_lines()] == ["reference", "learned"]


def test_training_curves_leave_out_empty_columns_and_mark_stages():
    h = pd.DataFrame({"epoch": np.arange(1, 31), "horizon": [5] * 10 + [10] * 10 + [20] * 10,
                      "loss": np.geomspace(1, 1e-2, 30), "full_loss": np.geomspace(2, 2e-2, 30),
                      "val_nrmse": np.nan})
    ax = plot.training_curves(h, columns=["loss", "full_loss", "val_nrmse"])
    # val_nrmse was never computed (no validation data): no curve and no legend entry
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "full_loss"]
    stage_lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert [ln.get_xdata()[0] for ln in stage_lines] == [11, 21]  # first epochs of stages 2 and 3
    assert [t.get_text().strip() for t in ax.texts] == ["horizon 5", "horizon 10", "horizon 20"]


def test_phase_portrait_draws_the_model_orbits(lv_data):
    lv = systems.get("lotka_volterra")
    orbits = predict(lv, lv_data)
    fig = plot.phase_portrait(lv, lv, data=lv_data, learned_orbits=orbits, reference_orbits=orbits,
                              fixed_points=False)
    for ax, name in zip(fig.axes, ("model orbit", "reference orbit")):
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
        assert len(lines) == 3  # one per run
        np.testing.assert_array_equal(lines[0].get_xdata(), orbits["prey"].values[0])
        assert lines[0].get_label() == name
    with pytest.raises(DataError, match="the orbits have no variables"):
        plot.phase_portrait(lv, data=lv_data, learned_orbits=orbits[["prey"]])


def test_residuals_against_time(lv_data):
    lv = systems.get("lotka_volterra")
    pred = predict(lv, lv_data)
    fig = plot.residuals(lv_data, pred, held_out=["run2"])
    assert len(fig.axes) == 2  # one panel per state
    ax = fig.axes[0]
    runs = [ln for ln in ax.get_lines() if ln.get_label().startswith("run")]
    assert [ln.get_label() for ln in runs] == ["run0", "run1", "run2 (held-out)"]
    assert runs[2].get_linestyle() == "--"
    expected = lv_data["prey"].values[0] - pred["prey"].values[0]
    np.testing.assert_allclose(runs[0].get_ydata(), expected[np.isfinite(expected)])
    assert "residual of prey" in ax.get_ylabel()
    with pytest.raises(DataError, match="not on the data's sample times"):
        plot.residuals(lv_data, predict(lv, lv_data.isel(obs=slice(0, 30))))
    assert _png(fig).startswith(b"\x89PNG")
