"""Hidden states in black-box models: a subspace encoder against free initial states and physics.

Data
    (a) Two tanks in series with overflow, simulated here with SciPy: the inflow ``inflow``
    (piecewise constant, m/s per tank cross-section) fills the upper tank, which drains into
    the lower one, ``h1' = inflow - k1 sqrt(h1)``, ``h2' = k1 sqrt(h1) - k2 sqrt(h2)``; the upper
    tank overflows at ``h1 = 1 m`` (its level stays there, the excess is lost). Only the lower
    level is measured (``level``, 2 mm noise); the upper tank is hidden. Several runs of 150 s at
    2 Hz for training, others held out.
    (b) The EMPS drive (``emps_estimation_raw.csv``, SHARED-ONLY: Janot, Gautier & Brunot 2019,
    nonlinearbenchmark.org; read from ``../shared/datasets/physics/`` or ``--data PATH``): motor
    position ``q`` measured, the control voltage ``vir`` as input (force = 35.15 N/V x vir); the
    velocity is hidden. Trained on the first two thirds (subsampled), tested on one-second
    segments of the last third (the drive is a double integrator under position control, so a
    free run of the whole record drifts with any model, also the published one; see ``emps.py``).

Question
    Does a neural state-space model whose hidden states are estimated by an encoder from the past
    samples (Beintema, Schoukens & Toth, ICLR 2023; ``sysid.models.Encoder``) simulate held-out
    records better than today's black-box fit (the same network with free initial states per
    window start, tied by the continuity penalty), and how close does it come to physics models?

Models
    black box: ``neural([measured, hidden], inputs, observed=[measured])`` (width 32, depth 2);
    encoder: the same network with ``encoder=Encoder(past=P)``; both trained with the same
    settings (multiple shooting, the same horizons and epochs, float64).
    Tanks physics: ``examples/two_tanks.toml`` (Torricelli, no overflow term: misspecified for this
    data; k1, k2 and both initial levels of each run estimated by least squares). (The same
    equations with the overflow written in, ``where(h1 >= h1max and ...)``, were tried: sysid's
    least-squares refinement, which halves its RK4 step until the prediction settles, did not
    finish in 120 s on the discontinuous right-hand side, so that model is not part of the
    study.) EMPS physics: ``emps.py``'s rigid-body model
    ``M q'' = 35.15 vir - Fv v - Fc tanh(v / 5 mm/s) - offset`` fitted the same way as there, and
    with the benchmark's published parameters.

Evaluation
    Held-out simulation error of the measured variable on each held-out record (tanks: whole
    runs; EMPS: 1-s segments), scored from sample ``P - 1`` on, where the encoder's simulation
    starts. Every model gets the same information, the record's first ``P`` samples: the encoder
    reads them; the other models get their hidden initial state fitted to them by least squares
    (a grid, then a bounded scalar search, per record: a stronger baseline than ``simulate``'s
    default, which is also reported as "latent_initial"). Training-record error (each fit's own
    estimated initial states, from sample 0) is reported too.

Result (full mode, measured; see case_studies/README.md)
    Held-out RMSE, tanks level (mean of 4 runs) / EMPS position (median of 8 s): black box with
    free window starts 24.1 / 6.12 mm (started at latent_initial: 18.3 / 7.39), with the encoder
    14.5 / 3.02 mm; physics two_tanks.toml (no overflow) 46.4 mm, EMPS physics fitted 1.41 and
    published 1.78 mm.

Run ``python case_studies/encoder.py [--fast] [--out DIR] [--data PATH]``.
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
from scipy.integrate import solve_ivp
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Study, setup, study_parser  # noqa: E402

import sysid  # noqa: E402
from sysid.data import from_arrays, run_ids  # noqa: E402
from sysid.models import Encoder, from_toml, neural  # noqa: E402
from sysid.solvers import SolverConfig  # noqa: E402
from sysid.training import FitConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "physics" / "emps_estimation_raw.csv"
K1, K2, H1MAX = 0.5, 0.7, 1.0  # tanks: outflow coefficients (m^0.5/s), overflow level (m)
NOISE = 0.002  # m, sensor noise of the lower level
DT = 0.5  # s, tanks sampling


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What differs between full and fast mode."""

    train_runs: int
    test_runs: int
    samples: int  # per tanks run
    tank_epochs: int
    tank_past: int
    emps_every: int  # EMPS subsampling of the 1 kHz record
    emps_train_until: float
    emps_epochs: int
    emps_past: int
    emps_physics_epochs: int
    width: int


FULL = Settings(train_runs=6, test_runs=4, samples=300, tank_epochs=300, tank_past=10,
                emps_every=4, emps_train_until=16.5, emps_epochs=150, emps_past=10,
                emps_physics_epochs=60, width=32)
FAST = Settings(train_runs=3, test_runs=2, samples=160, tank_epochs=60, tank_past=10,
                emps_every=8, emps_train_until=8.0, emps_epochs=30, emps_past=6,
                emps_physics_epochs=0, width=16)


# -- (a) two tanks with overflow ---------------------------------------------------------------
def _inflow(rng: np.random.Generator, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant inflow: a new level in [0.05, 0.7] m/s every 10 s (above 0.5 the upper
    tank overflows)."""
    edges = np.arange(0.0, t_end + 10.0, 10.0)
    return edges, rng.uniform(0.05, 0.7, size=edges.size)


def tanks_rhs(t: float, h: np.ndarray, edges: np.ndarray, levels: np.ndarray) -> list[float]:
    """The true two-tank dynamics with overflow of the upper tank at ``H1MAX``."""
    u = levels[min(int(np.searchsorted(edges, t, side="right")) - 1, levels.size - 1)]
    q1 = K1 * math.sqrt(max(h[0], 0.0))
    d1 = u - q1
    if h[0] >= H1MAX and d1 > 0:  # overflow: the level stays at the rim
        d1 = 0.0
    return [d1, q1 - K2 * math.sqrt(max(h[1], 0.0))]


def tanks_data(settings: Settings, seed: int = 0) -> tuple[xr.Dataset, xr.Dataset, np.ndarray]:
    """Training and held-out runs (``level`` measured with noise, ``inflow``) and the hidden
    upper levels of all runs (R, N)."""
    rng = np.random.default_rng(seed)
    n = settings.samples
    t = np.arange(n) * DT
    times, levels, inflows, hidden = [], [], [], []
    for _ in range(settings.train_runs + settings.test_runs):
        edges, u = _inflow(rng, t[-1])
        h0 = [rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.5)]
        sol = solve_ivp(tanks_rhs, (0.0, t[-1]), h0, t_eval=t, args=(edges, u), method="RK45",
                        max_step=DT / 4, rtol=1e-8, atol=1e-10)
        k = np.minimum(np.searchsorted(edges, t, side="right") - 1, u.size - 1)
        times.append(t)
        levels.append(sol.y[1] + NOISE * rng.standard_normal(n))
        inflows.append(u[k])
        hidden.append(np.minimum(sol.y[0], H1MAX))
    ids = [f"run{i}" for i in range(len(times))]
    ds = from_arrays(times, {"level": levels, "inflow": inflows}, states=["level"], inputs=["inflow"],
                     runs=ids, units={"level": "m", "inflow": "m/s", "time": "s"})
    train = ds.isel(trajectory=slice(0, settings.train_runs))
    test = ds.isel(trajectory=slice(settings.train_runs, None))
    return train, test, np.asarray(hidden)


def tanks_physics() -> sysid.models.Model:
    """``examples/two_tanks.toml``: h1, h2 hidden, ``level`` = clip(h2, 0, 1) measured (the
    clip never acts here: the overflow keeps h2 below 0.51 m), the inflow held between samples."""
    import tomllib

    table = tomllib.loads((REPO / "examples" / "two_tanks.toml").read_text(encoding="utf-8"))
    model = table["model"]
    model["input_interpolation"] = "zoh"
    return from_toml({"model": model}, dtype=torch.float64)


def black_box(measured: str, hidden: str, inputs: Sequence[str], settings: Settings, *,
              past: int | None, interpolation: str, units: dict[str, str]) -> sysid.models.Model:
    """The neural state-space model, with an encoder when ``past`` is given."""
    return neural([measured, hidden], list(inputs), observed=[measured], width=settings.width, depth=2,
                  input_interpolation=interpolation, seed=0,
                  state_units=[units[measured], units[measured]],
                  input_units=[units[n] for n in inputs], time_units="s",
                  encoder=Encoder(past=past, width=settings.width) if past else None)


# -- evaluation -------------------------------------------------------------------------------
def fit_hidden(model: sysid.models.Model, data: xr.Dataset, past: int, bounds: tuple[float, float],
               solver: SolverConfig, known: dict[str, str]) -> pd.DataFrame:
    """Per record, the hidden initial state (at sample 0) that best reproduces the measured
    variable over the first ``past`` samples: a 9-point grid over ``bounds``, then a bounded
    scalar search around the best point (least squares). ``known``: hidden states set to a data
    variable's first sample (the lower tank's level, which the sensor reads)."""
    (name,) = [n for n in model.latent_names if n not in known]
    (meas,) = model.measured
    head = data.isel(obs=slice(0, past))
    y = head[meas].values
    given = {state: head[var].values[:, 0] for state, var in known.items()}

    def sse(values: np.ndarray) -> np.ndarray:
        sim = sysid.simulate(model, head, latent={name: values, **given}, encoder=False, solver=solver)
        return np.nansum((sim[meas].values - y) ** 2, axis=1)

    grid = np.linspace(*bounds, 9)
    costs = np.stack([sse(np.full(y.shape[0], g)) for g in grid])  # (grid, runs)
    best = grid[np.argmin(costs, axis=0)]
    step = grid[1] - grid[0]
    out = []
    for r in range(y.shape[0]):
        def one(v: float, r: int = r) -> float:
            vals = best.copy()
            vals[r] = v
            return float(sse(vals)[r])

        res = minimize_scalar(one, bounds=(best[r] - step, best[r] + step), method="bounded",
                              options={"xatol": 1e-4 * step})
        out.append(res.x)
    table = pd.DataFrame({name: out, **given}, index=pd.Index(run_ids(data), name="trajectory"))
    return table


def scored_rmse(sim: xr.Dataset, data: xr.Dataset, variable: str, start: int) -> np.ndarray:
    """RMSE of ``variable`` per record over samples ``start ..`` (NaN pairs skipped)."""
    err = sim[variable].values[:, start:] - data[variable].values[:, start:]
    return np.sqrt(np.nanmean(err**2, axis=1))


def heldout(models: dict[str, tuple], data: xr.Dataset, variable: str, past: int,
            solver: SolverConfig) -> tuple[pd.DataFrame, dict[str, xr.Dataset]]:
    """Held-out RMSE per model and record: the encoder reads the first ``past`` samples, the
    others get their hidden start fitted to them (and, for black boxes, ``latent_initial``)."""
    rows, sims = {}, {}
    for label, (model, bounds, known) in models.items():
        if model.encoder is not None:
            sim = sysid.simulate(model, data, encoder=True, solver=solver)
        else:
            start = fit_hidden(model, data, past, bounds, solver, known)
            sim = sysid.simulate(model, data, latent=start, encoder=False, solver=solver)
            if label.startswith("black box"):
                plain = sysid.simulate(model, data, encoder=False, solver=solver)
                rows[f"{label}, latent_initial"] = scored_rmse(plain, data, variable, past - 1)
            label = f"{label}, start fitted to {past} samples"
        rows[label] = scored_rmse(sim, data, variable, past - 1)
        sims[label] = sim
    table = pd.DataFrame(rows, index=pd.Index(run_ids(data), name="record")).T
    table["mean"] = table.mean(axis=1)
    return table, sims


def training_rmse(results: dict[str, sysid.FitResult], data: xr.Dataset, variable: str,
                  solver: SolverConfig) -> pd.Series:
    """Free-run RMSE on the training records from each fit's estimated initial states."""
    from sysid.analysis import predict

    out = {}
    for label, res in results.items():
        pred = predict(res, data, settings=solver)
        out[label] = float(np.mean(scored_rmse(pred, data, variable, 0)))
    return pd.Series(out, name="training RMSE")


def _bounds(result: sysid.FitResult, data: xr.Dataset, hidden: str, solver: SolverConfig,
            pad: float = 0.25) -> tuple[float, float]:
    """Search range of a hidden start: the range of that state along the fitted model's free runs
    of the training records, widened by ``pad`` of it on each side."""
    from sysid.analysis import predict

    v = predict(result, data, settings=solver)[hidden].values
    v = v[np.isfinite(v)]
    lo, hi = float(np.min(v)), float(np.max(v))
    width = max(hi - lo, 1e-3 * max(abs(lo), abs(hi), 1.0))
    return lo - pad * width, hi + pad * width


# -- the two studies ----------------------------------------------------------------------------
def neural_config(epochs: int, horizons: tuple[int, ...], stride: int) -> FitConfig:
    """The same training for both black boxes (with and without encoder)."""
    return FitConfig(epochs=epochs, dtype="float64", progress=False, seed=0, optimizer={"lr": 1e-2},
                     shooting={"method": "multiple", "horizons": horizons, "stride": stride},
                     refine=False)


def run_tanks(settings: Settings, study: Study) -> dict[str, float]:
    """Fit the three tank models, score them on the held-out runs; returns the mean RMSEs (mm)."""
    train, test, hidden = tanks_data(settings)
    units = {"level": "m", "inflow": "m/s"}
    past = settings.tank_past
    cfg = neural_config(settings.tank_epochs, (10, 20, 40), 1)
    timing, results = {}, {}
    for label, enc in (("black box", None), ("encoder", past)):
        started = time.perf_counter()
        model = black_box("level", "x2", ["inflow"], settings, past=enc, interpolation="zoh", units=units)
        results[label] = sysid.fit(model, train, cfg)
        timing[label] = time.perf_counter() - started
    started = time.perf_counter()
    results["physics (two_tanks.toml)"] = sysid.fit(tanks_physics(), train,
                                                    FitConfig(dtype="float64", progress=False, seed=0))
    timing["physics (two_tanks.toml)"] = time.perf_counter() - started
    solver = SolverConfig(method="rk4", step=DT / 4)
    models = {k: (r.model, _bounds(r, train, "h1" if k.startswith("physics") else "x2", solver),
                  {"h2": "level"} if k.startswith("physics") else {}) for k, r in results.items()}
    table, sims = heldout(models, test, "level", past, solver)
    table = table * 1e3  # mm
    study.table("tanks_heldout_level_rmse_mm", table)
    train_rmse = training_rmse(results, train, "level", solver) * 1e3
    study.table("tanks_training_level_rmse_mm", train_rmse.to_frame())
    params = {k: {n: float(v.detach()) for n, v in r.model.physical_parameters().items()}
              for k, r in results.items() if k.startswith("physics")}
    study.table("tanks_physics_parameters", pd.DataFrame(params))
    study.table("tanks_fit_seconds", pd.Series(timing, name="seconds").to_frame())
    study.figure(_figure(test, sims, "level", "lower tank level [m]", hidden[settings.train_runs]), "tanks_heldout")
    mean = table["mean"]
    return {"black": float(mean["black box, start fitted to %d samples" % past]),
            "black_default": float(mean["black box, latent_initial"]),
            "encoder": float(mean["encoder"]),
            "physics": float(mean["physics (two_tanks.toml), start fitted to %d samples" % past])}


def run_emps(settings: Settings, data_path: Path, study: Study) -> dict[str, float]:
    """Fit the EMPS models, score them on held-out 1-s segments; returns median RMSEs (mm)."""
    import emps

    ds = emps.load(data_path)
    every = settings.emps_every
    ds = ds.isel(obs=slice(None, None, every))
    t = ds["time"].values[0]
    train = ds.isel(obs=np.nonzero(t <= settings.emps_train_until)[0])
    seg, _ = emps.segments(ds, emps.SPLIT, 1.0)
    units = {"q": "m", "vir": "V"}
    past = settings.emps_past
    cfg = neural_config(settings.emps_epochs, (10, 25, 50), 5)
    results, timing = {}, {}
    for label, enc in (("black box", None), ("encoder", past)):
        started = time.perf_counter()
        model = black_box("q", "v", ["vir"], settings, past=enc, interpolation="linear", units=units)
        results[label] = sysid.fit(model, train, cfg)
        timing[label] = time.perf_counter() - started
    if settings.emps_physics_epochs:  # fast mode: emps.py's own test fits it
        started = time.perf_counter()
        start = {"M": 50.0, "Fv": 100.0, "Fc": 10.0, "offset": 0.0}  # as emps.py
        results["physics (fitted)"] = sysid.fit(
            emps.build(start), train,
            FitConfig(epochs=settings.emps_physics_epochs, optimizer={"lr": 2e-2},
                      shooting={"horizons": (10, 25, 50), "stride": 5},
                      warm_start={"smoothing_points": 11}, dtype="float64", progress=False, seed=0))
        timing["physics (fitted)"] = time.perf_counter() - started
    solver = SolverConfig(method="rk4", step=5e-4 * every)
    models = {k: (r.model, _bounds(r, train, "v", solver), {}) for k, r in results.items()}
    speed = float(np.nanmax(np.abs(np.diff(train["q"].values[0]) / np.diff(t[: train.sizes["obs"]]))))
    models["physics (published)"] = (emps.build(emps.REFERENCE, vary=False), (-1.2 * speed, 1.2 * speed), {})
    table, sims = heldout(models, seg, "q", past, solver)
    table = table * 1e3
    table["median"] = table.drop(columns="mean").median(axis=1)
    study.table("emps_heldout_1s_position_rmse_mm", table)
    train_rmse = training_rmse(results, train, "q", solver) * 1e3
    study.table("emps_training_position_rmse_mm", train_rmse.to_frame())
    study.table("emps_fit_seconds", pd.Series(timing, name="seconds").to_frame())
    study.figure(_figure(seg, sims, "q", "position [m]", None), "emps_heldout")
    med = table["median"]
    return {"black": float(med[f"black box, start fitted to {past} samples"]),
            "black_default": float(med["black box, latent_initial"]),
            "encoder": float(med["encoder"]),
            "physics": float(med.get(f"physics (fitted), start fitted to {past} samples", math.nan)),
            "published": float(med[f"physics (published), start fitted to {past} samples"])}


def _figure(data: xr.Dataset, sims: dict[str, xr.Dataset], variable: str, label: str,
            hidden: np.ndarray | None):
    """The first held-out record: measured, and each model's simulation."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    r = run_ids(data)[0]
    t = data["time"].sel(trajectory=r).values
    ax.plot(t, data[variable].sel(trajectory=r).values, "k", lw=2, alpha=0.35, label="measured")
    for k, (name, sim) in enumerate(sims.items()):
        ax.plot(t, sim[variable].sel(trajectory=r).values, f"C{k}", lw=1, label=name)
    if hidden is not None:
        ax.plot(t, hidden, "k:", lw=1, label="hidden upper level (truth)")
    ax.set_xlabel("time [s]")
    ax.set_ylabel(label)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> Study:
    """Run both studies; return the measured checks and tables."""
    parser = study_parser(__doc__, "results/case_studies")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="emps_estimation_raw.csv (default: the shared datasets folder)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    setup()
    study = Study(name="encoder", out=Path(args.out), fast=args.fast)
    settings = FAST if args.fast else FULL
    tanks = run_tanks(settings, study)
    emps_ = run_emps(settings, args.data, study)
    study.notes.append(f"tanks held-out level RMSE [mm]: {tanks}")
    study.notes.append(f"EMPS held-out 1-s position RMSE, median over segments [mm]: {emps_}")
    # The claim of the issue: the encoder beats the black box with free initial states on
    # held-out records, given the same first samples (ratio below 1: reference 0.5 +- 0.5).
    for name, s in (("tanks", tanks), ("EMPS", emps_)):
        study.check(f"{name}: held-out RMSE, encoder / black box (start fitted)", s["encoder"] / s["black"],
                    0.5, 0.5, absolute=True, source="the same network without encoder")
    study.save()
    print(study.report())
    return study


if __name__ == "__main__":
    sys.exit(0 if main().passed else 1)
