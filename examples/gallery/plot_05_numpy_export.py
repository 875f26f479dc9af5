"""
Take a learned model to SciPy, and to disk
==========================================

:func:`sysid.simulation.to_numpy_rhs` turns any sysid model into a plain
NumPy function ``f(t, y)`` (weights copied, no torch at call time) for
:func:`scipy.integrate.solve_ivp`; :func:`sysid.save_model` writes a folder
without pickle that :func:`sysid.load_model` reads back exactly.
"""

# %%
import tempfile
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

import sysid
from sysid.simulation import to_numpy_rhs

lv = sysid.systems.get("lotka_volterra")
data = sysid.systems.make_dataset(lv, n_runs=2, n_obs=40, noise=0.02, seed=0)
start = {"a": 0.5, "b": 0.03, "c": 0.9, "d": 0.02}
model = sysid.models.physics(lv, values=start)
config = sysid.FitConfig(epochs=40, seed=0, progress=False)
result = sysid.fit(model, data, config)

f = to_numpy_rhs(result.model)
sol = solve_ivp(f, (0.0, 20.0), [30.0, 4.0], method="LSODA", rtol=1e-8,
                atol=1e-10, dense_output=True)
t = np.linspace(0.0, 20.0, 5)
print(np.round(sol.sol(t).T, 3))

# %%
# The same trajectory through ``sysid.simulate`` (torch, dopri5)
solver = sysid.SolverConfig(rtol=1e-8, atol=1e-10)
sim = sysid.simulate(result.model, {"prey": 30.0, "predator": 4.0}, t,
                     solver=solver)
print(np.round(sim[["prey", "predator"]].to_dataarray().values[:, 0].T, 3))

# %%
# Save and load: a folder with ``model.safetensors`` and ``model.json``
folder = Path(tempfile.mkdtemp()) / "lv_model"
sysid.save_model(result.model, folder)
back = sysid.load_model(folder)
print(sorted(p.name for p in folder.iterdir()))
back.parameter_table()[["name", "value", "units"]]
