"""simulate(): against SciPy references and closed forms; batching; inputs; errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.interpolate import PchipInterpolator

import sysid
import sysid.models as sm
import sysid.systems as catalogue
from sysid.data import from_arrays
from sysid.errors import ConfigError, DataError, SolverError
from sysid.models import Parameter, SolverConfig
from sysid.simulation import simulate

# sysid's solver tolerances in these comparisons; the SciPy references run at 1e-12
RTOL, ATOL = 1e-8, 1e-8
TIGHT = SolverConfig(rtol=RTOL, atol=ATOL)


def _tol_units(sim, ref, names):
    """Largest error in units of sysid's requested tolerance, as SciPy's own tests measure it."""
    return max(float((abs(sim[n] - ref[n]) / (ATOL + RTOL * abs(ref[n]))).max()) for n in names)


@pytest.mark.parametrize("name", ["lotka_volterra", "damped_oscillator", "reaction_chain",
                                  "pk_one_compartment", "seir", "competitive_lotka_volterra"])
def test_catalogue_system_matches_scipy(name):
    system = catalogue.get(name)
    t = np.linspace(*system.t_span, 60)
    ref = catalogue.integrate(system, [system.y0], t, rtol=1e-12, atol=1e-12)
    sim = simulate(sysid.models.physics(system, dtype=torch.float64), ref, solver=TIGHT)
    # dopri5's *global* error over the catalogue horizon stays within ~6 local-tolerance units on
    # these non-stiff, non-chaotic systems (measured 0.5-5.8); 10 leaves margin without hiding
    # a wrong parameter (a 1e-6 relative change in one parameter already costs > 10 units)
    assert _tol_units(sim, ref, system.states) < 10
    for n, un in zip(system.states, system.state_units):
        assert sim[n].attrs["units"] == un


def test_several_runs_in_one_batched_solve():
    system = catalogue.get("lotka_volterra")
    t = np.linspace(0, 20, 41)
    y0 = [[30.0, 4.0], [10.0, 10.0], [50.0, 2.0]]
    ref = catalogue.integrate(system, y0, t, rtol=1e-12, atol=1e-12, run_id=["a", "b", "c"])
    sim = simulate(sysid.models.physics(system, dtype=torch.float64), ref, solver=TIGHT)
    assert list(sim["trajectory"].values) == ["a", "b", "c"]
    # global error over a 20-day horizon on these wider orbits: measured 12-16 tolerance units for
    # lone solves and 5-18 in the batch (one error norm for all runs); 25 is the ceiling we accept
    assert _tol_units(sim, ref, system.states) < 25
    for i in range(3):
        lone = simulate(sysid.models.physics(system, dtype=torch.float64), ref.isel(trajectory=[i]), solver=TIGHT)
        assert _tol_units(lone, ref.isel(trajectory=[i]), system.states) < 25


def _measured_force(n: int = 201):
    t = np.linspace(0.0, 20.0, n)
    return t, 0.8 * np.sin(1.3 * t) + 0.5 * np.sign(np.sin(0.4 * t)) + 0.2 * np.cos(3.1 * t)


def _piecewise_reference(system, y0, t_in, u_fn):
    """SciPy solution restarted at every input sample, so jumps/kinks never sit inside a step."""
    ys = [np.asarray(y0, dtype=float)]
    for k in range(len(t_in) - 1):
        f = system.numpy_rhs(inputs=lambda s, k=k: u_fn(s, k))
        sol = solve_ivp(f, (t_in[k], t_in[k + 1]), ys[-1], method="DOP853", rtol=1e-12, atol=1e-12)
        assert sol.status == 0
        ys.append(sol.y[:, -1])
    return np.array(ys)


@pytest.mark.parametrize("kind", ["zoh", "linear", "cubic"])
def test_forced_oscillator_with_measured_input_matches_scipy(kind):
    system = catalogue.get("mass_spring_damper")
    t_in, force = _measured_force()
    pchip = PchipInterpolator(t_in, force)

    def u_fn(s, k):  # the input on interval k, as each interpolation defines it
        if kind == "zoh":
            return np.array([force[k]])
        if kind == "linear":
            return np.array([np.interp(s, t_in, force)])
        return np.array([pchip(s)])

    ref = _piecewise_reference(system, [0.2, 0.0], t_in, u_fn)
    data = from_arrays([t_in], {"x": [ref[:, 0]], "v": [ref[:, 1]], "F": [force]},
                       states=["x", "v"], inputs=["F"], units={"x": "m", "v": "m/s", "F": "N", "time": "s"})
    model = sm.Model(sysid.models.physics(system, dtype=torch.float64).field, input_interpolation=kind)
    sim = simulate(model, data, solver=TIGHT)
    # sysid steps onto every input sample (jump_t), so the error is ordinary dopri5 global error
    # plus one local error per forced step at the 200 samples: measured 3 (zoh), 6 (linear) and
    # 16 (cubic) tolerance units; crossing the jumps instead costs ~2600 units
    assert _tol_units(sim, data, ["x", "v"]) < 25
    np.testing.assert_allclose(sim["F"].values[0], force, rtol=0, atol=1e-12)  # inputs echoed at samples
    assert sim["F"].attrs["role"] == "input" and sim["F"].attrs["units"] == "N"
    assert sim["time"].attrs["units"] == "s"


def test_zoh_inputs_with_shifted_start_time():
    # the same forced run starting at t = 100: relative-time interpolation keeps the left/right
    # limits at each jump, so the answer is the unshifted one
    system = catalogue.get("mass_spring_damper")
    t_in, force = _measured_force(81)
    model = sm.Model(sysid.models.physics(system, dtype=torch.float64).field, input_interpolation="zoh")
    runs = []
    for shift in (0.0, 100.0):
        data = from_arrays([t_in + shift], {"x": [np.full(81, 0.2)], "v": [np.zeros(81)], "F": [force]},
                           states=["x", "v"], inputs=["F"])
        runs.append(simulate(model, data, solver=TIGHT)["x"].values[0])
    np.testing.assert_allclose(runs[1], runs[0], rtol=0, atol=1e-9)


def test_inputs_as_dataframe_equal_a_one_run_dataset():
    system = catalogue.get("mass_spring_damper")
    t_in, force = _measured_force(41)
    model = sysid.models.physics(system, dtype=torch.float64)
    df = pd.DataFrame({"time": t_in, "F": force})
    one_run = from_arrays([t_in], {"F": [force]}, states=[], inputs=["F"])
    a = simulate(model, {"x": [0.1, 0.3], "v": 0.0}, t_in, inputs=df, solver=TIGHT)
    b = simulate(model, {"x": [0.1, 0.3], "v": 0.0}, t_in, inputs=one_run, solver=TIGHT)
    # the same code path after conversion: bit-identical
    np.testing.assert_array_equal(a["x"].values, b["x"].values)
    np.testing.assert_array_equal(a["F"].values[1], force)


def test_inputs_as_function_match_scipy():
    system = catalogue.get("mass_spring_damper")
    t = np.linspace(0.0, 10.0, 51)

    def u(s):
        return np.array([0.8 * np.sin(1.3 * s) + 0.3])

    ref = catalogue.integrate(system, [[0.2, 0.0]], t, inputs=u, rtol=1e-12, atol=1e-12)
    sim = simulate(sysid.models.physics(system, dtype=torch.float64), {"x": 0.2, "v": 0.0}, t, inputs=u,
                   solver=TIGHT)
    # a smooth forcing: plain dopri5 global error (measured ~3 units)
    assert _tol_units(sim, ref, ["x", "v"]) < 10
    np.testing.assert_allclose(sim["F"].values[0], u(t)[0], rtol=1e-14)


def _time_forced(t, x, u, p, xp):
    """dx/dt = a cos(t): x(t) = x(t0) + a (sin t - sin t0), a closed form in absolute time."""
    return xp.stack([p["a"] * xp.cos(t) + 0.0 * x[..., 0]])


def test_runs_with_different_grids_and_start_times_use_absolute_time():
    t_a = np.linspace(0.0, 4.0, 9)
    t_b = np.array([5.0, 5.3, 6.1, 7.7, 9.0, 10.2])
    data = from_arrays([t_a, t_b], {"x": [np.full(9, np.nan), np.full(6, np.nan)]}, states=["x"],
                       runs=["early", "late"])
    data["x"].values[0, 0] = 1.0
    data["x"].values[1, 0] = -2.0
    model = sm.physics(_time_forced, {"a": 0.7}, ["x"], dtype=torch.float64)
    sim = simulate(model, data, solver=SolverConfig(rtol=1e-10, atol=1e-12))
    exact_a = 1.0 + 0.7 * (np.sin(t_a) - np.sin(0.0))
    exact_b = -2.0 + 0.7 * (np.sin(t_b) - np.sin(5.0))
    # dopri5 at rtol 1e-10 on a smooth quadrature: global error well under 1e-8
    np.testing.assert_allclose(sim["x"].values[0, :9], exact_a, atol=1e-8)
    np.testing.assert_allclose(sim["x"].values[1, :6], exact_b, atol=1e-8)
    np.testing.assert_array_equal(sim["time"].values[1, :6], t_b)
    assert np.isnan(sim["time"].values[1, 6:]).all()


def test_mapping_and_array_initial_states_and_latent():
    model = sm.second_order(["q"], ["w"], acceleration=lambda t, x, u, p, xp: xp.stack([-p["k"] * x[..., 0]]),
                            parameters={"k": Parameter(4.0, bounds=(0, 10))}, observed=["q"],
                            dtype=torch.float64)
    t = np.linspace(0, 3, 31)
    sim = simulate(model, {"q": [1.0, 0.5]}, t, latent={"w": [0.0, 1.0]},
                   solver=SolverConfig(rtol=1e-10, atol=1e-12), runs=["r1", "r2"])
    # q'' = -4 q: q = q0 cos 2t + (w0/2) sin 2t
    np.testing.assert_allclose(sim["q"].values[0], np.cos(2 * t), atol=1e-8)
    np.testing.assert_allclose(sim["q"].values[1], 0.5 * np.cos(2 * t) + 0.5 * np.sin(2 * t), atol=1e-8)
    arr = simulate(model, np.array([[1.0, 0.0]]), t, solver=SolverConfig(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(arr["q"].values[0], sim["q"].values[0], atol=1e-12)
    # latent default from the model
    default = simulate(model, {"q": 1.0}, t, solver=SolverConfig(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(default["w"].values[0], -2 * np.sin(2 * t), atol=1e-8)


def test_fixed_step_rk4_on_union_grid():
    model = sm.physics(lambda t, x, u, p, xp: xp.stack([-p["k"] * x[..., 0]]), {"k": 0.5}, ["c"],
                       dtype=torch.float64)
    t = np.linspace(0, 4, 401)
    sim = simulate(model, {"c": 2.0}, t, solver=SolverConfig(method="rk4"))
    # RK4 with h = 0.01: global error ~ h^4 * 0.5^5 / 120 * T, far under 1e-9
    np.testing.assert_allclose(sim["c"].values[0], 2.0 * np.exp(-0.5 * t), atol=1e-9)


def test_blow_up_raises_solver_error_with_time_reached():
    model = sm.physics(lambda t, x, u, p, xp: xp.stack([p["a"] * x[..., 0] ** 2]), {"a": 1.0}, ["x"],
                       dtype=torch.float64)
    with pytest.raises(SolverError, match=r"simulate: Integration failed at t=(0\.9\d*|1(\.0\d*)?):.*stiff.*method=\"Radau\"") as info:
        simulate(model, {"x": 1.0}, np.linspace(0, 2, 11))  # x = 1 / (1 - t) blows up at t = 1
    # the furthest time the field was evaluated: a trial stage may sit just past the singularity
    assert 0.9 < info.value.t_reached < 1.01
    with pytest.raises(SolverError, match="Integration failed at t="):
        simulate(model, {"x": 1.0}, np.linspace(0, 2, 11), solver=SolverConfig(method="rk4", step=0.05))


def test_nan_field_and_work_budget():
    model = sm.physics(lambda t, x, u, p, xp: xp.stack([xp.sqrt(x[..., 0] - p["a"] * t)]), {"a": 1.0},
                       ["x"], dtype=torch.float64)
    # z = x - t obeys z' = sqrt(z) - 1 < 0 from z = 0.5: it reaches 0 at t ~ 0.5, then sqrt(< 0) = NaN
    with pytest.raises(SolverError, match="returned NaN or inf") as info:
        simulate(model, {"x": 0.5}, np.linspace(0, 5, 6), solver=SolverConfig(method="rk4", step=0.01))
    assert info.value.t_reached is not None and 0.0 < info.value.t_reached < 5.0
    osc = sm.physics(lambda t, x, u, p, xp: xp.stack([x[..., 1], -p["w"] * x[..., 0]]), {"w": 1e4},
                     ["x", "v"], dtype=torch.float64)
    with pytest.raises(SolverError, match="more steps than max_steps|right-hand-side evaluations"):
        simulate(osc, {"x": 1.0, "v": 0.0}, [0.0, 100.0], solver=SolverConfig(max_steps=50))
    with pytest.raises(SolverError, match="needs 1000 steps, more than max_steps=10"):
        simulate(osc, {"x": 1.0, "v": 0.0}, [0.0, 10.0], solver=SolverConfig(method="rk4", step=0.01, max_steps=10))


def test_time_shift_offsets_in_error_message():
    model = sm.physics(lambda t, x, u, p, xp: xp.stack([p["a"] * x[..., 0] ** 2]), {"a": 1.0}, ["x"],
                       dtype=torch.float64)
    with pytest.raises(SolverError, match=r"failed at t=1[01][.:]") as info:
        simulate(model, {"x": 1.0}, np.linspace(10, 12, 11))
    # reported in absolute time: the blow-up is 1 time unit after the start at 10
    assert 10.9 < info.value.t_reached < 11.01


def test_input_errors():
    model = sm.neural(["x", "v"], ["F"], width=4, depth=1)
    t = np.linspace(0, 1, 5)
    with pytest.raises(DataError, match=r"y0 has 3 states but the model has 2 \(\['x', 'v'\]\)"):
        simulate(model, np.zeros((1, 3)), t, inputs=lambda s: [0.0])
    with pytest.raises(DataError, match=r"no initial value for the observed states \['v'\]"):
        simulate(model, {"x": 1.0}, t, inputs=lambda s: [0.0])
    with pytest.raises(DataError, match=r"unknown states \['z'\]"):
        simulate(model, {"x": 1.0, "v": 0.0, "z": 1.0}, t, inputs=lambda s: [0.0])
    with pytest.raises(DataError, match=r"the model has inputs \['F'\]; give inputs="):
        simulate(model, {"x": 1.0, "v": 0.0}, t)
    with pytest.raises(DataError, match=r"returned shape \(2,\) at t=0.0; expected \(1,\)"):
        simulate(model, {"x": 1.0, "v": 0.0}, t, inputs=lambda s: [0.0, 1.0])
    with pytest.raises(ConfigError, match="times is required"):
        simulate(model, {"x": 1.0, "v": 0.0})
    # output times are values the user supplies: DataError, as everywhere (sysid.solvers.check_times)
    with pytest.raises(DataError, match=r"times must be strictly increasing; times\[2\] = 0.5 follows times\[1\] = 1\."):
        simulate(model, {"x": 1.0, "v": 0.0}, [0.0, 1.0, 0.5], inputs=lambda s: [0.0])
    with pytest.raises(DataError, match=r"initial value of state 'v' in run 'run0' is not finite"):
        simulate(model, {"x": 1.0, "v": np.nan}, t, inputs=lambda s: [0.0])
    short = pd.DataFrame({"time": [0.0, 0.5], "F": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"cover \[0, 0.5\] but run 'run0' is simulated over \[0, 1\]"):
        simulate(model, {"x": 1.0, "v": 0.0}, t, inputs=short)
    with pytest.raises(DataError, match=r"needs a 'time' column"):
        simulate(model, {"x": 1.0, "v": 0.0}, t, inputs=pd.DataFrame({"F": [1.0]}))


def test_dataset_errors():
    model = sm.neural(["x", "v"], ["F"], width=4, depth=1)
    data = from_arrays([np.array([0.0, 1.0])], {"x": [np.array([np.nan, 1.0])], "v": [np.zeros(2)],
                                                "F": [np.array([0.0, np.nan])]},
                       states=["x", "v"], inputs=["F"], runs=["B"])
    with pytest.raises(DataError, match=r"no initial value for the observed states \['x'\] in run 'B': missing "
                                        r"\(NaN\) at the first sample of the run \(time 0\)"):
        simulate(model, data)
    data["x"].values[0, 0] = 0.5
    with pytest.raises(DataError, match=r"input 'F' of run 'B' is missing \(NaN\) at time 1"):
        simulate(model, data)
    with pytest.raises(ConfigError, match="times comes from the dataset"):
        simulate(model, data, [0.0, 1.0])
    only_x = from_arrays([np.array([0.0, 1.0])], {"x": [np.zeros(2)]}, states=["x"])
    with pytest.raises(DataError, match=r"no initial value for the observed states \['v'\] in run 'run0': the "
                                        r"dataset has no variables for them"):
        simulate(model, only_x)
    with pytest.raises(SolverError, match="initial state is not finite"):
        sm.solve(lambda t, y: -y, torch.tensor([float("nan")]), torch.tensor([0.0, 1.0]))


def test_model_not_mutated_and_float32_model_runs_in_float64():
    model = sm.neural(["x"], width=4, depth=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sim = simulate(model, {"x": 1.0}, np.linspace(0, 1, 5))
    assert sim["x"].dtype == np.float64
    assert model.dtype == torch.float32
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_solver_config_validation():
    with pytest.raises(ConfigError, match=r"unknown method 'rk45'; adaptive methods are \['dopri5'"):
        SolverConfig(method="rk45")
    with pytest.raises(ConfigError, match="rtol must be a positive number; got 0"):
        SolverConfig(rtol=0)
    with pytest.raises(ConfigError, match="step must be a positive number or None; got -0.1"):
        SolverConfig(method="rk4", step=-0.1)
    with pytest.raises(ConfigError, match="max_steps must be an integer >= 1"):
        SolverConfig(max_steps=0)
    with pytest.raises(ConfigError, match=r"unknown keys \['tol'\]"):
        SolverConfig.from_dict({"tol": 1e-3})
    with pytest.raises(TypeError):
        SolverConfig("rk4")  # keyword-only
    cfg = SolverConfig(method="rk4", step=0.1)
    assert SolverConfig.from_dict(cfg.to_dict()) == cfg
    assert not cfg.adaptive and SolverConfig().adaptive


def test_gradients_through_solve_direct_adjoint_and_gradcheck():
    model = sm.physics("lotka_volterra", free=["a", "c"], dtype=torch.float64)
    y0 = torch.tensor([[30.0, 4.0], [10.0, 10.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 5.0, 6, dtype=torch.float64)

    def loss(cfg):
        model.zero_grad()
        y = sm.solve(lambda s, y: model(s, y), y0, t, cfg, adjoint_params=tuple(model.parameters()))
        (y[-1] ** 2).sum().backward()
        return model.field.raw.grad.clone()

    direct = loss(SolverConfig(rtol=1e-9, atol=1e-9))
    adjoint = loss(SolverConfig(rtol=1e-9, atol=1e-9, adjoint=True))
    # two ways to differentiate the same solution at 1e-9 tolerances: agree to ~1e-6 relative
    torch.testing.assert_close(adjoint, direct, rtol=1e-5, atol=0)

    def through_solver(raw):
        p = {"a": 0.55 + raw[0], "b": 0.028, "c": 0.8 + raw[1], "d": 0.024}
        f = catalogue.get("lotka_volterra").rhs
        return sm.solve(lambda s, y: f(s, y, None, p, sysid.backend.TORCH), y0, t[:2],
                        SolverConfig(method="rk4", step=0.05))[-1]

    # fixed-step RK4 is a smooth function of the parameters: finite differences agree in float64
    assert torch.autograd.gradcheck(through_solver, (torch.zeros(2, dtype=torch.float64, requires_grad=True),))


def test_solve_counter_and_jump_times():
    counter = sm.SolveCounter()
    y = sm.solve(lambda s, y: -y, torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64),
                 SolverConfig(rtol=1e-8, atol=1e-10), counter=counter, jump_times=[0.5])
    assert counter.nfe > 6 and counter.t_reached >= 1.0
    assert float(y[-1, 0]) == pytest.approx(np.exp(-1.0), rel=1e-7)  # exact solution e^-t


# --------------------------------------------------------------------------------------------- #
# the one solver layer and the one free run (issue 10)
# --------------------------------------------------------------------------------------------- #
def test_python_and_cli_share_the_simulate_default():
    from sysid.cli.simulate_cmd import simulate_cmd
    from sysid.solvers import default_solver

    default = default_solver("simulate")
    assert default == SolverConfig()  # the bare settings object is the simulate default
    options = {p.name: p.default for p in simulate_cmd.params}
    assert (options["method"], float(options["rtol"]), float(options["atol"])) == (
        default.method, default.rtol, default.atol)


def _stiff_model(k=1e4):
    # x' = -k (x - cos t): stiff for large k; with x(0) = 0 the exact solution is
    # x = (k^2 cos t + k sin t) / (k^2 + 1) - k^2 / (k^2 + 1) exp(-k t)
    return sm.physics(lambda t, x, u, p, xp: xp.stack([-p["k"] * (x[..., 0] - xp.cos(t))]), {"k": k},
                      ["x"], dtype=torch.float64)


def test_stiff_system_simulates_with_radau_and_explicit_failure_names_the_remedy():
    k = 1e4
    t = np.linspace(0.0, 10.0, 21)
    exact = (k**2 * np.cos(t) + k * np.sin(t)) / (k**2 + 1) - k**2 / (k**2 + 1) * np.exp(-k * t)
    for method in ("Radau", "BDF"):
        sim = simulate(_stiff_model(k), {"x": 0.0}, t, solver=SolverConfig(method=method, rtol=1e-8, atol=1e-10))
        # implicit methods at rtol 1e-8 over 1e5 time constants of the fast mode: global error
        # measured 4e-7 (Radau) and 2e-9 (BDF) on a solution of size 1
        np.testing.assert_allclose(sim["x"].values[0], exact, atol=1e-6)
        assert json.loads(sim.attrs["solver"])["method"] == method
    # an explicit method is stability-limited to steps ~ 3/k: 3e4 steps over [0, 10]; with a
    # budget of 300 it stops and the message says why (stiffness) and what to do (Radau/BDF)
    with pytest.raises(SolverError, match=r"stiff.*SolverConfig\(method=\"Radau\"\) or method=\"BDF\""):
        simulate(_stiff_model(k), {"x": 0.0}, t, solver=SolverConfig(method="dopri5", max_steps=300))
    with pytest.raises(SolverError, match=r"simulate \(run 'run0'\): integration stopped at t=.*stiff.*"
                                          r"Try method='Radau' or 'BDF'"):
        simulate(_stiff_model(k), {"x": 0.0}, t, solver=SolverConfig(method="RK45", max_steps=300))


def test_scipy_method_agrees_with_the_torch_batched_solve():
    system = catalogue.get("mass_spring_damper")
    t_in = np.linspace(0.0, 8.0, 33)
    force = 0.8 * np.sin(1.3 * t_in) + 0.2 * np.cos(3.1 * t_in)
    data = from_arrays([t_in, t_in + 3.0], {"x": [np.full(33, 0.2), np.full(33, -0.1)],
                                             "v": [np.zeros(33), np.zeros(33)], "F": [force, force]},
                       states=["x", "v"], inputs=["F"], runs=["a", "b"])
    model = sm.Model(sysid.models.physics(system, dtype=torch.float64).field, input_interpolation="cubic")
    torch_run = simulate(model, data, solver=SolverConfig(rtol=1e-10, atol=1e-12))
    scipy_run = simulate(model, data, solver=SolverConfig(method="DOP853", rtol=1e-10, atol=1e-12))
    # two integrators at rtol 1e-10: DOP853 run by run, crossing the 32 PCHIP knots (jumps in the
    # input's second derivative), dopri5 batched, stepping onto them; measured 8e-9 apart
    for n in ("x", "v"):
        np.testing.assert_allclose(scipy_run[n].values, torch_run[n].values, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(scipy_run["F"].values, data["F"].values)  # the samples, exactly
    np.testing.assert_array_equal(scipy_run["time"].values, data["time"].values)


def test_fixed_step_substeps_and_step_hit_every_output_time():
    model = sm.physics(lambda t, x, u, p, xp: xp.stack([-p["k"] * x[..., 0]]), {"k": 0.5}, ["c"],
                       dtype=torch.float64)
    t = np.array([0.0, 0.3, 0.5, 1.0, 1.2])
    exact = np.exp(-0.5 * t)

    def err(**kw):
        sim = simulate(model, {"c": 1.0}, t, solver=SolverConfig(method="rk4", **kw))
        return float(np.max(np.abs(sim["c"].values[0] - exact)))

    e1, e4 = err(substeps=1), err(substeps=4)
    # RK4 is fourth order: 4x smaller steps cut the error ~4^4 = 256x (measured 298 on these
    # uneven gaps, h k <= 0.25)
    assert 200 < e1 / e4 < 350
    # step=0.1 splits each interval into ceil(gap / 0.1) equal steps (3, 2, 5, 2): every output
    # time is a step end, no interpolation; error of RK4 with h = 0.1 (measured 1.8e-8)
    assert err(step=0.1) < 1e-7
    with pytest.raises(SolverError, match=r"needs 12 steps, more than max_steps=10"):
        simulate(model, {"c": 1.0}, t, solver=SolverConfig(method="rk4", step=0.1, max_steps=10))


def test_constant_inputs_equal_a_constant_function():
    model = sysid.models.physics(catalogue.get("mass_spring_damper"), dtype=torch.float64)
    t = np.linspace(0.0, 5.0, 26)
    as_mapping = simulate(model, {"x": 0.1, "v": 0.0}, t, inputs={"F": 0.5}, solver=TIGHT)
    as_function = simulate(model, {"x": 0.1, "v": 0.0}, t, inputs=lambda s: [0.5], solver=TIGHT)
    np.testing.assert_array_equal(as_mapping["x"].values, as_function["x"].values)
    np.testing.assert_array_equal(as_mapping["F"].values[0], np.full(26, 0.5))
    per_run = simulate(model, {"x": [0.1, 0.1], "v": 0.0}, t, inputs={"F": [0.5, -0.5]}, solver=TIGHT)
    assert per_run["x"].values[0, -1] != per_run["x"].values[1, -1]
    with pytest.raises(DataError, match=r"constant inputs must name exactly the inputs \['F'\]; missing "
                                        r"\['F'\], unknown \['G'\]"):
        simulate(model, {"x": 0.1, "v": 0.0}, t, inputs={"G": 0.5})


def test_one_rule_for_initial_states_override_latent_data_default():
    model = sm.second_order(["q"], ["w"], acceleration=lambda t, x, u, p, xp: xp.stack([-p["k"] * x[..., 0]]),
                            parameters={"k": Parameter(4.0, bounds=(0, 10))}, observed=["q"],
                            dtype=torch.float64, latent_initial={"w": 0.0})
    t = np.linspace(0.0, 1.0, 11)
    data = from_arrays([t, t], {"q": [np.cos(2 * t), np.r_[np.nan, np.cos(2 * t[1:])]]}, states=["q"],
                       runs=["a", "b"])
    # run b has no first sample of q: override gives it; w falls to the model's default 0 in run a
    # and to latent= in run b (a DataFrame row per run; run a's row is absent: "not given")
    start = pd.DataFrame({"q": [0.5]}, index=["b"])
    sim = simulate(model, data, override=start, latent=pd.DataFrame({"w": [1.0]}, index=["b"]),
                   solver=SolverConfig(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(sim["q"].values[:, 0], [1.0, 0.5])
    np.testing.assert_allclose(sim["w"].values[:, 0], [0.0, 1.0])
    # q(t) = q0 cos 2t + w0 / 2 sin 2t
    np.testing.assert_allclose(sim["q"].values[1], 0.5 * np.cos(2 * t) + 0.5 * np.sin(2 * t), atol=1e-8)
    with pytest.raises(DataError, match=r"latent values for \['q'\], which are not latent states \['w'\]"):
        simulate(model, data, latent={"q": 1.0})
    with pytest.raises(DataError, match=r"no initial value for the observed states \['q'\] in run 'b': "
                                        r"missing \(NaN\) at the first sample"):
        simulate(model, data)


def test_numpy_dynamics_are_simulated_with_scipy_or_the_numpy_dopri5():
    from sysid.models import Dynamics

    dyn = Dynamics(fn=lambda t, x, u: -x, states=("x",))
    t = np.linspace(0.0, 2.0, 5)
    sim = simulate(dyn, {"x": 1.0}, t, solver="RK45")
    np.testing.assert_allclose(sim["x"].values[0], np.exp(-t), rtol=1e-5)  # rtol 1e-6 of the defaults
    # the default dopri5 runs sysid's stepper on NumPy (rtol 1e-6 of the defaults again)
    np.testing.assert_allclose(simulate(dyn, {"x": 1.0}, t)["x"].values[0], np.exp(-t), rtol=1e-5)
    with pytest.raises(ConfigError, match=r"'rk4' integrates a torch model; these dynamics are NumPy"):
        simulate(dyn, {"x": 1.0}, t, solver="rk4")
    with pytest.raises(ConfigError, match=r"model must be a sysid.models.Model, or dynamics as "
                                          r"sysid.models.Dynamics"):
        simulate(lambda t, y: -y, {"x": 1.0}, t)
