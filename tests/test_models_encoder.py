"""Encoders of hidden states (sysid.models.encoder): training, simulate from a new record, files,
the command line, and the errors.

The reference problem is a body moving at a constant, unmeasured velocity: ``x' = v, v' = 0``
with only ``x`` measured and sampled every ``DT``. Its hidden state is a known linear function of
the last two outputs, ``v_k = (x_k - x_{k-1}) / DT``, which a linear encoder (``depth=0``,
``past=2``) can represent exactly; the field is fixed physics, so the fit trains only the encoder
and the test isolates it. Tiny float64 problems, a few seconds each.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

import sysid
from sysid.data import from_arrays
from sysid.errors import ConfigError, DataError, ModelFileError
from sysid.models import Encoder, Model, StateEncoder, neural, physics
from sysid.training import FitConfig

DT = 0.1


def _drift(t, x, u, p, xp):
    return xp.stack([x[..., 1], 0.0 * x[..., 1]])


def _model(**kw) -> Model:
    return physics(_drift, {}, ["x", "v"], observed=["x"], dtype=torch.float64,
                   encoder=Encoder(past=2, depth=0, **kw))


def _runs(velocities, starts, n=12, dt=DT) -> object:
    t = np.arange(n) * dt
    return from_arrays([t] * len(velocities), {"x": [x0 + v * t for x0, v in zip(starts, velocities)]},
                       states=["x"], runs=[f"r{i}" for i in range(len(velocities))])


@pytest.fixture(scope="module")
def fitted():
    data = _runs([0.5, -1.0, 1.5, -0.3], [0.0, 1.0, -0.5, 2.0])
    cfg = FitConfig(epochs=150, dtype="float64", progress=False, optimizer={"lr": 0.05},
                    shooting={"horizons": (4, 8)}, refine=False)
    return sysid.fit(_model(), data, cfg)


def test_encoder_learns_the_hidden_velocity(fitted):
    enc = fitted.model.encoder
    # the training data's sample gap is remembered (the encoder reads samples, not times)
    assert float(enc.dt) == pytest.approx(DT, rel=1e-12)
    new = _runs([0.8, -2.0], [3.0, -1.0])  # velocities and positions the fit never saw
    sim = sysid.simulate(fitted.model, new, solver="rk4")
    # exact answer v = (x_1 - x_0)/DT; 1 % because Adam stops short of the exact linear map
    # (measured error below 0.1 %); a free-node fit has no way to know these velocities at all
    assert sim["v"].values[:, 1] == pytest.approx([0.8, -2.0], rel=0.01)
    # the encoder read sample 1 and the simulation starts there: no prediction at sample 0
    assert np.isnan(sim["x"].values[:, 0]).all() and np.isnan(sim["v"].values[:, 0]).all()
    assert sim["x"].values[:, 1] == pytest.approx(new["x"].values[:, 1], abs=1e-12)
    # x follows the measured line to the end (error from the 1 % velocity only)
    err = np.abs(sim["x"].values[:, 1:] - new["x"].values[:, 1:]).max()
    assert err < 0.01 * 2.0 * 10 * DT


def test_given_latent_values_turn_the_encoder_off(fitted):
    new = _runs([0.8], [3.0])
    sim = sysid.simulate(fitted.model, new, latent={"v": 0.2}, solver="rk4")
    assert np.isfinite(sim["x"].values[0]).all()  # starts at sample 0 as without an encoder
    assert sim["v"].values[0, 0] == 0.2
    off = sysid.simulate(fitted.model, new, encoder=False, solver="rk4")
    assert off["v"].values[0, 0] == 0.0  # the model's latent_initial
    with pytest.raises(ConfigError, match="encoder=True estimates the hidden states, but latent="):
        sysid.simulate(fitted.model, new, latent={"v": 0.2}, encoder=True)


def test_predict_uses_fitted_starts_for_training_runs_and_the_encoder_for_new_ones(fitted):
    from sysid.analysis import predict

    train = _runs([0.5], [0.0])
    train = train.assign_coords(trajectory=np.array(["r0"], dtype=object))
    pred = predict(fitted, train)
    assert np.isfinite(pred["x"].values[0]).all()  # a training run: its fitted start at sample 0
    new = _runs([0.8], [3.0]).assign_coords(trajectory=np.array(["new"], dtype=object))
    pred_new = predict(fitted, new)
    assert np.isnan(pred_new["x"].values[0, 0]) and pred_new["v"].values[0, 1] == pytest.approx(0.8, rel=0.01)


def test_save_load_round_trip(fitted, tmp_path):
    path = sysid.save_model(fitted.model, tmp_path / "m")
    loaded = sysid.load_model(path, functions={"_drift": _drift})
    assert isinstance(loaded.encoder, StateEncoder)
    assert loaded.encoder.spec() == fitted.model.encoder.spec()
    new = _runs([0.8, -2.0], [3.0, -1.0])
    a = sysid.simulate(fitted.model, new, solver="rk4")
    b = sysid.simulate(loaded, new, solver="rk4")
    np.testing.assert_array_equal(a["v"].values, b["v"].values)
    np.testing.assert_array_equal(a["x"].values, b["x"].values)


def test_tampered_encoder_size_is_refused(fitted, tmp_path):
    import json

    path = sysid.save_model(fitted.model, tmp_path / "m")
    text = (path / "model.json").read_text()
    doc = json.loads(text)
    doc["model"]["encoder"]["width"] = 10**6
    doc["model"]["encoder"]["depth"] = 3
    (path / "model.json").write_text(json.dumps(doc))
    listing = json.loads((path / "manifest.json").read_text())  # re-signed, as an attacker would
    data = (path / "model.json").read_bytes()
    listing["files"]["model.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(listing))
    with pytest.raises(ModelFileError, match="the encoder in model.json .* needs more weights"):
        sysid.load_model(path, functions={"_drift": _drift})


def test_encoder_on_a_neural_state_space_model_trains():
    """The black-box form: a neural field over a measured and a hidden state with an input."""
    t = np.arange(30) * DT
    u = [np.sin(1.3 * t + k) for k in range(2)]
    y = [np.cumsum(ui) * DT for ui in u]
    data = from_arrays([t, t], {"y": y, "u": u}, states=["y"], inputs=["u"])
    m = neural(["y", "h"], ["u"], observed=["y"], width=8, depth=1, encoder=Encoder(past=4, width=8))
    res = sysid.fit(m, data, FitConfig(epochs=20, dtype="float64", progress=False, refine=False))
    # short smooth runs would get single shooting, which never uses the encoder
    assert res.solver_stats["shooting"]["method"] == "multiple"
    assert res.model.encoder.is_scaled and m.encoder is not res.model.encoder
    assert not m.encoder.is_scaled  # the caller's model is never changed
    assert res.best_epoch > 0  # the loss went down ...
    before = dict(m.encoder.named_parameters())
    after = dict(res.model.encoder.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # ... with the encoder trained
    sim = sysid.simulate(res.model, data)
    assert np.isnan(sim["h"].values[:, :3]).all() and np.isfinite(sim["h"].values[:, 3:]).all()


def test_model_without_hidden_states_is_refused():
    with pytest.raises(ConfigError, match="every state of this model .* is measured"):
        neural(["x", "v"], encoder=Encoder(past=3))
    with pytest.raises(ConfigError, match="encoder must be a sysid.models.Encoder"):
        neural(["x", "v"], observed=["x"], encoder=3)


@pytest.mark.parametrize("kw, match", [
    ({"past": 0}, "past must be an integer from 1"),
    ({"past": 2.5}, "past must be an integer"),
    ({"past": 3, "width": 0}, "width must be an integer from 1"),
    ({"past": 3, "activation": "swish"}, "unknown activation 'swish'"),
])
def test_bad_encoder_settings(kw, match):
    with pytest.raises(ConfigError, match=match):
        Encoder(**kw)


def test_past_longer_than_the_runs_is_refused():
    data = _runs([0.5, 1.0], [0.0, 0.0], n=5)
    m = physics(_drift, {}, ["x", "v"], observed=["x"], dtype=torch.float64,
                encoder=Encoder(past=5, depth=0))
    with pytest.raises(DataError, match=r"past=5 samples .* longest run has 5 samples.*at most 4"):
        sysid.fit(m, data, FitConfig(epochs=1, dtype="float64", progress=False))


def test_record_shorter_than_past_is_refused_by_simulate(fitted):
    short = _runs([0.5], [0.0], n=1)
    with pytest.raises(DataError, match="reads the first 2 samples .* run 'r0' has 1"):
        sysid.simulate(fitted.model, short)


def test_other_sampling_rate_is_refused(fitted):
    with pytest.raises(DataError, match=r"samples 0\.1 time units apart .* are 0\.2 apart"):
        sysid.simulate(fitted.model, _runs([0.5], [0.0], dt=0.2))
    t = np.array([0.0, 0.1, 0.25, 0.3, 0.4])
    uneven = from_arrays([t, t], {"x": [t, 2 * t]}, states=["x"])
    with pytest.raises(DataError, match="must be sampled at one rate; run 'run0' has a gap of 0.15"):
        sysid.fit(_model(), uneven, FitConfig(epochs=1, dtype="float64", progress=False))


def test_encoder_true_needs_an_encoder_and_a_dataset(fitted):
    plain = physics(_drift, {}, ["x", "v"], observed=["x"], dtype=torch.float64)
    with pytest.raises(ConfigError, match="encoder=True, but the model has no encoder"):
        sysid.simulate(plain, _runs([0.5], [0.0]), encoder=True)
    with pytest.raises(ConfigError, match="pass initial as a dataset"):
        sysid.simulate(fitted.model, {"x": 0.0, "v": 1.0}, [0.0, 0.1], encoder=True)


def test_cli_fit_with_hidden_state_and_encoder(tmp_path, capsys):
    from sysid.cli import main

    t = np.arange(25) * DT
    rows = ["run,t,y,u"]
    for r in range(2):
        u = np.sin(1.1 * t + r)
        y = np.cumsum(u) * DT
        rows += [f"{r},{a:.3f},{float(b)!r},{float(c)!r}" for a, b, c in zip(t, y, u)]
    csv = tmp_path / "d.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "fit"
    code = main(["fit", str(csv), "--time", "t", "--run", "run", "--states", "y", "--inputs", "u",
                 "--hidden", "h", "--encoder", "3", "--width", "8", "--epochs", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    model = sysid.load_model(out / "model")
    assert model.encoder.past == 3 and model.latent_names == ("h",)
    assert "encoder = 3" in (out / "config.toml").read_text()
    # sysid simulate on a record: the encoder reads its first 3 samples, the run starts at the 3rd
    code = main(["simulate", str(out), "--initial-from", str(csv), "--out", str(tmp_path / "sim.csv")])
    assert code == 0, capsys.readouterr().err
    sim = pd.read_csv(tmp_path / "sim.csv")
    first = sim[sim["run"] == 0]
    assert first["h"].iloc[:2].isna().all() and first["h"].iloc[2:].notna().all()
    capsys.readouterr()
    code = main(["fit", str(csv), "--time", "t", "--run", "run", "--states", "y", "--inputs", "u",
                 "--encoder", "3", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--encoder estimates hidden states from the last 3 samples" in err
    assert not (tmp_path / "x").exists()


def _damped(t, x, u, p, xp):
    return xp.stack([x[..., 1], -p["c"] * x[..., 1]])


def test_float32_fit_with_gauss_newton_errors_and_single_shooting_refused():
    data = _runs([0.5, -1.0], [0.0, 1.0])
    m = physics(_damped, {"c": sysid.models.Parameter(0.1, bounds=(0, 5))}, ["x", "v"],
                observed=["x"], encoder=Encoder(past=2, depth=0))
    # float32 training copy, standard errors from the float64 copy's windows (its own encoder)
    res = sysid.fit(m, data, FitConfig(epochs=2, progress=False, refine=False))
    assert res.model.dtype == torch.float32 and "stderr" in res.parameters
    with pytest.raises(ConfigError, match="shooting='single' never uses it"):
        sysid.fit(m, data, FitConfig(epochs=1, progress=False, shooting="single"))
