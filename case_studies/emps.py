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
    M within ~1 %, offset within ~1 %, Fv and Fc within ~8 % of the reference; 1-s-ahead
    position errors on held-out data of the same size as the reference model's.

Run ``python case_studies/emps.py [--fast] [--out DIR] [--data PATH]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sysid  # noqa: E402
from sysid.analysis.tables import markdown_table  # noqa: E402
from sysid.data import from_arrays, get_run, run_ids  # noqa: E402
from sysid.models import Parameter, second_order  # noqa: E402
from sysid.simulation import SolverConfig  # noqa: E402
from sysid.training import FitConfig  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "physics" / "emps_estimation_raw.csv"
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


def run(settings: Settings, data_path: Path, out: Path) -> dict:
    """Fit, predict held-out seconds, tabulate and plot; returns the summary."""
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    ds = load(data_path)
    t = ds["time"].values[0]
    train = ds.isel(obs=np.nonzero(t <= settings.train_until)[0][:: settings.every])
    start = {"M": 50.0, "Fv": 100.0, "Fc": 10.0, "offset": 0.0}  # far from the reference
    started = time.perf_counter()
    res = sysid.fit(build(start), train,
                    FitConfig(epochs=settings.epochs, horizons=settings.horizons, stride=settings.stride,
                              lr=2e-2, smoothing_points=11, dtype="float64", progress=False, seed=0))
    seconds = time.perf_counter() - started
    fitted = {k: float(v.detach()) for k, v in res.model.physical_parameters().items() if k != "gain"}
    stderr = dict(zip(res.parameters["name"], res.parameters["stderr"]))
    params = pd.DataFrame({"reference": REFERENCE, "fitted": fitted,
                           "stderr": {k: float(stderr[k]) for k in REFERENCE}})
    params["rel_err"] = (params["fitted"] - params["reference"]) / params["reference"].abs()
    params.to_csv(out / "emps_parameters.csv")

    seg, v0 = segments(ds, SPLIT, 1.0)
    reference = build(REFERENCE, vary=False)
    err_fit = prediction_errors(res.model, seg, v0)
    err_ref = prediction_errors(reference, seg, v0)
    pred = pd.DataFrame({"segment": run_ids(seg), "rmse_fitted_mm": 1e3 * err_fit,
                         "rmse_reference_mm": 1e3 * err_ref})
    pred.to_csv(out / "emps_prediction.csv", index=False)
    _figure(res.model, reference, seg, v0, out)
    summary = {
        "fitted": fitted, "reference": REFERENCE,
        "rel_err": {k: float(params.loc[k, "rel_err"]) for k in REFERENCE},
        "heldout_1s_rmse_mm": {"fitted_median": float(np.median(err_fit) * 1e3),
                               "reference_median": float(np.median(err_ref) * 1e3),
                               "fitted_max": float(err_fit.max() * 1e3),
                               "reference_max": float(err_ref.max() * 1e3)},
        "position_range_mm": float(1e3 * (np.nanmax(ds["q"].values) - np.nanmin(ds["q"].values))),
        "fit_seconds": seconds, "eps": EPS, "every": settings.every, "train_until": settings.train_until,
    }
    (out / "emps_metrics.json").write_text(json.dumps(summary, indent=2))
    md = ["## EMPS: parameters", markdown_table(params), "",
          "## EMPS: position RMSE (mm) 1 s ahead on held-out seconds (t > 16.5 s)",
          markdown_table(pred.set_index("segment"))]
    (out / "emps_metrics.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"\nfit time {seconds:.1f} s; median 1-s-ahead RMSE: fitted "
          f"{summary['heldout_1s_rmse_mm']['fitted_median']:.3f} mm, reference "
          f"{summary['heldout_1s_rmse_mm']['reference_median']:.3f} mm")
    return summary


def _figure(model, reference, seg: xr.Dataset, v0: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
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
    fig.savefig(out / "emps_heldout.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="small, quick version (used by the tests)")
    parser.add_argument("--out", type=Path, default=Path("results/case_studies/emps"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    s = run(FAST if args.fast else FULL, args.data, args.out)
    if args.fast:
        # fast mode sees 8 s at 250 Hz (measured: every parameter within ~5 %); the full fit is
        # closer for M. Tolerances: M within 10 % (the 250 Hz sampling blurs the short
        # accelerations that determine the mass), offset within 20 % (it is small: 3 N against
        # forces of ~40 N), friction terms within 25 % (they trade off against each other with
        # less data); held-out 1-s predictions no worse than twice the reference model's
        err = s["rel_err"]
        assert abs(err["M"]) < 0.10 and abs(err["offset"]) < 0.2, err
        assert abs(err["Fv"]) < 0.25 and abs(err["Fc"]) < 0.25, err
        h = s["heldout_1s_rmse_mm"]
        assert h["fitted_median"] < 2.0 * h["reference_median"], h
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
