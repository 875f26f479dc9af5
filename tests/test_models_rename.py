"""Catalogue systems used with the names of the user's data (states/inputs renamed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sysid
from sysid.errors import ConfigError


def test_renamed_catalogue_system_keeps_the_dynamics_and_units(tmp_path):
    plain = sysid.models.physics("lotka_volterra")
    renamed = sysid.models.physics("lotka_volterra", states=["hare", "lynx"],
                                   state_units={"hare": "kpelts"})
    assert renamed.state_names == ("hare", "lynx")
    assert renamed.field.state_units == ("kpelts", plain.field.state_units[1])
    x = torch.tensor([[30.0, 4.0], [10.0, 20.0]], dtype=torch.float64)
    with torch.no_grad():
        # identical right-hand side: renaming only relabels positions
        assert torch.equal(plain.field(torch.tensor(0.0), x.to(plain.dtype)),
                           renamed.field(torch.tensor(0.0), x.to(renamed.dtype)))
    sysid.save_model(renamed, tmp_path / "m")
    back = sysid.load_model(tmp_path / "m")
    assert back.state_names == ("hare", "lynx")
    assert back.field.state_units[0] == "kpelts"


def test_renamed_inputs_reach_the_data():
    model = sysid.models.hybrid("duffing", states=["x", "v"], inputs=["force"], width=8)
    assert model.input_names == ("force",)
    data = sysid.systems.make_dataset("duffing", n_runs=1, n_obs=20, seed=1)
    data = data.rename({"u": "force"}) if "u" in data else data
    sim = sysid.simulate(model, data.rename({n: m for n, m in zip(sysid.systems.get("duffing").states, ["x", "v"])}))
    assert np.isfinite(sim["x"].values[0, :20]).all()


def test_wrong_number_of_names_is_an_error_listing_the_systems_states():
    with pytest.raises(ConfigError, match=r"has 2 states \['prey', 'predator'\]; 1 names were given"):
        sysid.models.physics("lotka_volterra", states=["hare"])


def test_units_for_unknown_names_are_an_error():
    with pytest.raises(ConfigError, match=r"units given for \['wolf'\]"):
        sysid.models.physics("lotka_volterra", states=["hare", "lynx"], state_units={"wolf": "n"})
