"""Ensembles (seeds, bootstrap, starts), quantile bands, their coverage and plot, per-run fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sysid
import sysid.models
from parallel_helpers import decay, decay_data
from sysid.data import from_arrays, run_ids, validate
from sysid.errors import ConfigError, DataError
from sysid.models import Parameter
from sysid.parallel import Ensemble, Interrupted, SerialExecutor, TaskFailure
from sysid.parallel.ensembles import band_coverage
from sysid.parallel.resampling import (
    default_block,
    original_run,
    perturb_start,
    resample_runs,
    reseed,
    residual_bootstrap,
)
from sysid.training import FitConfig, FitResult

SERIAL = SerialExecutor()
CFG = FitConfig(epochs=15, dtype="float64", shooting={"horizons": (4,)}, warm_start={"epochs": 20},
                progress=False)


def _physics(k=0.5):
    return sysid.models.physics(decay, {"k": Parameter(k, bounds=(0, 5), units="1/s")}, ["x"],
                                dtype=torch.float64)


def _neural():
    return sysid.models.neural(["x"], width=4, depth=1, seed=3)


# ---------------------------------------------------------------------------------------------
# how members differ


def test_reseed_changes_only_the_network_and_offset_zero_is_a_copy():
    m = _neural()
    same = reseed(m, 0)
    other = reseed(m, 1)
    for (k, a), b, c in zip(m.state_dict().items(), same.state_dict().values(),
                            other.state_dict().values()):
        assert torch.equal(a, b)
        if "layers" in k and k.endswith("weight"):
            assert not torch.equal(a, c)
    # member 1's network is exactly a fresh NeuralField with seed 3 + 1
    fresh = sysid.models.neural(["x"], width=4, depth=1, seed=4)
    assert torch.equal(fresh.field.layers[0].weight, other.field.layers[0].weight)
    assert other.field.seed == 4 and m.field.seed == 3  # the input is never changed


def test_perturb_start_moves_raw_parameters_by_spread():
    z = np.random.default_rng(0).standard_normal(1)[0]
    # k in (0, 5): raw = logit(k / 5), so the start is 5 sigmoid(logit(0.1) + 0.5 z)
    m = _physics(0.5)
    moved = perturb_start(m, np.random.default_rng(0), 0.5)
    expected = 5.0 / (1.0 + math.exp(-(math.log(0.1 / 0.9) + 0.5 * z)))
    assert float(moved.physical_parameters()["k"].detach()) == pytest.approx(expected, rel=1e-12)
    assert float(m.physical_parameters()["k"].detach()) == pytest.approx(0.5)  # the input is unchanged
    # a lower bound only: raw = log(k), so the start is k exp(z)
    m = sysid.models.physics(decay, {"k": Parameter(0.5, bounds=(0, math.inf))}, ["x"],
                             dtype=torch.float64)
    moved = perturb_start(m, np.random.default_rng(0), 1.0)
    assert float(moved.physical_parameters()["k"].detach()) == pytest.approx(0.5 * math.exp(z), rel=1e-12)


def test_resample_runs_draws_with_replacement_and_renames():
    data = decay_data(runs=5)
    boot = resample_runs(data, np.random.default_rng(1))
    ids = run_ids(boot)
    assert len(ids) == 5 and len(set(ids)) == 5
    validate(boot)
    for r in ids:
        src = original_run(r)
        np.testing.assert_array_equal(boot["x"].sel(trajectory=r).values,
                                      data["x"].sel(trajectory=src).values)
    assert original_run("A#2") == "A" and original_run("run#x") == "run#x"


def test_residual_bootstrap_is_the_fit_plus_blocks_of_its_residuals():
    t = np.arange(8.0)
    y = np.array([1.0, 2.0, 4.0, 3.0, 5.0, 6.0, 5.5, 7.0])
    fitted_y = np.linspace(1.0, 7.0, 8)
    data = from_arrays([t], {"x": [y]}, states=["x"], runs=["a"])
    fitted = from_arrays([t], {"x": [fitted_y]}, states=["x"], runs=["a"])
    boot = residual_bootstrap(data, fitted, np.random.default_rng(0), states=["x"], loss="mse",
                              block=2)
    r = (y - fitted_y) - np.mean(y - fitted_y)
    new = boot["x"].values[0] - fitted_y
    # every consecutive pair (a block of 2) is a pair of consecutive centred residuals
    pairs = {(round(r[i], 12), round(r[i + 1], 12)) for i in range(7)}
    for i in range(0, 8, 2):
        assert (round(new[i], 12), round(new[i + 1], 12)) in pairs
    # multiplicative error model: residuals of the logs
    boot_log = residual_bootstrap(data, fitted, np.random.default_rng(0), states=["x"], loss="log",
                                  block=8)
    lr = np.log(y) - np.log(fitted_y)
    np.testing.assert_allclose(np.log(boot_log["x"].values[0] / fitted_y), lr - lr.mean(),
                               atol=1e-12)
    assert default_block(16) == 3 and default_block(1) == 1


# ---------------------------------------------------------------------------------------------
# ensembles


def test_seed_ensemble_member_zero_is_the_plain_fit_and_bands_are_ordered():
    data = decay_data()
    ens = sysid.ensemble(_neural(), data, CFG, members=3, kind="seeds", executor=SERIAL,
                         progress=False)
    assert isinstance(ens, Ensemble) and len(ens.fits) == 3
    plain = sysid.fit(_neural(), data, CFG)
    assert ens.members[0].history["loss"].equals(plain.history["loss"])
    assert not ens.members[1].history["loss"].equals(plain.history["loss"])
    assert ens.members[1].config.seed == 1
    band = ens.predict(data)
    assert band["x"].dims == ("quantile", "trajectory", "obs")
    assert band["quantile"].values.tolist() == [0.05, 0.5, 0.95]
    lo, mid, hi = (band["x"].sel(quantile=q).values for q in (0.05, 0.5, 0.95))
    ok = np.isfinite(lo)
    assert np.all(lo[ok] <= mid[ok]) and np.all(mid[ok] <= hi[ok])
    validate(band.sel(quantile=0.5))  # the median is an ordinary trajectory dataset
    noisy = ens.predict(data, noise=True, draws=50)
    # noise only widens: the observation band contains the trajectory band's median
    assert np.all(noisy["x"].sel(quantile=0.95).values[ok] >= mid[ok])
    assert noisy.attrs["noise_draws_per_member"] == 50
    sim = ens.simulate({"x": 1.0}, np.linspace(0, 2, 5), quantiles=(0.25, 0.75))
    assert sim["x"].shape == (2, 1, 5)


def test_bootstrap_over_runs_spread_matches_the_spread_over_repeated_experiments():
    # one experiment = 6 runs from x0 = 1 with additive noise; the bootstrap of one experiment
    # must estimate how much k varies between independent experiments (the sampling spread)
    cfg = FitConfig(epochs=20, optimizer={"lr": 0.02}, dtype="float64", shooting="single",
                    warm_start={"epochs": 50}, refine=True, progress=False)

    def experiment(seed):
        return decay_data(runs=6, noise=0.05, seed=seed, additive=True, same_start=True)

    repeats = sysid.fit_many([(_physics(), experiment(100 + i), cfg) for i in range(12)], SERIAL,
                             progress=False)
    spread = np.std([float(r.parameters["value"].iloc[0]) for r in repeats], ddof=1)
    ens = sysid.ensemble(_physics(), experiment(0), cfg, members=12, kind="bootstrap",
                         executor=SERIAL, progress=False)
    assert ens.resample == "runs" and isinstance(ens.base, FitResult)
    k = ens.parameters().loc["k"]
    # 6 runs x 12 samples, noise 0.05: the estimate of k = 0.7 is within 5 % (~2 sampling sd)
    assert k["estimate"] == pytest.approx(0.7, rel=0.05)
    assert k["low"] <= k["median"] <= k["high"] and k["n_members"] == 12
    # both standard deviations come from 12 values (+-21 % each), so their ratio is known to
    # about +-30 %; a factor of 2 either way is a 2.3-sigma bound
    assert 0.5 < k["sd"] / spread < 2.0
    assert ens.parameters(0.5).attrs["level"] == 0.5


def test_bootstrap_of_one_run_resamples_residuals():
    data = decay_data(runs=1, n=16, noise=0.05)
    ens = sysid.ensemble(_physics(), data, CFG, members=3, kind="bootstrap", executor=SERIAL,
                         progress=False)
    assert ens.resample == "residuals" and isinstance(ens.base, FitResult)
    assert ens.member_data[0]["x"].values.tolist() != data["x"].values.tolist()
    assert ens.member_data[0].attrs["processing"].startswith("residual block bootstrap")


def test_starts_ensemble_best_has_the_lowest_loss():
    data = decay_data()
    ens = sysid.ensemble(_physics(2.0), data, CFG, members=3, kind="starts", executor=SERIAL,
                         progress=False)
    starts = [float(m.history["full_loss"].dropna().min()) for m in ens.fits]
    assert float(ens.best.history["full_loss"].dropna().min()) == min(starts)


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "seeds"}, r"kind='seeds'.*no neural term .* Use kind='bootstrap'"),
    ({"members": 1}, r"members must be an integer >= 2; got 1"),
    ({"kind": "jackknife"}, r"kind must be one of \['seeds', 'bootstrap', 'starts'\]"),
    ({"kind": "starts", "resample": "runs"}, r"resample='runs' applies to kind='bootstrap' only"),
    ({"kind": "bootstrap", "resample": "runs"}, r"needs at least 2; the data has 1"),
])
def test_ensemble_refuses_bad_settings(kwargs, match):
    args = {"members": 2, "executor": SERIAL, "progress": False, **kwargs}
    with pytest.raises(ConfigError, match=match):
        sysid.ensemble(_physics(), decay_data(runs=1), CFG, **args)


def test_ctrl_c_keeps_the_finished_members():
    def stop(label, result):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        sysid.ensemble(_neural(), decay_data(), CFG, members=3, executor=SERIAL, progress=False,
                       callback=stop)
    partial = info.value.partial
    assert isinstance(partial, Ensemble) and len(partial.fits) == 1
    assert [type(m) for m in partial.members[1:]] == [TaskFailure, TaskFailure]


# ---------------------------------------------------------------------------------------------
# coverage, plot, report


def _band(lo, mid, hi, t):
    ds = from_arrays([t], {"x": [mid]}, states=["x"], runs=["a"])
    values = np.stack([lo, mid, hi])[:, None, :]
    attrs = ds["x"].attrs
    return ds.assign(x=(("quantile", "trajectory", "obs"), values, attrs)).assign_coords(
        quantile=[0.05, 0.5, 0.95])


def test_band_coverage_counts_samples_inside():
    t = np.arange(5.0)
    band = _band(np.zeros(5), np.ones(5), 2 * np.ones(5), t)
    data = from_arrays([t], {"x": [np.array([0.5, 2.5, 1.0, -1.0, np.nan])]}, states=["x"],
                       runs=["a"])
    cov = band_coverage(data, band)
    assert cov.loc["x", "n"] == 4 and cov.loc["x", "inside"] == 2
    assert cov.loc["all", "coverage"] == 0.5 and cov.loc["all", "nominal"] == pytest.approx(0.9)
    late = band_coverage(data, band, after=1.5)
    assert late.loc["x", "n"] == 2 and late.loc["x", "inside"] == 1
    with pytest.raises(ConfigError, match=r"0.025 is not among them"):
        band_coverage(data, band, lower=0.025)


def test_band_plot_and_report_section(tmp_path):
    t = np.arange(5.0)
    band = _band(np.zeros(5), np.ones(5), 2 * np.ones(5), t)
    data = from_arrays([t], {"x": [np.array([0.5, 2.5, 1.0, 1.5, 0.2])]}, states=["x"],
                       runs=["a"])
    fig = sysid.plot.band(data, band, after=2.0, inner=band)
    ax = fig.axes[0]
    assert len(ax.collections) >= 2 and ax.get_ylabel() == "x"
    with pytest.raises(DataError, match=r"no 'quantile' dimension"):
        sysid.plot.band(data, data)
    model = sysid.fit(_physics(), decay_data(runs=1, n=5), CFG).model
    files = sysid.report(model, data, out=tmp_path, band=band)
    md = (tmp_path / "report.md").read_text()
    assert "## Prediction band" in md and (tmp_path / "figures" / "band.png").is_file()
    import json

    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["band"]["all runs"]["coverage"] == pytest.approx(0.8)
    assert any(p.name == "report.html" for p in files)


# ---------------------------------------------------------------------------------------------
# per-run fits


def test_fit_per_run_recovers_each_rate_and_the_two_stage_summary():
    t = np.linspace(0.0, 3.0, 10)
    ks = [0.4, 0.7, 1.1]
    data = from_arrays([t] * 3, {"x": [np.exp(-k * t) for k in ks]}, states=["x"],
                       runs=["s1", "s2", "s3"])
    cfg = FitConfig(epochs=20, optimizer={"lr": 0.02}, dtype="float64", shooting="single",
                    refine=True, progress=False)
    per = sysid.fit_per_run(_physics(), data, cfg, executor=SERIAL, progress=False)
    values = per.values()
    assert list(values.index) == ["s1", "s2", "s3"]
    # noise-free data, polished fit: each rate within 0.1 %
    np.testing.assert_allclose(values["k"].to_numpy(), ks, rtol=1e-3)
    pop = per.population().loc["k"]
    logs = np.log(values["k"].to_numpy())
    assert pop["scale"] == "log" and pop["n_runs"] == 3
    assert pop["mean"] == pytest.approx(logs.mean(), rel=1e-12)
    assert pop["sd"] == pytest.approx(logs.std(ddof=1), rel=1e-12)
    assert pop["typical"] == pytest.approx(math.exp(logs.mean()), rel=1e-12)
    long = per.parameters()
    assert long.index.names == ["run", "name"] and len(long) == 3
    assert not per.failures
