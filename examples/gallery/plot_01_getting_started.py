"""
From a CSV file to a fitted, simulated and judged model
=======================================================

The whole loop on one page: read a lab CSV, fit a physics model with unknown parameters, simulate
it under a new input, and compare it with the data. The file is ``examples/data/duffing.csv``
(three runs of a driven double-well oscillator, position ``x``, velocity ``v`` and the measured
force ``u``; ``examples/make_data.py`` says how it was made).
"""

# %%
# Read the data
# -------------
# One long CSV with a run column. Columns are named without their units (``"x"`` for
# ``x [m]``); the units travel with the data.
from pathlib import Path

import numpy as np
import pandas as pd

import sysid
from sysid import plot

DATA = Path(sysid.__file__).resolve().parents[1] / "examples" / "data"
data = sysid.load_csv(DATA / "duffing.csv", time="t", states=["x", "v"], inputs=["u"], trajectory="run")
print(sysid.data.run_ids(data), {n: data[n].attrs["units"] for n in data.data_vars})

# %%
# Fit a physics model
# -------------------
# The Duffing equation from the catalogue, ``x'' = -delta x' - alpha x - beta x^3 + u``, with all
# three parameters free and started 50 % off. ``sysid.fit`` returns a :class:`sysid.FitResult`;
# in a notebook (and here) it shows itself as a short table.
duffing = sysid.systems.get("duffing")
model = sysid.models.physics(duffing, values={"delta": 0.3, "alpha": -0.5, "beta": 1.5},
                             states=["x", "v"], inputs=["u"])
result = sysid.fit(model, data, sysid.FitConfig(epochs=120, seed=0, progress=False))
result

# %%
# The parameters with their standard errors; the data were made with delta = 0.2, alpha = -1,
# beta = 1.
result.parameters[["name", "value", "stderr", "units"]]

# %%
# Simulate under a new input
# --------------------------
# From a chosen initial state, driven by the signal in ``forcing.csv`` (a ``time`` column and
# one column per input).
forcing = pd.read_csv(DATA / "forcing.csv").rename(columns={"t [s]": "time", "u [m/s^2]": "u"})
sim = sysid.simulate(result.model, {"x": 1.0, "v": 0.0}, np.linspace(0.0, 20.0, 401), inputs=forcing)
fig_sim = plot.trajectories(sim, model_label="simulated")

# %%
# Compare with the data
# ---------------------
# Free run from each run's first sample: MATLAB-style fit percentage, NRMSE and the valid
# prediction time per run.
cmp = sysid.compare(result, data)
print(cmp.table().round(4))
fig_cmp = plot.trajectories(data, cmp.predicted)
