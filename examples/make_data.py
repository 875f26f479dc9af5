"""Write the example files that the README and the documentation use (run once; the output is
committed, so nobody has to run it): ``python examples/make_data.py``.

Provenance: every number comes from the reference Duffing oscillator of ``sysid.systems``
(``x'' = -delta x' - alpha x - beta x^3 + u`` with delta = 0.2, alpha = -1, beta = 1: a
double-well oscillator driven by a force per unit mass ``u``), integrated by SciPy's LSODA at
rtol 1e-8, with seeded Gaussian measurement noise. Nothing is measured; the files stand in for
a lab's CSV export so that the commands in the README run as written.

- ``examples/data/duffing.csv``: 3 runs (column ``run``), 0-20 s every 0.1 s (column ``t``),
  position ``x`` [m] and velocity ``v`` [m/s] with noise of 2 % of each state's spread, and the
  driving input ``u`` [m/s^2] (a sum of three sines per run, as recorded, noise-free).
- ``examples/data/forcing.csv``: a new input signal for ``sysid simulate --inputs``: ``u`` =
  0.3 sin(1.2 t) from 0 to 20 s every 0.05 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import sysid

HERE = Path(__file__).resolve().parent / "data"


def main() -> None:
    HERE.mkdir(exist_ok=True)
    ds = sysid.systems.make_dataset("duffing", n_runs=3, t=np.linspace(0.0, 20.0, 201), noise=0.02,
                                    seed=7)
    sysid.data.to_csv(ds, HERE / "duffing.csv", overwrite=True, time="t", trajectory="run")
    t = np.round(np.arange(0.0, 20.0 + 1e-9, 0.05), 10)
    pd.DataFrame({"t [s]": t, "u [m/s^2]": 0.3 * np.sin(1.2 * t)}).to_csv(
        HERE / "forcing.csv", index=False, float_format="%.10g")
    print(f"wrote {HERE / 'duffing.csv'} and {HERE / 'forcing.csv'}")


if __name__ == "__main__":
    main()
