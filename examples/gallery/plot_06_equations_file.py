"""
Equations written as text: a TOML model file
============================================

A physics model without Python: ``examples/equations/duffing.toml`` declares
the states, input, parameters (start, bounds, units) and one equation per
state. :func:`sysid.models.from_toml` compiles the equations with a
whitelist parser (never ``eval``) into an ordinary model, which fits like any
other; a saved model keeps the equations as text.
"""

# %%
from pathlib import Path

import sysid

ROOT = Path(sysid.__file__).resolve().parents[1] / "examples"
print((ROOT / "equations" / "duffing.toml").read_text())

# %%
model = sysid.models.from_toml(ROOT / "equations" / "duffing.toml")
data = sysid.load_csv(ROOT / "data" / "duffing.csv", time="t",
                      states=["x", "v"], inputs=["u"], trajectory="run")
config = sysid.FitConfig(epochs=80, seed=0, progress=False)
result = sysid.fit(model, data, config)
result.parameters[["name", "value", "stderr", "units"]]
