"""Unmeasured states start from the model's latent_initial (a catalogue system's y0 by default)."""

from __future__ import annotations

import numpy as np

import sysid
from sysid.training.engine import _model_spec
from sysid.training.problem import compute_scales, prepare


def test_catalogue_system_gives_its_typical_initial_state_to_unmeasured_states():
    model = sysid.models.physics("sir", observed=["I"])
    sir = sysid.systems.get("sir")
    assert model.latent_initial == {"S": sir.y0[0], "R": sir.y0[2]}
    # the user's guess wins
    assert sysid.models.physics("sir", observed=["I"], latent_initial={"S": 500.0}).latent_initial["S"] == 500.0


def test_latent_guess_sets_scale_and_window_start_guess():
    data = sysid.systems.make_dataset("sir", n_runs=1, n_obs=15, noise=0.0, seed=0)[["I"]]
    model = sysid.models.physics("sir", observed=["I"], latent_initial={"S": 760.0, "R": 0.0})
    spec = _model_spec(model)
    scales = compute_scales(data, spec, 7)
    s, r = spec.states.index("S"), spec.states.index("R")
    assert scales.scale[s] == 760.0 and scales.scale[r] == 1.0  # magnitude of the guess, 1 for 0
    prep = prepare(data, spec, scales, 7, dtype=__import__("torch").float64)
    # every window start of S begins at the guess (scaled: 760 / 760 = 1), R at 0
    n = int(prep.lengths[0])
    np.testing.assert_allclose(prep.z_guess[0, :n, s].numpy(), 1.0)
    np.testing.assert_allclose(prep.z_guess[0, :n, r].numpy(), 0.0)
