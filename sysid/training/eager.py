"""torch's optimisers without the first-use import of ``torch._dynamo`` (~1.1 s).

``torch.optim``'s ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` are wrapped so that ``torch.compile`` does not trace them, and ``Adam.step``
(``RMSprop.step``, ...) so that it inserts graph breaks around the update; both wrappers import
``torch._dynamo`` on their first call. That import took 1.1 s of a 1.85-s fit of
``bench_fit_speed.py``'s task in a fresh process (the optimiser's construction, measured here on
the 2-core machine with torch 2.13), every ``sysid fit`` on the command line paid it, and sysid
never compiles its optimiser: outside ``torch.compile`` both wrappers only call the method they
wrap (the step with gradients off, as ``Optimizer.defaults["differentiable"]`` is False).

:func:`eager` gives the same optimiser class with the wrapped methods (``__wrapped__``, set by
``functools.wraps``) called directly and the step run under ``torch.no_grad()``: the same
arithmetic, state and ``state_dict`` (``tests/test_training_eager.py`` compares them step by step,
and checks in a fresh process that a fit leaves ``torch._dynamo`` unimported). A method without
``__wrapped__`` (another torch version) is kept as it is: slower to start, never wrong.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import torch

__all__ = ["eager"]

_Opt = TypeVar("_Opt", bound=torch.optim.Optimizer)

#: The methods of ``torch.optim.Optimizer`` that torch wraps with ``torch._disable_dynamo``.
_GUARDED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _unwrapped(fn: Any) -> Any:
    return getattr(fn, "__wrapped__", fn)


@functools.cache
def eager(base: type[_Opt]) -> type[_Opt]:
    """``base`` (a ``torch.optim`` optimiser class) calling its methods without the wrappers that
    import ``torch._dynamo``; use it as ``base`` (``eager(torch.optim.Adam)(params, lr=...)``).

    Examples
    --------
    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> opt = eager(torch.optim.Adam)([p], lr=0.1)
    >>> p.grad = torch.ones(2)
    >>> _ = opt.step()
    >>> [round(v, 6) for v in p.detach().tolist()]  # Adam's first step moves each weight by lr
    [0.9, 0.9]
    """
    step = _unwrapped(base.step)

    def eager_step(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():  # what the wrapper set (differentiable=False), without its import
            return step(self, *args, **kwargs)

    eager_step.__doc__ = base.step.__doc__
    members = {name: _unwrapped(getattr(base, name)) for name in _GUARDED}
    if step is not base.step:
        members["step"] = eager_step
    return type(base.__name__, (base,), {"__module__": __name__, **members})
