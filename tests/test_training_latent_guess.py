"""Unmeasured states start from the model's latent_initial (a catalogue system's y0 by default)."""

from __future__ import annotations

import numpy as np

import sysid
from sysid.training.engine import _model_spec
from sysid.training.problem import fit_scaling, prepare, read_arrays


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
    arrays = read_arrays(data, spec, "fit")
    scales = fit_scaling(arrays, spec, 7)
    assert scales.names == spec.states
    s, r = spec.states.index("S"), spec.states.index("R")
    i = spec.states.index("I")
    assert scales.scale[i] < 760.0  # the spread of the measured I
    # the guess's magnitude; a zero guess takes the measured states' typical spread (not 1: R grows
    # to hundreds and a scale of 1 blew its continuity penalty up)
    assert scales.scale[s] == 760.0 and scales.scale[r] == scales.scale[i]
    prep = prepare(arrays, spec, scales, 7, dtype=__import__("torch").float64)
    # every window start of S begins at the guess (scaled: 760 / 760 = 1), R at 0 (the fit then
    # moves them along one simulation of the run before training)
    n = int(prep.lengths[0])
    np.testing.assert_allclose(prep.z_guess[0, :n, s].numpy(), 1.0)
    np.testing.assert_allclose(prep.z_guess[0, :n, r].numpy(), 0.0)
