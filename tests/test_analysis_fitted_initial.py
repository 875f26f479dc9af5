"""Free runs of a fitted model start where the fit put each training run's initial state."""

from __future__ import annotations

import numpy as np

import sysid
import sysid.analysis as an


def test_free_run_starts_from_the_fitted_initial_states():
    data = sysid.systems.make_dataset("lotka_volterra", n_runs=2, n_obs=30, noise=0.05, seed=3)
    model = sysid.models.physics("lotka_volterra")
    cfg = sysid.FitConfig(epochs=20, initial_states="free", progress=False, warm_start=False, seed=0)
    result = sysid.fit(model, data, cfg)
    pred = an.predict(result, data)
    est = result.initial_states
    for run in sysid.data.run_ids(data):
        first = sysid.data.get_run(pred, run).isel(time=0)
        for name in ("prey", "predator"):
            # the free run starts exactly at the estimate (float32 fit -> 1e-5 relative)
            np.testing.assert_allclose(float(first[name]), float(est.loc[run, name]), rtol=1e-5)
    # the plain Model has no estimates: it starts from the measured (noisy) first sample
    plain = an.predict(result.model, data)
    run = sysid.data.run_ids(data)[0]
    assert float(sysid.data.get_run(plain, run)["prey"][0]) == float(sysid.data.get_run(data, run)["prey"][0])
