"""
A neural ODE learns a pendulum, and is checked against the truth
================================================================

No equations given: a small multilayer perceptron is trained as
``dx/dt = f(x)`` on noisy runs of a damped pendulum, then compared with the
pendulum's own equations on a run it never saw: trajectories, vector field
and fixed points.
"""

# %%
import sysid
from sysid import plot

pendulum = sysid.systems.get("pendulum")
data = sysid.systems.make_dataset(pendulum, n_runs=5, n_obs=80, noise=0.02,
                                  seed=1)
train, test = sysid.data.split_runs(data, ["run4"])
model = sysid.models.neural(["theta", "omega"], width=24, depth=2, seed=0)
config = sysid.FitConfig(epochs=300, seed=0, progress=False)
result = sysid.fit(model, train, config)
result

# %%
# Held-out run: learned model against the reference equations
# -----------------------------------------------------------
cmp = sysid.compare(result.model, pendulum, data=test)
print(cmp.table().round(3))
print(cmp.valid_time)

# %%
# Vector fields and fixed points
# ------------------------------
# The stream plot covers the range of the training data (widened by 25 %),
# where the network had something to learn from.
fig = plot.phase_portrait(result.model, pendulum, data=train)
fixed = sysid.analysis.compare_fixed_points(result.model, pendulum,
                                            data=train)
fixed[["theta_reference", "theta_learned", "stability_reference",
       "stability_learned", "status"]]
