"""
From a CSV file to a fitted, simulated and judged model
=======================================================

The whole loop on one page: read a lab CSV, fit a physics model with unknown
parameters, simulate it under a new input, and compare it with the data. The
file is ``examples/data/duffing.csv``: three runs of a driven double-well
oscillator, position ``x``, velocity ``v`` and the measured force ``u``
(``examples/make_data.py`` says how it was made).
"""

# %%
# Read the data
# -------------
# One long CSV with a run column. Columns are named without their units
# (``"x"`` for ``x [m]``); the units travel with the data.
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import sysid
from sysid import plot

DATA = Path(sysid.__file__).resolve().parents[1] / "examples" / "data"
data = sysid.load_csv(DATA / "duffing.csv", time="t", states=["x", "v"],
                      inputs=["u"], trajectory="run")
print(sysid.data.run_ids(data))
print({name: data[name].attrs["units"] for name in data.data_vars})

# %%
# Fit a physics model
# -------------------
# The Duffing equation from the catalogue,
# ``x'' = -delta x' - alpha x - beta x^3 + u``, with all three parameters
# free and started 50 % off. ``sysid.fit`` returns a ``FitResult``; in a
# notebook (and here) it shows itself as a short table.
duffing = sysid.systems.get("duffing")
start = {"delta": 0.3, "alpha": -0.5, "beta": 1.5}
model = sysid.models.physics(duffing, values=start, states=["x", "v"],
                             inputs=["u"])
config = sysid.FitConfig(epochs=120, seed=0, progress=False)
result = sysid.fit(model, data, config)
result

# %%
# The parameters with their standard errors; the data were made with
# delta = 0.2, alpha = -1, beta = 1.
result.parameters[["name", "value", "stderr", "units"]]

# %%
# Simulate under a new input
# --------------------------
# From a chosen initial state, driven by the signal in ``forcing.csv``
# (a DataFrame with a ``time`` column and one column per input).
forcing = pd.read_csv(DATA / "forcing.csv")
forcing.columns = ["time", "u"]
t = np.linspace(0.0, 20.0, 401)
sim = sysid.simulate(result.model, {"x": 1.0, "v": 0.0}, t, inputs=forcing)

fig_sim = Figure(figsize=(7, 2.6), layout="constrained")
ax = fig_sim.subplots()
for name in ("x", "v", "u"):
    ax.plot(sim["time"].values[0], sim[name].values[0],
            label=f"{name} [{sim[name].attrs['units']}]")
ax.set_xlabel("time [s]")
ax.legend()

# %%
# Compare with the data
# ---------------------
# Free run from each run's first sample: MATLAB-style fit percentage, NRMSE
# and the valid prediction time per run.
cmp = sysid.compare(result, data)
print(cmp.table().round(4))
fig_cmp = plot.trajectories(data, cmp.predicted)
