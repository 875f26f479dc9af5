"""``sysid simulate`` of a saved model without torch: sysid.io.load_dynamics and the NumPy route.

The NumPy route integrates the same float64 NumPy copy of the field with the same stepper as the
torch route's dopri5 (which already evaluates a model's NumPy copy), so the outputs agree to
rounding: the tolerance below (rtol 1e-9) is the torch route's own agreement check between a
model and its NumPy copy.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import sysid
from sysid.cli import main
from sysid.errors import ModelFileError
from sysid.io import load_dynamics, load_model, save_model
from sysid.models import Dynamics, Encoder, from_toml, neural, physics, second_order

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-9  # the torch route's own check of a model against its NumPy copy


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A float32 network with an input and a non-trivial scaling, and a catalogue physics model
    with fitted-looking parameter values, saved as model folders."""
    root = tmp_path_factory.mktemp("notorch")
    net = neural(["x", "v"], inputs=["u"], width=8, depth=2, seed=3)
    net.set_scaling({"names": ["x", "v", "u"], "mean": [0.5, -0.2, 0.1], "scale": [2.0, 0.7, 1.5],
                     "time_scale": 3.0})
    with torch.no_grad():  # weights that make the field matter over the span
        for layer in net.field.layers:
            layer.weight.mul_(4.0)
    lv = physics("lotka_volterra", values={"a": 0.61, "b": 0.031, "c": 0.77, "d": 0.022})
    paths = {"neural": root / "neural", "physics": root / "lv"}
    save_model(net, paths["neural"])
    save_model(lv, paths["physics"])
    pd.DataFrame({"time": np.linspace(0, 6, 13), "u": np.sin(np.linspace(0, 6, 13))}).to_csv(
        root / "u.csv", index=False)
    paths["inputs"] = root / "u.csv"
    return paths


def _cli(model: Path, out: Path, *extra: str) -> list[str]:
    return ["simulate", str(model), "--t-end", "6", "--dt", "0.05", "--out", str(out), *extra]


ARGS = {"neural": ("--y0", "x=1,v=0"), "physics": ("--y0", "prey=30,predator=4")}


@pytest.mark.parametrize("kind", ["neural", "physics"])
def test_sysid_simulate_never_imports_torch_and_matches_the_torch_route(models, kind, tmp_path,
                                                                       monkeypatch):
    extra = [*ARGS[kind], *(["--inputs", str(models["inputs"])] if kind == "neural" else [])]
    fast = tmp_path / "numpy.csv"
    script = (f"import sys; from sysid.cli import main; code = main({_cli(models[kind], fast, *extra)!r}); "
              "assert code == 0, code; assert 'torch' not in sys.modules, 'torch was imported'")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    # the torch route: the loader says no, the command loads the torch model as before
    monkeypatch.setattr(sysid.io, "load_dynamics", lambda path: None)
    slow = tmp_path / "torch.csv"
    assert main(_cli(models[kind], slow, *extra)) == 0
    a, b = pd.read_csv(fast), pd.read_csv(slow)
    assert list(a.columns) == list(b.columns)
    assert len(a) == 121
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=RTOL, atol=0.0)


def test_netcdf_output_is_the_same_dataset(models, tmp_path, monkeypatch):
    extra = [*ARGS["physics"]]
    assert main(_cli(models["physics"], tmp_path / "numpy.nc", *extra)) == 0
    monkeypatch.setattr(sysid.io, "load_dynamics", lambda path: None)
    assert main(_cli(models["physics"], tmp_path / "torch.nc", *extra)) == 0
    with xr.open_dataset(tmp_path / "numpy.nc") as a, xr.open_dataset(tmp_path / "torch.nc") as b:
        xr.testing.assert_allclose(a, b, rtol=RTOL, atol=0.0)
        assert a.attrs == b.attrs
        assert {n: a[n].attrs for n in a.variables} == {n: b[n].attrs for n in b.variables}


def _same_field(path: Path, rng: np.random.Generator) -> None:
    """load_dynamics' field equals the float64 model's NumPy copy at random states and times."""
    dyn = load_dynamics(path)
    assert isinstance(dyn, Dynamics)
    ref = Dynamics.from_model(load_model(path).to(torch.float64))
    assert (dyn.states, dyn.inputs, dyn.state_units, dyn.time_units, dict(dyn.latent_initial)) == \
        (ref.states, ref.inputs, ref.state_units, ref.time_units, dict(ref.latent_initial))
    x = rng.normal(size=(5, len(dyn.states))) + 1.5
    u = rng.normal(size=(5, len(dyn.inputs))) if dyn.inputs else None
    t = rng.uniform(0, 3, size=5)
    np.testing.assert_allclose(dyn.fn(t, x, u), ref.fn(t, x, u), rtol=RTOL, atol=1e-12)


def test_equations_hybrid_and_second_order_models_are_read_into_the_same_field(tmp_path):
    rng = np.random.default_rng(0)
    table = {"model": {
        "states": {"theta": "rad", "w": "rad/s"}, "inputs": {"u": "rad/s^2"},
        "parameters": {"k": {"value": 9.0, "bounds": [0, 100]}, "c": {"value": 0.2, "fixed": True}},
        "equations": {"dtheta": "w", "dw": "-k*sin(theta) - c*w + u + nn(theta, w)"},
        "neural": {"width": 6, "depth": 1}}}
    save_model(from_toml(table), tmp_path / "eq")
    _same_field(tmp_path / "eq", rng)  # text equations + a network on two states: a HybridField
    save_model(second_order(["q"], ["v"], width=4, depth=1, seed=1), tmp_path / "so")
    _same_field(tmp_path / "so", rng)  # a learned acceleration in second-order form

    def spring(t, x, u, p, xp):  # named by import path in the file: the NumPy view never imports
        return xp.stack([-p["k"] * x[..., 0]])

    save_model(second_order(["q"], ["v"], acceleration=spring, parameters={"k": 2.0}, neural=False),
               tmp_path / "imp")
    assert load_dynamics(tmp_path / "imp") is None  # load_model asks for allow_import= or functions=


def test_a_tampered_file_is_refused_with_load_models_message(models, tmp_path):
    import shutil

    folder = tmp_path / "lv"
    shutil.copytree(models["physics"], folder)
    blob = bytearray((folder / "model.safetensors").read_bytes())
    blob[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(blob))
    pattern = r"the sha256 of model.safetensors does not match the manifest"
    with pytest.raises(ModelFileError, match=pattern) as numpy_route:
        load_dynamics(folder)
    with pytest.raises(ModelFileError, match=pattern) as torch_route:
        load_model(folder)
    assert str(numpy_route.value) == str(torch_route.value)
    with pytest.raises(ModelFileError, match=r"does not exist"):
        load_dynamics(tmp_path / "absent")
    # bounds edited in model.json (and its sha256 re-listed): the values the tensors give differ
    # from those recorded; the NumPy view says no and load_model names the parameter
    folder2 = tmp_path / "lv2"
    shutil.copytree(models["physics"], folder2)
    manifest = json.loads((folder2 / "model.json").read_text())
    manifest["model"]["field"]["parameters"]["a"]["bounds"] = [0.5, None]
    (folder2 / "model.json").write_text(json.dumps(manifest))
    (folder2 / "manifest.json").unlink()
    manifest.pop("files_manifest")
    (folder2 / "model.json").write_text(json.dumps(manifest))
    assert load_dynamics(folder2) is None
    with pytest.raises(ModelFileError, match=r"parameter 'a' comes out as"):
        load_model(folder2)


def test_a_model_the_numpy_view_cannot_represent_falls_back_and_still_works(tmp_path):
    enc = neural(["x", "h"], observed=["x"], width=4, depth=1, encoder=Encoder(past=3))
    save_model(enc, tmp_path / "enc")
    assert load_dynamics(tmp_path / "enc") is None  # an encoder: the torch model only
    out = tmp_path / "sim.csv"
    assert main(["simulate", str(tmp_path / "enc"), "--y0", "x=1,h=0", "--t-end", "2", "--out",
                 str(out)]) == 0
    sim = pd.read_csv(out)
    ref = sysid.simulate(load_model(tmp_path / "enc"), {"x": 1.0, "h": 0.0}, np.linspace(0, 2, 201))
    np.testing.assert_allclose(sim["x"], ref["x"].values[0], rtol=1e-12)


def test_a_torch_model_with_dopri5_still_integrates_its_numpy_copy(models, monkeypatch):
    """The torch route's NumPy copy (checked against the model at the start) keeps working with
    torch imported lazily: a failure there would silently fall back to the slower torch solve."""
    import sysid.simulation as simulation

    calls = []
    real = simulation.solve_numpy
    monkeypatch.setattr(simulation, "solve_numpy", lambda *a, **k: calls.append(1) or real(*a, **k))
    sim = simulation.simulate(load_model(models["physics"]), {"prey": 30.0, "predator": 4.0},
                              np.linspace(0, 6, 13))
    assert calls == [1]
    assert np.isfinite(sim["prey"].values).all()


def test_other_methods_load_the_torch_model(models, tmp_path, monkeypatch):
    """SciPy integrates a float32 model's copy with float32-computed parameter values, which the
    float64 view would not reproduce bit for bit; rk4 is a torch method."""
    def refuse(path):
        raise AssertionError("load_dynamics is for dopri5")

    monkeypatch.setattr(sysid.io, "load_dynamics", refuse)
    for method in ("RK45", "rk4"):
        assert main(_cli(models["physics"], tmp_path / f"{method}.csv", *ARGS["physics"],
                         "--method", method)) == 0


@pytest.mark.parametrize("extra, message", [
    (("--y0", "x=1", "--t-end", "6"), r"--y0: no value for states \['v'\]"),
    (("--y0", "x=1,v=0,w=2", "--t-end", "6"), r"--y0: \['w'\] is not a state of the model"),
    (("--y0", "x=1,v=0", "--t-end", "6"), r"the model has inputs \['u'\]; give their signal"),
    (("--y0", "x=1,v=0", "--t-end", "9", "--inputs", "U"),
     r"inputs of run .* cover \[0, 6\] but run 'simulated' is simulated over \[0, 9\]"),
])
def test_mistakes_get_the_torch_routes_messages(models, tmp_path, monkeypatch, capsys, extra, message):
    extra = [str(models["inputs"]) if a == "U" else a for a in extra]
    args = ["simulate", str(models["neural"]), *extra, "--out", str(tmp_path / "s.csv")]
    errors = []
    for numpy_route in (True, False):
        if not numpy_route:
            monkeypatch.setattr(sysid.io, "load_dynamics", lambda path: None)
        assert main(args) == 2
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1]
    assert re.search(message, errors[0]), errors[0]
