"""The neural time scale is the data's characteristic time, not the run length."""

from __future__ import annotations

import numpy as np
import pytest

from sysid.data import characteristic_time


def _one_run(t, x):
    return t[None, :], x[None, :, None], np.ones((1, t.size, 1), bool), np.array([t.size])


def test_sinusoid_gives_one_over_omega():
    # x = sin(w t): std = 1/sqrt(2), rms(dx/dt) = w/sqrt(2), so the time is 1/w exactly
    w = 3.0
    t = np.linspace(0.0, 10 * 2 * np.pi / w, 2001)  # whole periods: std and rms are exact
    x = np.sin(w * t)
    tt, y, m, n = _one_run(t, x)
    got = characteristic_time(tt, y, m, n, 7, np.array([x.std()]), float(t[-1]))
    # smoothing derivatives (7-point local quadratic, ~200 samples per period) biases them by < 0.1 %
    assert got == pytest.approx(1.0 / w, rel=2e-3)


def test_kept_between_sample_spacing_and_run_duration():
    t = np.linspace(0.0, 10.0, 11)
    tt, y, m, n = _one_run(t, 1e-9 * t)  # nearly constant: the raw ratio would be huge
    assert characteristic_time(tt, y, m, n, 7, np.array([1.0]), 10.0) == 10.0
    tt, y, m, n = _one_run(t, np.where(np.arange(11) % 2 == 0, 1.0, -1.0))  # faster than sampling
    assert characteristic_time(tt, y, m, n, 7, np.array([1.0]), 10.0) >= 1.0


def test_time_scale_option_chooses_the_neural_time_unit():
    import sysid
    from sysid.errors import ConfigError
    from sysid.training import FitConfig, fit

    data = sysid.systems.make_dataset("harmonic_oscillator", n_runs=2, n_obs=200, noise=0.0, seed=0,
                                      t=np.linspace(0.0, 20.0, 200))
    states = sysid.data.state_names(data)
    base = dict(epochs=1, progress=False, warm_start=False, refine={"stderr": False})
    span = fit(sysid.models.neural(states, width=4), data, FitConfig(time_scale="duration", **base))
    assert float(span.model.field.time_scale) == pytest.approx(20.0, rel=1e-9)
    fixed = fit(sysid.models.neural(states, width=4), data, FitConfig(time_scale=0.5, **base))
    assert float(fixed.model.field.time_scale) == 0.5
    auto = fit(sysid.models.neural(states, width=4), data, FitConfig(**base))
    # several swings per run: the characteristic time is far below the 20-unit span
    assert float(auto.model.field.time_scale) < 5.0
    with pytest.raises(ConfigError, match=r"time_scale must be one of \['characteristic', 'duration'\]"):
        FitConfig(time_scale="years")
    with pytest.raises(ConfigError, match="time_scale must be"):
        FitConfig(time_scale=-1.0)
