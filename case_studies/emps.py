"""Physics: an electro-mechanical positioning system (EMPS) identified from position and voltage.

Data
    ``emps_estimation_raw.csv`` (SHARED-ONLY, no licence stated; the EMPS benchmark of Janot,
    Gautier & Brunot, "Data set and reference models of EMPS", 2019 Workshop on Nonlinear System
    Identification Benchmarks, data at nonlinearbenchmark.org). The file is not part of sysid; it is
    read from ``../shared/datasets/physics/`` beside the checkout, or from ``--data PATH``. One
    24.8 s record at 1 kHz of a prismatic joint driven by a DC motor under position control: motor
    position ``qm_m`` (m) and the controller's voltage ``vir_V`` (V); force = 35.1507 N/V x voltage.

Question
    Does a grey-box fit of the rigid-body model ``M q'' = tau - Fv q' - Fc sign(q') - offset``
    recover the benchmark's reference parameters (M = 95.1089 kg, Fv = 203.5034 N s/m,
    Fc = 20.3935 N, offset = -3.1648 N, identified by the authors with inverse-dynamics least
    squares), from the position alone, and predict held-out motion as well as they do?

Model
    ``sysid.models.second_order`` with states q (measured) and v (latent, initialised from the
    smoothed derivative of q) and the input ``vir``; M, Fv, Fc free and positive, offset free, the
    force gain fixed at 35.1507 N/V. sign() is not differentiable, and an ODE solver stepping
    through its jump chatters; it is replaced by ``tanh(v / eps)`` with eps = 5 mm/s (the
    plateau speeds are ~100 mm/s, so the smooth and the exact law differ only during velocity
    reversals). Training: the first two thirds of the record (t <= 16.5 s, every 2nd sample),
    multiple-shooting windows of 20, 50 and 100 ms (rk4), warm start on the smoothed second
    derivative of q, float64.

Evaluation
    The system is a double integrator held in place by its controller, so an open-loop simulation
    of the whole record drifts with any model (also with the reference parameters): the
    prediction test is 1 s ahead, from the measured position and the smoothed velocity at the start
    of each second of the held-out last third (t > 16.5 s), driven by the measured voltage; the
    same for the reference parameters.

Result (full mode, measured; see case_studies/README.md)
    M within 1 %, offset within 5 %, Fv and Fc within 8 % of the reference; the median
    1-s-ahead position error on held-out seconds is a little below the reference model's (both
    ~1.5 mm on a 246 mm stroke).

Run ``python case_studies/emps.py [--fast] [--out DIR] [--data PATH]``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Study, setup, study_parser  # noqa: E402

import sysid  # noqa: E402
from sysid.data import from_arrays, get_run, run_ids  # noqa: E402
from sysid.models import Parameter, second_order  # noqa: E402
from sysid.simulation import SolverConfig  # noqa: E402
from sysid.training import FitConfig  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "physics" / "emps_estimation_raw.csv"
REFERENCE = {"M": 95.1089, "Fv": 203.5034, "Fc": 20.3935, "offset": -3.1648}
GAIN = 35.1507  # N/V, motor constant x amplifier gain x transmission ratio (benchmark value)
EPS = 0.005  # m/s, width of tanh(v / eps) standing in for sign(v)
SPLIT = 16.5  # s: train on t <= SPLIT, test on t > SPLIT
POSITIVE = (0.0, math.inf)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What differs between full and fast mode."""

    every: int
    epochs: int
    horizons: tuple[int, ...]
    stride: int
    train_until: float


FULL = Settings(every=2, epochs=60, horizons=(10, 25, 50), stride=5, train_until=SPLIT)
# fast: 250 Hz, the first 8 s (about two back-and-forth strokes) and fewer epochs
FAST = Settings(every=4, epochs=30, horizons=(10, 25), stride=4, train_until=8.0)


def load(path: Path) -> xr.Dataset:
    """The record with ``q`` (m, measured position) and ``vir`` (V, input)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"EMPS data not found at {path}; get emps_estimation_raw.csv (EMPS benchmark, Janot, "
            "Gautier & Brunot 2019, nonlinearbenchmark.org) and pass --data PATH."
        )
    ds = sysid.load_csv(path, time="t_s", states=["qm_m"], inputs=["vir_V"],
                        units={"t_s": "s", "qm_m": "m", "vir_V": "V"})
    ds = ds.rename({"qm_m": "q", "vir_V": "vir"})
    ds["q"].attrs["long_name"] = "motor position"
    ds["vir"].attrs["long_name"] = "control voltage"
    return ds


def acceleration(t, x, u, p, xp):
    """q'' = (gain * vir - Fv v - Fc tanh(v / eps) - offset) / M."""
    v = x[..., 1]
    force = p["gain"] * u[..., 0] - p["Fv"] * v - p["Fc"] * xp.tanh(v / EPS) - p["offset"]
    return xp.stack([force / p["M"]])


def build(values: dict[str, float], *, vary: bool = True) -> sysid.models.Model:
    """The rigid-body model with the given parameter values (free unless ``vary=False``)."""
    params = {
        "M": Parameter(values["M"], bounds=POSITIVE, units="kg", vary=vary),
        "Fv": Parameter(values["Fv"], bounds=POSITIVE, units="N s/m", vary=vary),
        "Fc": Parameter(values["Fc"], bounds=POSITIVE, units="N", vary=vary),
        "offset": Parameter(values["offset"], units="N", vary=vary),
        "gain": Parameter(GAIN, units="N/V", vary=False),
    }
    return second_order(["q"], ["v"], acceleration=acceleration, parameters=params, inputs=["vir"],
                        observed=["q"], state_units=["m", "m/s"], input_units=["V"], time_units="s",
                        dtype=torch.float64)


def segments(ds: xr.Dataset, start: float, length: float) -> tuple[xr.Dataset, np.ndarray]:
    """Cut the record after ``start`` into runs of ``length`` seconds; also their initial speeds.

    The initial speed is the slope of a quadratic fitted to the position over +-10 ms around each
    segment's first sample (the latent state's starting value, as the fit estimates it).
    """
    run = get_run(ds, run_ids(ds)[0])
    t = run["time"].values
    q = run["q"].values
    u = run["vir"].values
    times, qs, us, v0 = [], [], [], []
    t0 = start
    while t0 + length <= t[-1] + 1e-9:
        k = (t >= t0) & (t <= t0 + length)
        times.append(t[k])
        qs.append(q[k])
        us.append(u[k])
        i0 = int(np.argmax(k))
        near = (t >= t[i0] - 0.01) & (t <= t[i0] + 0.01)
        v0.append(float(np.polyfit(t[near] - t[i0], q[near], 2)[1]))
        t0 += length
    seg = from_arrays(times, {"q": qs, "vir": us}, states=["q"], inputs=["vir"],
                      runs=[f"t{tt[0]:.1f}s" for tt in times], units={"q": "m", "vir": "V", "time": "s"})
    return seg, np.asarray(v0)


def prediction_errors(model: sysid.models.Model, seg: xr.Dataset, v0: np.ndarray) -> np.ndarray:
    """Position RMSE (m) of each 1-s segment, simulated from its first sample."""
    sim = sysid.simulate(model, seg, latent={"v": v0}, solver=SolverConfig(method="rk4", step=5e-4))
    err = []
    for r in run_ids(seg):
        y = seg["q"].sel(trajectory=r).values
        yhat = sim["q"].sel(trajectory=r).values
        ok = np.isfinite(y)
        err.append(float(np.sqrt(np.mean((y[ok] - yhat[ok]) ** 2))))
    return np.asarray(err)


def run(settings: Settings, data_path: Path, study: Study) -> dict:
    """Fit, predict held-out seconds, tabulate and plot into ``study``; returns the summary."""
    ds = load(data_path)
    t = ds["time"].values[0]
    train = ds.isel(obs=np.nonzero(t <= settings.train_until)[0][:: settings.every])
    start = {"M": 50.0, "Fv": 100.0, "Fc": 10.0, "offset": 0.0}  # far from the reference
    started = time.perf_counter()
    res = sysid.fit(build(start), train,
                    FitConfig(epochs=settings.epochs, optimizer={"lr": 2e-2},
                              shooting={"horizons": settings.horizons, "stride": settings.stride},
                              warm_start={"smoothing_points": 11}, dtype="float64",
                              progress=False, seed=0))
    seconds = time.perf_counter() - started
    fitted = {k: float(v.detach()) for k, v in res.model.physical_parameters().items() if k != "gain"}
    stderr = dict(zip(res.parameters["name"], res.parameters["stderr"]))
    params = pd.DataFrame({"reference": REFERENCE, "fitted": fitted,
                           "stderr": {k: float(stderr[k]) for k in REFERENCE}})
    params["rel_err"] = (params["fitted"] - params["reference"]) / params["reference"].abs()
    study.table("parameters", params)

    seg, v0 = segments(ds, SPLIT, 1.0)
    reference = build(REFERENCE, vary=False)
    err_fit = prediction_errors(res.model, seg, v0)
    err_ref = prediction_errors(reference, seg, v0)
    pred = pd.DataFrame({"rmse_fitted_mm": 1e3 * err_fit, "rmse_reference_mm": 1e3 * err_ref},
                        index=pd.Index(run_ids(seg), name="segment"))
    study.table("heldout_1s_ahead_position_rmse_mm", pred)
    study.figure(_figure(res.model, reference, seg, v0), "heldout")
    study.notes.append(f"fit time {seconds:.1f} s (one thread); trained on t <= {settings.train_until} s, "
                       f"every {settings.every} samples; sign(v) replaced by tanh(v / {EPS} m/s)")
    study.notes.append(f"median 1-s-ahead position RMSE on held-out seconds: fitted "
                       f"{np.median(err_fit) * 1e3:.3f} mm, reference {np.median(err_ref) * 1e3:.3f} mm "
                       f"(stroke {1e3 * (np.nanmax(ds['q'].values) - np.nanmin(ds['q'].values)):.0f} mm)")
    return {"fitted": fitted, "median_fit_mm": float(np.median(err_fit) * 1e3),
            "median_ref_mm": float(np.median(err_ref) * 1e3)}


def _figure(model, reference, seg: xr.Dataset, v0: np.ndarray):
    import matplotlib.pyplot as plt

    solver = SolverConfig(method="rk4", step=5e-4)
    sims = {"fitted": sysid.simulate(model, seg, latent={"v": v0}, solver=solver),
            "reference": sysid.simulate(reference, seg, latent={"v": v0}, solver=solver)}
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for r in run_ids(seg):
        t = seg["time"].sel(trajectory=r).values
        ax.plot(t, 1e3 * seg["q"].sel(trajectory=r).values, "k", lw=2, alpha=0.4)
        for (name, sim), col in zip(sims.items(), ("C0", "C1")):
            ax.plot(t, 1e3 * sim["q"].sel(trajectory=r).values, col, lw=0.8)
            ax2.plot(t, 1e3 * (sim["q"] - seg["q"]).sel(trajectory=r).values, col, lw=0.8)
    ax.plot([], [], "k", lw=2, alpha=0.4, label="measured")
    for name, col in zip(sims, ("C0", "C1")):
        ax.plot([], [], col, label=f"{name} parameters, 1 s ahead")
    ax.set_ylabel("position [mm]")
    ax.legend(fontsize=8)
    ax2.set_ylabel("prediction error [mm]")
    ax2.set_xlabel("time [s]")
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> Study:
    """Run the study; return the measured checks and tables."""
    parser = study_parser(__doc__, "results/case_studies")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="emps_estimation_raw.csv (default: the shared datasets folder)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    setup()
    study = Study(name="emps", out=Path(args.out), fast=args.fast)
    s = run(FAST if args.fast else FULL, args.data, study)
    source = "EMPS benchmark reference (Janot, Gautier & Brunot 2019, inverse-dynamics least squares)"
    # Tolerances (relative). Full mode: M 3 % (measured 0.6 %), offset 10 % (it is 3 N against
    # forces of ~40 N; measured 5 %), Fv and Fc 15 % (viscous and Coulomb friction trade off
    # against each other, and tanh(v/eps) is not sign(v); measured 7-8 %). Fast mode sees 8 s at
    # 250 Hz (the sampling blurs the short accelerations that fix the mass): M 10 %, offset 20 %,
    # friction 25 % (measured: M +5.4 %, the others within 3 %).
    tol = ({"M": 0.10, "Fv": 0.25, "Fc": 0.25, "offset": 0.2} if args.fast else
           {"M": 0.03, "Fv": 0.15, "Fc": 0.15, "offset": 0.10})
    units = {"M": "kg", "Fv": "N s/m", "Fc": "N", "offset": "N"}
    for name, ref in REFERENCE.items():
        study.check(f"{name} [{units[name]}]", s["fitted"][name], ref, tol[name], source=source)
    # held-out prediction: the fitted model's median 1-s-ahead error may exceed the reference
    # model's by at most 50 % (measured: it is lower in both modes)
    study.check("median held-out 1-s-ahead RMSE, fitted / reference", s["median_fit_mm"] / s["median_ref_mm"],
                1.0, 0.5, absolute=True, source="the reference parameters on the same segments")
    study.save()
    print(study.report())
    return study


if __name__ == "__main__":
    sys.exit(0 if main().passed else 1)
