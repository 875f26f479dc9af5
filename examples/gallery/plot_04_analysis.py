"""
Judging dynamics without a fit: fields, fixed points, cycles
============================================================

The analysis functions take any dynamics: a fitted model, a catalogue
system, or a plain Python function ``f(t, y)``. Here a van der Pol
oscillator with the wrong damping (mu = 1.4 instead of 1.0) plays the
learned model, so every difference has a known cause.
"""

# %%
import numpy as np

import sysid
from sysid import analysis, plot

vdp = sysid.systems.get("van_der_pol")
print(vdp.defaults())


def learned(t, y):
    """van der Pol with mu = 1.4: x' = v, v' = mu (1 - x^2) v - x."""
    x, v = y
    return np.array([v, 1.4 * (1 - x**2) * v - x])


data = sysid.systems.make_dataset(vdp, n_runs=3, n_obs=100, noise=0.0,
                                  seed=0)
# a plain function needs its state names
lrn = analysis.as_dynamics(learned, states=["x", "v"])

# %%
# Vector-field error, inside and outside the data's support
# ---------------------------------------------------------
fe = analysis.field_error(lrn, vdp, data)
print(fe.summary.round(4))
ax = plot.field_error_map(fe, data=data)

# %%
# Fixed points and the limit cycle
# --------------------------------
table = analysis.compare_fixed_points(lrn, vdp, data=data)
print(table[["x_reference", "x_learned", "stability_reference",
             "stability_learned", "status"]])
cycles = analysis.compare_limit_cycles(lrn, vdp, [2.0, 0.0], t_end=60.0)
cycles
