"""shooting="auto" picks single shooting for short series; when the whole run cannot be
integrated from the start (here logistic growth from a noisy, negative first count, which runs
away over 180 years), the fit switches to multiple shooting, says so, and still reaches the
least-squares optimum that SciPy finds from a good start."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares

import sysid
from sysid.training import FitWarning

T = np.linspace(0.0, 180.0, 20)
# logistic data (r ~ 0.031 /year, K ~ 200) with additive noise; the first count is negative
N = np.array([-1.1213302, 7.1115912, 8.27423218, 15.97267947, 17.35223277, 16.52704999,
              21.58359305, 29.24679054, 45.13495489, 48.54936688, 63.73997025, 75.3616364,
              92.23018359, 105.84186859, 117.92540216, 142.80404299, 144.95715311,
              158.13994093, 167.61862269, 178.43050877])


def test_unintegrable_single_shooting_start_switches_to_multiple():
    data = sysid.from_arrays([T], {"N": [N]}, states=["N"])
    model = sysid.models.physics("logistic", values={"r": 0.034477, "K": 236.704742})
    result = sysid.fit(model, data, sysid.FitConfig(loss="sse", initial_states="free",
                                                    progress=False))
    assert "auto: the whole runs could not be integrated from the start" in result.message
    assert result.convergence.converged

    def residuals(q):
        r, k, n0 = q
        sol = solve_ivp(lambda t, n: r * n * (1 - n / k), (0.0, 180.0), [n0], t_eval=T,
                        rtol=1e-10, atol=1e-10)
        return sol.y[0] - N

    ref = least_squares(residuals, [0.03, 200.0, 3.0], x_scale="jac").x
    values = result.parameters.set_index("name")["value"]
    # same optimum to 1 %: the refinement's RK4 step is chosen for 1 % of the noise level
    assert values["r"] == pytest.approx(ref[0], rel=0.01)
    assert values["K"] == pytest.approx(ref[1], rel=0.01)
    assert float(result.initial_states.iloc[0]["N"]) == pytest.approx(ref[2], rel=0.05, abs=0.2)


def test_configured_single_shooting_is_not_changed():
    data = sysid.from_arrays([T], {"N": [N]}, states=["N"])
    model = sysid.models.physics("logistic", values={"r": 0.034477, "K": 236.704742})
    cfg = sysid.FitConfig(loss="sse", initial_states="free", shooting="single", epochs=3,
                          progress=False)
    # what the user asked for is what runs: it fails, and says so
    with pytest.warns(FitWarning, match="did not converge"):
        result = sysid.fit(model, data, cfg)
    assert result.stopped_reason == "diverged"
    assert "could not be integrated from the start" not in result.message
    assert "single shooting" in result.message
