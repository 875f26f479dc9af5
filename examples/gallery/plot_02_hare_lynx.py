"""
Predator and prey from the Hudson's Bay pelts
=============================================

Lotka-Volterra fitted to 21 years of hare and lynx pelts (the shipped
dataset ``hare_lynx``), with the lognormal error model of the Stan case
study whose posterior means (a, b, c, d = 0.55, 0.028, 0.80, 0.024) are the
reference. A shorter version of ``make demo``.
"""

# %%
import numpy as np

import sysid
from sysid import plot

data = sysid.datasets.load("hare_lynx")
lv = sysid.systems.get("lotka_volterra")
start = {"a": 1.0, "b": 0.05, "c": 0.5, "d": 0.05}
model = sysid.models.physics(lv, values=start, states=["hare", "lynx"])
config = sysid.FitConfig(loss="log", initial_states="free", epochs=300,
                         seed=0, progress=False)
result = sysid.fit(model, data, config)
print(result.summary())

# %%
# Against the Stan posterior means
# --------------------------------
stan = {"a": 0.55, "b": 0.028, "c": 0.80, "d": 0.024}
table = sysid.analysis.parameter_table(result, stan)
table[["value", "reference", "percent_error", "ci95_low", "ci95_high",
       "reference_in_ci"]]

# %%
# The fitted cycle, drawn densely, and the phase plane
# ----------------------------------------------------
# The fit estimated the 1900 populations (``initial_states="free"``); the
# model is simulated from them on a fine grid. The phase portrait shows the
# learned field beside Stan's, with the orbit the learned model follows.
y0 = result.initial_states.loc["hare_lynx"].to_dict()
print({name: round(value, 2) for name, value in y0.items()})
orbit = sysid.simulate(result.model, y0, np.linspace(1900, 1920, 401),
                       runs=["hare_lynx"])
fig_traj = plot.trajectories(data, orbit)

stan_lv = sysid.analysis.as_dynamics(lv, params=stan,
                                     states=["hare", "lynx"])
fig_phase = plot.phase_portrait(result.model, stan_lv, data=data,
                                learned_orbits=orbit)
