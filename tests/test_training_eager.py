"""sysid.training.eager: torch's optimisers without the first-use import of torch._dynamo."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from sysid.training.eager import eager


def _problem(seed: int) -> tuple[list[torch.nn.Parameter], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(3, 4, generator=gen, dtype=torch.float64)),
              torch.nn.Parameter(torch.randn(4, generator=gen, dtype=torch.float64))]
    return params, torch.randn(5, 3, generator=gen, dtype=torch.float64)


def _loss(params: list[torch.nn.Parameter], x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x @ params[0] + params[1]).pow(2).sum() + params[1].pow(4).sum()


def _groups(params: list[torch.nn.Parameter]) -> list[dict]:
    return [{"params": params[:1], "weight_decay": 0.01}, {"params": params[1:], "lr": 0.02}]


def _steps_agree(pairs, x: torch.Tensor, steps: int) -> None:
    """Take ``steps`` steps with each (optimiser, parameters) pair; the parameters must end equal
    bit for bit (the same arithmetic in the same order) and without a graph."""
    for _ in range(steps):
        for opt, params in pairs:
            opt.zero_grad()
            _loss(params, x).backward()
            opt.step()
    (_, first), (_, second) = pairs
    for a, b in zip(first, second):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        assert b.grad_fn is None and b.requires_grad  # the step ran without recording a graph


@pytest.mark.parametrize("base, options", [
    (torch.optim.Adam, {"lr": 0.05, "foreach": True}),
    (torch.optim.AdamW, {"lr": 0.05, "foreach": True}),
    (torch.optim.RMSprop, {"lr": 0.01, "foreach": True}),
])
def test_eager_takes_the_same_steps_and_state_as_torch(base, options):
    (p_ref, x), (p_new, _) = _problem(0), _problem(0)
    ref, new = base(_groups(p_ref), **options), eager(base)(_groups(p_new), **options)
    assert isinstance(new, base)
    _steps_agree([(ref, p_ref), (new, p_new)], x, 6)
    # the state round-trips: a fresh eager optimiser loaded with it continues as torch's does
    state = new.state_dict()
    torch.testing.assert_close(state["state"], ref.state_dict()["state"], rtol=0, atol=0)
    again = eager(base)(_groups(p_new), **options)
    again.load_state_dict(state)
    _steps_agree([(ref, p_ref), (again, p_new)], x, 1)


def test_eager_lbfgs_takes_the_same_steps_with_a_closure():
    (p_ref, x), (p_new, _) = _problem(1), _problem(1)
    ref = torch.optim.LBFGS(p_ref, lr=1.0, max_iter=8, line_search_fn="strong_wolfe")
    new = eager(torch.optim.LBFGS)(p_new, lr=1.0, max_iter=8, line_search_fn="strong_wolfe")
    for opt, params in ((ref, p_ref), (new, p_new)):
        def closure(opt=opt, params=params):
            opt.zero_grad()
            value = _loss(params, x)
            value.backward()  # the closure runs with gradients on inside the no-grad step
            return value
        opt.step(closure)
    for a, b in zip(p_ref, p_new):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    with torch.no_grad():  # it did move downhill
        assert float(_loss(p_new, x)) < float(_loss(_problem(1)[0], x))


def test_a_fit_does_not_import_what_it_does_not_use():
    # torch._dynamo's import took ~1.1 s of a fresh process's first fit, sympy's (through
    # nn.utils.skip_init) ~0.4 s of its first network, scipy.stats's (the parameter intervals'
    # quantiles) ~0.45 s: a neural fit (Adam, the warm start's functional Adam) leaves all three
    # unimported, a physics fit (the warm start's L-BFGS) torch._dynamo (its parameter
    # covariance's vmapped Jacobian imports sympy inside torch, and its intervals scipy.stats)
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import sysid
        t = np.linspace(0.0, 20.0, 21)
        n = 10.0 / (1.0 + 9.0 * np.exp(-0.3 * t))
        ds = sysid.from_arrays([t], {"N": [n]}, states=["N"])
        cfg = sysid.FitConfig(epochs=2, progress=False, dtype="float64")
        sysid.fit(sysid.models.neural(["N"], width=4, depth=1, seed=0), ds, cfg)
        print([m for m in ("torch._dynamo", "sympy", "scipy.stats") if m in sys.modules])
        sysid.fit(sysid.models.physics("logistic", free=["r", "K"],
                                       values={"K": 8.0, "r": 0.2}), ds, cfg)
        print("torch._dynamo" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-2:] == ["[]", "False"]
