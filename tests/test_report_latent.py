"""A report of a model with unmeasured states is written; sections that need them say why not."""

from __future__ import annotations

import json

import sysid


def test_report_with_unmeasured_states_and_a_reference_by_name(tmp_path):
    data = sysid.systems.make_dataset("sir", n_runs=1, n_obs=15, noise=0.02, seed=0)[["I"]]
    model = sysid.models.physics("sir", observed=["I"], free=["beta", "gamma"])
    result = sysid.fit(model, data, sysid.FitConfig(epochs=5, progress=False, warm_start=False))
    files = sysid.report(result, data, out=tmp_path, reference="sir")
    assert {f.name for f in files} >= {"report.html", "report.md", "report.json"}
    notes = json.loads((tmp_path / "report.json").read_text())["notes"]
    # k-step prediction needs every state measured: skipped with the reason, not a crash
    assert any("k-step" in n and "needs every state measured" in n for n in notes)
    md = (tmp_path / "report.md").read_text()
    assert "## Comparison with sir" in md and "Periodic orbit" in md
