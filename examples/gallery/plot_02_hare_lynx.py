"""
Predator and prey from the Hudson's Bay pelts
=============================================

Lotka-Volterra fitted to 21 years of hare and lynx pelts (shipped as the dataset
``hare_lynx``), with the lognormal error model of the Stan case study whose posterior means
(a, b, c, d = 0.55, 0.028, 0.80, 0.024) are the reference. A shorter version of ``make demo``.
"""

# %%
import sysid
from sysid import plot

data = sysid.datasets.load("hare_lynx")
lv = sysid.systems.get("lotka_volterra")
model = sysid.models.physics(lv, values={"a": 1.0, "b": 0.05, "c": 0.5, "d": 0.05},
                             states=["hare", "lynx"])
config = sysid.FitConfig(loss="log", initial_states="free", epochs=300, seed=0, progress=False)
result = sysid.fit(model, data, config)
print(result.summary())

# %%
# Against the Stan posterior means
# --------------------------------
stan = {"a": 0.55, "b": 0.028, "c": 0.80, "d": 0.024}
table = sysid.analysis.parameter_table(result, stan)
table[["value", "reference", "percent_error", "ci95_low", "ci95_high", "reference_in_ci"]]

# %%
# The fitted cycle, drawn densely, and the phase plane
# ----------------------------------------------------
# ``predict`` simulates from the fitted initial states (``initial_states="free"``); the phase
# portrait shows both fields with the orbit each one follows.
import numpy as np

dense = sysid.data.from_arrays([np.linspace(1900, 1920, 401)],
                               {"hare": [np.r_[data["hare"].values[0, :1], np.full(400, np.nan)]],
                                "lynx": [np.r_[data["lynx"].values[0, :1], np.full(400, np.nan)]]},
                               states=["hare", "lynx"], runs=["hare_lynx"])
orbit = sysid.analysis.predict(result, dense)
fig_traj = plot.trajectories(data, orbit)
stan_field = sysid.analysis.as_dynamics(lv, params=stan, states=["hare", "lynx"])  # the data's names
fig_phase = plot.phase_portrait(result.model, stan_field, data=data, learned_orbits=orbit)
