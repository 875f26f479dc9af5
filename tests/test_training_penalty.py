"""The hybrid's neural penalty stays finite when no sample measures every state."""

from __future__ import annotations

import math

import numpy as np

from sysid.data import from_arrays
from sysid.models import hybrid
from sysid.training import FitConfig, Optimizer, Refine, Shooting, fit


def _transfer(t, s, u, p, xp):
    return xp.stack([-p["k"] * s[..., 0], p["k"] * s[..., 0]])


def test_state_measured_only_at_the_start_does_not_make_the_loss_nan():
    t = np.arange(8.0)
    x = 5 * np.exp(-0.3 * t)
    y = np.full(8, np.nan)
    y[0] = 0.0  # y known at t = 0 only
    ds = from_arrays([t], {"x": [x], "y": [y]}, states=["x", "y"])
    model = hybrid(_transfer, {"k": 0.5}, ["x", "y"], width=4)
    result = fit(model, ds, FitConfig(epochs=40, progress=False, shooting=Shooting(horizons=(8,)),
                                      warm_start=False, refine=Refine(enabled=False, stderr=False),
                                      optimizer=Optimizer(lr=0.05)))
    assert result.stopped_reason == "completed"
    assert all(math.isfinite(v) for v in result.history["loss"])
    k = float(result.parameters.set_index("name").loc["k", "value"])
    # noise-free decay at rate 0.3: the physics term carries it (the penalty keeps the net small)
    assert abs(k - 0.3) < 0.05
