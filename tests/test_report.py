"""sysid.report: self-contained HTML, Markdown and JSON of one fit, written atomically."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

import sysid
import sysid.systems as systems
from sysid.analysis import compare, parameter_table
from sysid.solvers import default_solver
from sysid.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def lv_fit():
    """A physics model of Lotka–Volterra fitted with sysid.fit to 3 noisy runs (~4 s)."""
    torch.manual_seed(0)
    lv = systems.get("lotka_volterra")
    data = systems.make_dataset(lv, n_runs=3, n_obs=60, noise=0.02, seed=0)
    model = sysid.models.physics(lv, values={"a": 0.5, "b": 0.03, "c": 0.9, "d": 0.02})
    result = sysid.fit(model, data, sysid.FitConfig(epochs=40, progress=False, seed=0))
    return lv, data, result


@pytest.fixture(scope="module")
def full_report(lv_fit, tmp_path_factory):
    lv, data, result = lv_fit
    out = tmp_path_factory.mktemp("report") / "rep"
    files = sysid.report(result, data, out=out, reference=lv, held_out=["run2"], title="LV <fit>")
    return out, files


def test_report_files_and_content(lv_fit, full_report):
    lv, data, result = lv_fit
    out, files = full_report
    names = sorted(p.name for p in files)
    assert {"report.html", "report.md", "report.json"} <= set(names)
    pngs = sorted(p.name for p in files if p.suffix == ".png")
    assert pngs == sorted(["training.png", "trajectories.png", "residuals_time.png", "residuals.png",
                           "reference_trajectories.png", "phase_portrait.png", "field_error.png",
                           "parameters.png"])
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<title>LV &lt;fit&gt;</title>" in page  # escaped
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert len(imgs) == len(pngs)  # every figure embedded, nothing loaded from elsewhere
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in imgs)
    assert "http://" not in page and "https://" not in page

    md = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Data", "## Model", "## Training", "## Fit to the data", "## 1-step-ahead prediction",
                    "## Residual whiteness", "## Comparison with lotka_volterra", "### Vector field",
                    "### Fixed points", "### Periodic orbit", "### Recovered parameters"):
        assert heading in md
    assert "](figures/trajectories.png)" in md

    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    # the JSON numbers are those of the analysis functions run directly
    settings = default_solver("report")  # the report's default solver settings
    direct = compare(result, data, held_out=["run2"], settings=settings).table()
    row = next(r for r in doc["free_run"]["metrics"] if r["run"] == "run2" and r["variable"] == "prey")
    assert row["fit_percent"] == pytest.approx(direct.loc[("run2", "prey"), "fit_percent"], rel=1e-9)
    assert row["set"] == "held-out"
    pars = {r["parameter"]: r for r in doc["reference"]["parameters"]}
    expected = parameter_table(result, lv)
    assert pars["a"]["percent_error"] == pytest.approx(expected.loc["a", "percent_error"], rel=1e-9)
    assert pars["a"]["units"] == "1/year"
    # 40 epochs from a 10-20 % wrong start recover LV within a few per cent
    assert all(abs(p["percent_error"]) < 10 for p in pars.values())
    fps = doc["reference"]["fixed_points"]
    assert [f["status"] for f in fps] == ["matched", "matched"]  # saddle at 0 and the centre
    assert all(f["stability_reference"] in ("saddle", "centre") for f in fps)
    assert doc["reference"]["limit_cycle"]["reference"]["found"]
    assert doc["data"]["runs"][2]["set"] == "held-out"
    assert doc["notes"] == []
    # words a reader needs: plural runs, regular sampling stated, the valid time explained and given
    # for the reference too (the yardstick of the data's noise)
    assert "3 runs (1 held out); time unit: year; regular sampling" in md
    assert "Valid prediction time: time from a run's start until the normalised error" in md
    vt = {r["run"]: r for r in doc["free_run"]["valid_time"]}
    assert set(vt) == {"run0", "run1", "run2"} and all(r["valid_time_reference"] > 0 for r in vt.values())
    assert "takes the place of the data (no measurement noise)" in md


def test_report_refuses_to_overwrite_and_records_skipped_sections(lv_fit, tmp_path):
    lv, data, result = lv_fit
    out = tmp_path / "rep"
    sysid.report(result.model, data, out=out, history=result.history)
    with pytest.raises(ConfigError, match="already exist; pass overwrite=True"):
        sysid.report(result.model, data, out=out)
    # a reference over other states cannot be compared: each section says why it was skipped
    files = sysid.report(result.model, data, out=out, reference=systems.get("van_der_pol"), overwrite=True)
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert any(n.startswith("reference: skipped (DataError: the reference's states ['x', 'v'] differ")
               for n in doc["notes"])
    assert "## Warnings and skipped sections" in (out / "report.md").read_text(encoding="utf-8")
    assert any(p.name == "report.html" for p in files)


def test_report_with_validation_dataset_warns_on_extrapolation(lv_fit, tmp_path):
    lv, data, result = lv_fit
    t = np.linspace(0.0, 20.0, 30)
    far = systems.integrate(lv, [120.0, 70.0], t, run_id="far")
    with pytest.warns(sysid.analysis.ExtrapolationWarning, match="run 'far'"):
        sysid.report(result, data, out=tmp_path / "v", validation=far)
    doc = json.loads((tmp_path / "v" / "report.json").read_text(encoding="utf-8"))
    support = {r["run"]: r for r in doc["free_run"]["support"]}
    assert not support["far"]["inside"] and support["far"]["max_distance"] > 1.0
    assert any("ExtrapolationWarning" in n for n in doc["notes"])


def test_report_argument_errors(lv_fit, tmp_path):
    lv, data, result = lv_fit
    with pytest.raises(DataError, match=r"held_out runs \['zz'\] are not in the data"):
        sysid.report(result, data, out=tmp_path / "a", held_out=["zz"])
    with pytest.raises(DataError, match=r"validation runs \['run0', 'run1', 'run2'\] have the same ids"):
        sysid.report(result, data, out=tmp_path / "b", validation=data)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        sysid.report(result, data, out=tmp_path / "c", k=0)
    with pytest.raises(ConfigError, match="model must be a sysid FitResult or Model"):
        sysid.report(lv, data, out=tmp_path / "d")


def test_report_on_irregular_sampling_skips_whiteness_with_the_reason(lv_fit, tmp_path):
    lv, _, result = lv_fit
    data = systems.make_dataset(lv, n_runs=1, n_obs=40, noise=0.02, irregular=True, seed=1)
    sysid.report(result.model, data, out=tmp_path / "irr")
    md = (tmp_path / "irr" / "report.md").read_text(encoding="utf-8")
    assert "1 run (0 held out)" in md and "irregular sampling (time steps from" in md
    assert "Residual whiteness skipped: the runs are irregularly sampled" in md
    doc = json.loads((tmp_path / "irr" / "report.json").read_text(encoding="utf-8"))
    assert doc["residuals"]["skipped"].startswith("skipped: the runs are irregularly sampled")
    figs = sorted(p.name for p in (tmp_path / "irr" / "figures").iterdir())
    # the residuals-vs-time panel stays (it needs no even sampling); the autocorrelation goes
    assert "residuals_time.png" in figs and "residuals.png" not in figs
    assert "phase_portrait.png" in figs  # no reference: the learned field with its orbits
