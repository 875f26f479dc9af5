"""Tampered or damaged files are refused, user mistakes are exit 2 with one line, and messages say
what a file really is (issue 17, items 3, 5 and 6)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import sysid
from sysid.cli import main
from sysid.errors import ConfigError, DataError, ModelFileError, ParameterError
from sysid.training import FitConfig

CSV = "t,N\n" + "".join(f"{t:.6g},{10 / (1 + 9 * np.exp(-0.8 * t)):.6g}\n"
                        for t in np.linspace(0, 10, 20))
FIT = ["--time", "t", "--states", "N", "--model", "physics:logistic", "--free", "r",
       "--params", "K=10", "--epochs", "2", "--set", "refine.stderr=false"]


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _resign(folder: Path) -> None:
    """Update a model folder's manifest.json to the files as they are now (a determined editor)."""
    listing = json.loads((folder / "manifest.json").read_text())
    for name in listing["files"]:
        data = (folder / name).read_bytes()
        listing["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(listing))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One ``sysid fit`` output folder (copied by each test that damages it)."""
    root = tmp_path_factory.mktemp("fit")
    (root / "in.csv").write_text(CSV)
    assert main(["--quiet", "fit", str(root / "in.csv"), *FIT, "--out", str(root / "fit")]) == 0
    return root / "fit"


@pytest.fixture
def fit(run_dir, tmp_path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "fit"))


# ---------------------------------------------------------------------------------------------
# model folders: every file listed with size and sha256, checked before reading


def test_edited_bounds_are_refused_even_with_a_matching_manifest(fit):
    model = fit / "model"
    assert sysid.load_model(model).observed == ("N",)
    spec = json.loads((model / "model.json").read_text())
    spec["model"]["field"]["parameters"]["r"]["bounds"] = [0.0, 600.0]  # moves r = lo + ... * sigmoid
    (model / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ModelFileError, match=r"model\.json (has \d+ bytes but the manifest lists|"
                                             r"sha256 of model\.json does not match)"):
        sysid.load_model(model)
    _resign(model)
    with pytest.raises(ModelFileError, match=r"parameter 'r' comes out as .* but was .* when saved; "
                                             r"the bounds or the structure were edited"):
        sysid.load_model(model)


def test_links_and_grown_files_are_refused_before_reading(fit, tmp_path):
    model = fit / "model"
    big = tmp_path / "outside.bin"
    big.write_bytes(b"\0" * 4_000_000)
    tensors = model / "model.safetensors"
    tensors.unlink()
    tensors.symlink_to(big)
    with pytest.raises(ModelFileError, match=r"model\.safetensors is a symbolic link .* refused "
                                             r"before reading"):
        sysid.load_model(model)
    tensors.unlink()
    shutil.copyfile(big, tensors)
    with pytest.raises(ModelFileError, match=r"model\.safetensors has 4000000 bytes but the manifest "
                                             r"lists \d+; the file changed"):
        sysid.load_model(model)


def test_a_manifest_asking_for_a_billion_layers_is_refused(tmp_path):
    path = sysid.save_model(sysid.models.neural(["x"], width=4, depth=1), tmp_path / "m")
    spec = json.loads((path / "model.json").read_text())
    spec["model"]["field"]["depth"] = 10**9
    (path / "model.json").write_text(json.dumps(spec))
    _resign(path)
    with pytest.raises(ModelFileError, match=r"depth in model\.json must be an integer from 1 to"):
        sysid.load_model(path)


def test_load_model_of_not_a_path():
    with pytest.raises(ModelFileError, match=r"load_model: path must be a folder path .* got NoneType"):
        sysid.load_model(None)


@pytest.mark.parametrize("name, damage, message", [
    ("metrics.json", lambda p: p.write_text("{not json"),
     r"metrics\.json has 9 bytes but the manifest lists \d+"),
    ("manifest.json", lambda p: p.write_text("{not json"),
     r"manifest\.json is not valid JSON"),
    ("history.csv", lambda p: p.write_bytes(b"\xff\xfe\x00garbage"),
     r"history\.csv has 10 bytes but the manifest lists"),
])
def test_a_damaged_results_folder_is_exit_2_naming_the_file(fit, capsys, name, damage, message):
    damage(fit / name)
    assert main(["report", str(fit)]) == 2
    assert re.search(message, _one_line(capsys.readouterr().err))


def test_damaged_files_without_a_file_list_are_parsed_with_clear_errors(fit, capsys):
    manifest = json.loads((fit / "manifest.json").read_text())
    del manifest["files"]  # an older results folder: no sizes to check, only the parsers
    (fit / "manifest.json").write_text(json.dumps(manifest))
    (fit / "config.toml").write_text("[data\nbroken")
    assert main(["simulate", str(fit), "--y0", "N=1", "--t-end", "5", "--out",
                 str(fit.parent / "s.csv")]) == 2
    assert re.search(r"config\.toml is not valid TOML", _one_line(capsys.readouterr().err))
    (fit / "history.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert main(["report", str(fit)]) == 2
    assert re.search(r"history\.csv is not UTF-8 text", _one_line(capsys.readouterr().err))


# ---------------------------------------------------------------------------------------------
# user mistakes: exit 2 and one line on the command line, documented error types in Python


@pytest.mark.parametrize("extra, values, message", [
    (["--seed", "99999999999999999999999"], None, r"Invalid value for '--seed'.*0<=x<=9223372036854775807"),
    (["--set", "time_scale=1e-300"], None, r"time_scale 1e-300 is outside 1e-150 to 1e150"),
    ([], 1e300, r"variable 'N' holds values as large as 5e\+300; .* squares overflow"),
    ([], 1e-300, r"variable 'N' holds only values as small as 5e-300"),
])
def test_mistakes_exit_2_with_one_line(tmp_path, capsys, extra, values, message):
    data = tmp_path / "in.csv"
    text = CSV if values is None else "t,N\n" + "".join(f"{t},{values * (1 + t)}\n" for t in range(5))
    data.write_text(text)
    assert main(["fit", str(data), *FIT, *extra, "--out", str(tmp_path / "out")]) == 2
    assert re.search(message, _one_line(capsys.readouterr().err))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_numpy_scalars_are_accepted_in_fit_config():
    cfg = FitConfig(epochs=np.int64(3), seed=np.int32(2), max_time=np.float32(5.0),
                    optimizer={"lr": np.float32(0.01), "batch_windows": np.int64(8)},
                    shooting={"horizons": (np.int64(5), np.int64(10))})
    assert type(cfg.epochs) is int and type(cfg.optimizer.lr) is float
    assert cfg.shooting.horizons == (5, 10) and type(cfg.shooting.horizons[0]) is int
    assert json.loads(json.dumps(cfg.to_dict()))["optimizer"]["batch_windows"] == 8


@pytest.mark.parametrize("call, error, message", [
    (lambda m, ds, d: sysid.simulate(m, {"x": 1.0}, "abc"), DataError,
     r"simulate: times must be numbers; got str"),
    (lambda m, ds, d: sysid.load_csv(d / "in.csv", time="t", states=None), ConfigError,
     r"load_csv: states must be a list of column names; got NoneType"),
    (lambda m, ds, d: sysid.from_arrays([np.arange(3.0)], {"x": [np.ones(3)]}, states=None),
     DataError, r"from_arrays: states must be a list of variable names; got NoneType"),
    (lambda m, ds, d: sysid.save_model(m, None), ModelFileError,
     r"save_model: path must be a folder path .* got NoneType"),
    (lambda m, ds, d: sysid.report(m, None, out=d / "r"), DataError,
     r"report: data must be a trajectory dataset .* got NoneType"),
    (lambda m, ds, d: sysid.report(m, ds, out=None), ConfigError, r"report: out must be a folder path"),
    (lambda m, ds, d: FitConfig(epoch=3), ConfigError,
     r"FitConfig: unknown option 'epoch'\. Did you mean 'epochs'\?"),
    (lambda m, ds, d: sysid.training.Optimizer(l=0.1), ConfigError,
     r"Optimizer: unknown option 'l'\. Did you mean 'lr'\?"),
    (lambda m, ds, d: sysid.models.physics("logistic", values="r=1"), ParameterError,
     r"values must be a mapping of parameter name to value, e\.g\. \{'r': 1\.0\}; got str"),
])
def test_wrong_types_in_the_python_api_raise_the_documented_errors(tmp_path, call, error, message):
    (tmp_path / "in.csv").write_text(CSV)
    model = sysid.models.neural(["x"], width=4, depth=1)
    ds = sysid.from_arrays([np.arange(5.0)], {"x": [np.arange(5.0)]}, states=["x"])
    with pytest.raises(error, match=message):
        call(model, ds, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # nothing written


def test_a_model_on_the_meta_device_is_refused(tmp_path):
    model = sysid.models.neural(["x"], width=4, depth=1).to("meta")
    data = sysid.from_arrays([np.arange(5.0)], {"x": [np.arange(5.0)]}, states=["x"])
    with pytest.raises(ConfigError, match=r"fit: the model's tensors .* are on the meta device"):
        sysid.fit(model, data, FitConfig(epochs=1, progress=False))
    with pytest.raises(ModelFileError, match=r"save_model: the model's tensors .* meta device"):
        sysid.save_model(model, tmp_path / "m")


def test_resuming_another_fits_checkpoint_is_a_config_error(tmp_path):
    t = np.linspace(0, 10, 12)
    data = sysid.from_arrays([t], {"N": [10 / (1 + 9 * np.exp(-0.8 * t))]}, states=["N"])
    ckpt = tmp_path / "fit.ckpt"
    cfg = FitConfig(epochs=2, progress=False, warm_start=False, checkpoint={"path": str(ckpt)},
                    refine={"stderr": False})
    sysid.fit(sysid.models.physics("logistic", free=["r"], values={"K": 10.0}), data, cfg)
    other_model = sysid.models.physics("logistic", free=["r", "K"], values={"K": 10.0})
    with pytest.raises(ConfigError, match=r"checkpoint .* was written for another model"):
        sysid.fit(other_model, data, cfg, resume_from=str(ckpt))
    other_data = data.copy(deep=True)
    other_data["N"].values[0, 3] += 0.5
    with pytest.raises(ConfigError, match=r"checkpoint .* was written on other data \(same shape"):
        sysid.fit(sysid.models.physics("logistic", free=["r"], values={"K": 10.0}), other_data, cfg,
                  resume_from=str(ckpt))


# ---------------------------------------------------------------------------------------------
# honest messages about what a file is


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_files_with_a_byte_order_mark_are_read(tmp_path, encoding):
    path = tmp_path / "in.csv"
    path.write_bytes(CSV.encode(encoding))  # Python writes the BOM for utf-16/utf-32
    ds = sysid.load_csv(path, time="t", states=["N"])
    assert ds["N"].shape == (1, 20)


def test_utf16_without_a_mark_gets_a_useful_hint(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(CSV.encode("utf-16-le"))
    with pytest.raises(DataError, match=r"looks like UTF-16 text without a byte-order mark; pass "
                                        r"encoding='utf-16-le'"):
        sysid.load_csv(path, time="t", states=["N"])


def test_gzip_is_read_and_other_archives_are_named(tmp_path):
    gz = tmp_path / "in.csv"
    gz.write_bytes(gzip.compress(CSV.encode()))
    plain = tmp_path / "plain.csv"
    plain.write_text(CSV)
    a = sysid.load_csv(gz, time="t", states=["N"])
    b = sysid.load_csv(plain, time="t", states=["N"])
    np.testing.assert_array_equal(a["N"].values, b["N"].values)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("in.csv", CSV)
    (tmp_path / "zipped.csv").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"zipped\.csv is not a text table: it is a ZIP archive"):
        sysid.load_csv(tmp_path / "zipped.csv", time="t", states=["N"])


def test_mixed_naive_and_zoned_timestamps_are_refused(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("when,x\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00+02:00,2\n"
                    "2024-01-01T03:00:00Z,3\n")
    with pytest.raises(DataError, match=r"time column 'when' mixes timestamps without a time zone "
                                        r"\('2024-01-01T00:00:00' at row 2\) and with one "
                                        r"\('2024-01-01T01:00:00\+02:00' at row 3\)"):
        sysid.load_csv(path, time="when", states=["x"])
    path.write_text("when,x\n2024-01-01,1\n2024-01-02,2\n")  # dates alone have no zone: fine
    assert sysid.load_csv(path, time="when", states=["x"])["time"].attrs["units"] == "days"


def test_checkpoints_hold_tensors_only(tmp_path):
    # the data fingerprint written into checkpoints is plain text (weights_only loading)
    from sysid.training.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "c.pt", {"data": "ab" * 32, "model": {"w": torch.zeros(2)}})
    assert load_checkpoint(tmp_path / "c.pt")["data"] == "ab" * 32


def test_get_run_without_xarray_selection_is_identical():
    # get_run is built from the arrays (metrics and reports call it once per run and state: for
    # 10 000 runs the xarray selection cost minutes); it must equal the selection it replaces
    import xarray as xr

    import sysid.datasets
    from sysid.data.schema import OBS, TIME, TRAJ

    def by_selection(ds, run_id):
        one = ds.sel({TRAJ: run_id})
        n = int(np.count_nonzero(~np.isnan(ds[TIME].sel({TRAJ: run_id}).values)))
        one = one.isel({OBS: slice(0, n)})
        out = one.drop_vars([TIME, TRAJ]).rename({OBS: TIME}).assign_coords(
            {TIME: (TIME, one[TIME].values, ds[TIME].attrs)})
        out.attrs = {**ds.attrs, "trajectory": run_id}
        return out

    for ds in (sysid.datasets.load("theophylline"),  # per-run coordinates dose and weight
               sysid.systems.make_dataset("mass_spring_damper", n_runs=3, n_obs=20, missing=0.2,
                                          irregular=True)):
        for run in sysid.data.run_ids(ds):
            xr.testing.assert_identical(sysid.data.get_run(ds, run), by_selection(ds, run))
    with pytest.raises(DataError, match=r"get_run: no run 'nope'; runs are \['bod'\]"):
        sysid.data.get_run(sysid.datasets.load("bod"), "nope")
