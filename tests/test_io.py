"""Model files: save -> load round trips, and refusal of tampered, foreign and pickle files."""

from __future__ import annotations

import hashlib
import json
import pickle  # only to prove the crafted payload below is live (control), never to load models
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models_fields import CASES, SPRING_PARAMS, _batch, forced_spring

import sysid
import sysid.models as sm
from sysid.data import Scaling, from_arrays
from sysid.errors import ModelFileError
from sysid.io import load_model, save_model
from sysid.simulation import simulate


def _load_trusting(path):
    # the test cases' physics functions live in the importable test module
    return load_model(path, allow_import=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_identical_predictions(case, dtype, tmp_path):
    model = CASES[case](dtype)
    with torch.no_grad():  # move every weight away from its seeded start
        for p in model.parameters():
            p.add_(0.01 * torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape).sin())
    save_model(model, tmp_path / "m")
    loaded = _load_trusting(tmp_path / "m")
    t, x, u = _batch(model, dtype, b=7)
    with torch.no_grad():
        assert torch.equal(model(t, x, u), loaded(t, x, u))
    assert loaded.dtype == dtype
    assert loaded.state_names == model.state_names and loaded.input_names == model.input_names
    assert loaded.state_units == model.state_units and loaded.time_units == model.time_units
    assert loaded.observed == model.observed
    a, b = model.parameter_table(), loaded.parameter_table()
    assert a.equals(b)
    assert type(loaded.field) is type(model.field)


def test_round_trip_scaling_metadata_latent_and_simulation(tmp_path):
    model = sm.hybrid(forced_spring, SPRING_PARAMS, ["x", "v"], ["F"], neural_states=["v"], width=8,
                      observed=["x"], input_interpolation="cubic", dtype=torch.float64,
                      metadata={"data": "bench A", "epochs": 3})
    model = sm.Model(model.field, observed=["x"], input_interpolation="cubic", latent_initial={"v": 0.25},
                     metadata=model.metadata)
    model.set_scaling(Scaling(names=("x", "v", "F"), mean=np.array([0.1, 0.0, 0.2]),
                              scale=np.array([0.5, 2.0, 3.0]), time_scale=4.0))
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m", functions={"test_models_fields:forced_spring": forced_spring})
    assert loaded.scaling == model.scaling
    assert loaded.metadata == {"data": "bench A", "epochs": 3}
    assert loaded.latent_initial == {"v": 0.25}
    assert loaded.input_interpolation == "cubic"
    t = np.linspace(0, 5, 26)
    data = from_arrays([t], {"x": [np.cos(t)], "v": [np.zeros(26)], "F": [np.sin(2 * t)]},
                       states=["x", "v"], inputs=["F"])
    np.testing.assert_array_equal(simulate(model, data)["x"].values, simulate(loaded, data)["x"].values)
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    assert manifest["format"] == "sysid-model" and manifest["schema_version"] == 1
    assert manifest["torch_version"] == torch.__version__ and manifest["sysid_version"] == sysid.__version__
    assert manifest["parameters"]["m"]["units"] == "kg" and manifest["parameters"]["m"]["bounds"] == [0.1, 10.0]
    assert manifest["model"]["field"]["physics"]["function"] == {"import": "test_models_fields:forced_spring"}


def test_catalogue_system_needs_no_import(tmp_path):
    model = sm.physics("lotka_volterra", free=["a", "b"], dtype=torch.float64)
    save_model(model, tmp_path / "lv")
    loaded = load_model(tmp_path / "lv")  # no allow_import: systems are resolved by name
    assert loaded.field.system == "lotka_volterra"
    assert loaded.parameter_table().equals(model.parameter_table())


def test_user_function_import_rules(tmp_path):
    save_model(CASES["physics_fn"](torch.float64), tmp_path / "user")
    with pytest.raises(ModelFileError, match=r"would import module 'test_models_fields' .* allow_import=True"):
        load_model(tmp_path / "user")
    assert load_model(tmp_path / "user", functions={"forced_spring": forced_spring}).field.fn is forced_spring

    local = sm.physics(lambda t, x, u, p, xp: xp.stack([-p["k"] * x[..., 0]]), {"k": 1.0}, ["c"])
    save_model(local, tmp_path / "lambda")
    ref = "test_io:test_user_function_import_rules.<locals>.<lambda>"
    with pytest.raises(ModelFileError, match=f"'{ref}' cannot be imported .* functions="):
        load_model(tmp_path / "lambda", allow_import=True)

    def decay(t, x, u, p, xp):
        return xp.stack([-p["k"] * x[..., 0]])

    loaded = load_model(tmp_path / "lambda", functions={ref: decay})
    assert float(loaded(torch.tensor(0.0), torch.ones(1, 1)).detach()) == pytest.approx(-1.0)


def test_overwrite_rules(tmp_path):
    model = CASES["neural"](torch.float32)
    save_model(model, tmp_path / "m")
    with pytest.raises(ModelFileError, match="already exists; pass overwrite=True"):
        save_model(model, tmp_path / "m")
    save_model(CASES["neural"](torch.float64), tmp_path / "m", overwrite=True)
    assert load_model(tmp_path / "m").dtype == torch.float64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left


def _saved(tmp_path) -> Path:
    return save_model(CASES["hybrid_all"](torch.float32), tmp_path / "m")


def test_tampered_tensor_file(tmp_path):
    path = _saved(tmp_path)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-3] ^= 0x01
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 of model.safetensors does not match the manifest"):
        load_model(path)
    (path / "manifest.json").unlink()  # without the file manifest, model.json's own hash still holds
    _rewrite_manifest(path, lambda m: m.pop("files_manifest"))
    with pytest.raises(ModelFileError, match="sha256 of model.safetensors does not match model.json"):
        load_model(path)


def _rewrite_manifest(path: Path, change) -> None:
    """Edit model.json as a determined attacker would: the file manifest is updated to match, so
    the checks behind it (structure, tensors, parameter values) are what is tested."""
    manifest = json.loads((path / "model.json").read_text())
    change(manifest)
    (path / "model.json").write_text(json.dumps(manifest))
    _resign(path)


def _resign(path: Path) -> None:
    files = path / "manifest.json"
    if files.exists():
        listing = json.loads(files.read_text())
        for name in listing["files"]:
            data = (path / name).read_bytes()
            listing["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        files.write_text(json.dumps(listing))


def test_foreign_newer_and_malformed_manifests(tmp_path):
    path = _saved(tmp_path)
    _rewrite_manifest(path, lambda m: m.update(schema_version=99))
    with pytest.raises(ModelFileError, match="schema_version 99 .* reads up to 1. Upgrade sysid"):
        load_model(path)
    _rewrite_manifest(path, lambda m: m.update(schema_version=1, format="keras"))
    with pytest.raises(ModelFileError, match="format 'keras', not 'sysid-model'; not a sysid model file"):
        load_model(path)
    (path / "model.json").write_text("{not json")
    _resign(path)
    with pytest.raises(ModelFileError, match="model.json is not valid JSON"):
        load_model(path)


def test_manifest_structure_must_match_tensors(tmp_path):
    path = _saved(tmp_path)
    _rewrite_manifest(path, lambda m: m["model"]["field"]["neural"].update(width=9))
    with pytest.raises(ModelFileError, match="tensor shapes do not match the structure"):
        load_model(path)
    _rewrite_manifest(path, lambda m: m["model"]["field"]["neural"].update(width=10**9))
    with pytest.raises(ModelFileError, match=r"width 1000000000.*needs more weights than the tensor file holds"):
        load_model(path)  # refused before allocating a 10^18-weight network
    path2 = save_model(CASES["neural"](torch.float32), tmp_path / "n")
    _rewrite_manifest(path2, lambda m: m["model"]["field"].update(type="os.system"))
    with pytest.raises(ModelFileError, match="unknown field type 'os.system'"):
        load_model(path2)
    _rewrite_manifest(path2, lambda m: m["model"].pop("field"))
    with pytest.raises(ModelFileError, match="does not describe a valid model"):
        load_model(path2)

    # a manifest nested deeper than Python's recursion limit (hand-written: json.dumps cannot)
    text = (path2 / "model.json").read_text()
    level = '{"type": "SecondOrderField", "positions": ["q"], "velocities": ["v"], "acceleration": '
    deep = level * 5000 + "null" + "}" * 5000
    assert '"field"' not in text  # removed above; put the deep one in its place
    (path2 / "model.json").write_text(text.replace('"model": {', '"model": {"field": ' + deep + ", ", 1))
    _resign(path2)
    with pytest.raises(ModelFileError, match="model.json is not valid JSON .*recursion"):
        load_model(path2)


def test_missing_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    path = _saved(tmp_path)
    (path / "model.json").unlink()
    with pytest.raises(ModelFileError, match="lacks model.json"):
        load_model(path)
    (tmp_path / "file.pt").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="is not a sysid model folder"):
        load_model(tmp_path / "file.pt")


def _payload(marker: Path) -> bytes:
    """A hand-written pickle that, if unpickled, creates ``marker`` (opens it for writing)."""
    return b"\x80\x02cbuiltins\nopen\n(V" + str(marker).encode() + b"\nVw\ntR."


def test_pickle_payload_is_refused_without_running(tmp_path):
    # control: the payload is live -- unpickling it does create its marker file
    control = tmp_path / "control_marker"
    pickle.loads(_payload(control)).close()
    assert control.exists()

    path = _saved(tmp_path)
    marker = tmp_path / "pwned_marker"
    blob = _payload(marker)
    (path / "model.safetensors").write_bytes(blob)
    # an attacker can also fix up the hash in the manifest
    _rewrite_manifest(path, lambda m: m["tensors"].update(sha256=hashlib.sha256(blob).hexdigest()))
    with pytest.raises(ModelFileError, match="pickle / torch.save payload.*sysid never unpickles"):
        load_model(path, allow_import=True)
    assert not marker.exists()


def test_torch_save_file_is_refused(tmp_path):
    path = _saved(tmp_path)
    torch.save({"w": torch.zeros(2)}, path / "model.safetensors")
    blob = (path / "model.safetensors").read_bytes()
    _rewrite_manifest(path, lambda m: m["tensors"].update(sha256=hashlib.sha256(blob).hexdigest()))
    with pytest.raises(ModelFileError, match="pickle / torch.save payload"):
        load_model(path)


def test_garbage_tensor_file_with_matching_hash(tmp_path):
    path = _saved(tmp_path)
    blob = b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header!!}"
    (path / "model.safetensors").write_bytes(blob)
    _rewrite_manifest(path, lambda m: m["tensors"].update(sha256=hashlib.sha256(blob).hexdigest()))
    with pytest.raises(ModelFileError, match="not a valid safetensors file"):
        load_model(path)


def test_top_level_exports():
    from sysid.simulation import simulate

    assert sysid.save_model is save_model and sysid.load_model is load_model
    assert sysid.simulate is simulate and sysid.SolverConfig is sm.SolverConfig
