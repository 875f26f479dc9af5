"""A model built from a catalogue system under the data's names is compared with that system."""

from __future__ import annotations

import json

import pytest

import sysid
from sysid.analysis import as_dynamics
from sysid.errors import ConfigError


def test_report_maps_the_reference_onto_the_models_names(tmp_path):
    data = sysid.systems.make_dataset("lotka_volterra", n_runs=2, n_obs=40, noise=0.02, seed=2)
    data = data.rename(prey="hare", predator="lynx")
    model = sysid.models.physics("lotka_volterra", states=["hare", "lynx"])
    result = sysid.fit(model, data, sysid.FitConfig(epochs=5, progress=False, warm_start=False))
    sysid.report(result, data, out=tmp_path, reference="lotka_volterra")
    report = json.loads((tmp_path / "report.json").read_text())
    assert not any("differ" in n for n in report["notes"]), report["notes"]
    md = (tmp_path / "report.md").read_text()
    assert "### Recovered parameters" in md and "### Fixed points" in md
    assert "hare_reference" in md  # fixed-point table in the data's names


def test_system_reference_takes_names_of_the_same_length_only():
    lv = sysid.systems.get("lotka_volterra")
    assert as_dynamics(lv, states=["hare", "lynx"]).states == ("hare", "lynx")
    with pytest.raises(ConfigError, match=r"has 2 states \['prey', 'predator'\]; 1 names were given"):
        as_dynamics(lv, states=["hare"])
