"""A multilayer-perceptron vector field that works in normalised variables, in user units outside."""

from __future__ import annotations

import math
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, final

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sysid.errors import ConfigError
from sysid.models.base import NumpyField, ScalingLike, VectorField, scaling_arrays
from sysid.models.numpy_fields import ACTIVATIONS as NUMPY_ACTIVATIONS
from sysid.models.numpy_fields import neural_function
from sysid.models.physics import PhysicsField

__all__ = ["NeuralField", "ACTIVATIONS", "frozen_weights", "folded_once"]


# name -> (torch function, numpy function)
ACTIVATIONS: dict[str, tuple[Any, Any]] = {
    "tanh": (torch.tanh, NUMPY_ACTIVATIONS["tanh"]),
    "relu": (torch.relu, NUMPY_ACTIVATIONS["relu"]),
    "softplus": (nn.functional.softplus, NUMPY_ACTIVATIONS["softplus"]),
    "sigmoid": (torch.sigmoid, NUMPY_ACTIVATIONS["sigmoid"]),
    "silu": (nn.functional.silu, NUMPY_ACTIVATIONS["silu"]),
    "elu": (nn.functional.elu, NUMPY_ACTIVATIONS["elu"]),
    "gelu": (nn.functional.gelu, NUMPY_ACTIVATIONS["gelu"]),
}

# activation name -> (the activation in place, its derivative from its output: (grad, out) -> grad)
_DERIVATIVE_OF_OUTPUT: dict[str, tuple[Any, Any]] = {
    "sigmoid": (torch.sigmoid_, torch.ops.aten.sigmoid_backward),
    "tanh": (torch.tanh_, torch.ops.aten.tanh_backward),
    "relu": (torch.relu_, lambda grad, out: torch.ops.aten.threshold_backward(grad, out, 0.0)),
}

#: Evaluate tanh networks in torch as the same networks of sigmoids (``NeuralField._layers``):
#: torch's CPU tanh is not vectorised. A switch for the benchmarks that time ``torch.tanh``.
TANH_AS_SIGMOID = True

# The last layer starts this much smaller than a Glorot-initialised layer, so an untrained network
# is a gentle perturbation (a hybrid model starts close to its physics term, a neural ODE close to
# dx/dt = 0) instead of a random field that can make the first solves stiff.
_LAST_LAYER_GAIN = 0.1


def seeded_layers(sizes: list[int], gen: torch.Generator,
                  last_gain: float = _LAST_LAYER_GAIN) -> nn.ModuleList:
    """Linear layers ``sizes[0] -> sizes[1] -> ...``, Glorot-uniform weights drawn from ``gen``
    (the last layer's scaled by ``last_gain``) and zero biases; nothing is drawn from the global
    RNG.

    The layers are made on the meta device (shapes only, no initialisation) and given their
    parameters: ``nn.utils.skip_init`` does the same through ``Module.to_empty``, whose first
    call imports sympy (~0.4 s of a process's first model, bench_first_fit.py)."""
    layers = []
    last = len(sizes) - 2
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = math.sqrt(6.0 / (fan_in + fan_out)) * (last_gain if k == last else 1.0)
        layer = nn.Linear(fan_in, fan_out, device="meta")
        layer.weight = nn.Parameter((torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound)
        layer.bias = nn.Parameter(torch.zeros(fan_out))
        layers.append(layer)
    return nn.ModuleList(layers)


@final
class NeuralField(VectorField):
    """MLP vector field ``dx/dt = net((x - mean)/scale, (u - mean)/scale, t/time_scale) * scale/time_scale``.

    Parameters
    ----------
    states : sequence of str
        State names (the network reads all of them).
    inputs : sequence of str, optional
        Input names the network reads; empty (default) for an autonomous field without inputs.
    arguments : sequence of str, optional
        The states the network reads (default all); the others do not enter it (an equations
        file's ``nn(theta, v)`` reads only ``theta`` and ``v``).
    outputs : sequence of str, optional
        States whose derivatives the network produces (default all). A subset makes a partial term
        for :class:`~sysid.models.HybridField` (``neural_states``).
    width, depth : int
        Hidden units per layer (>= 1) and number of hidden layers (>= 0; 0 is a linear field).
    activation : str
        One of ``ACTIVATIONS``: tanh (default), relu, softplus, sigmoid, silu, elu, gelu.
    time_dependent : bool
        Whether the network also reads ``t / time_scale`` (a non-autonomous field).
    seed : int
        Seed of the weight initialisation (a private generator; global RNG state is untouched).
    state_units, input_units, time_units
        Units (one string per name, or a mapping name -> units).

    Notes
    -----
    The normalisation (state/input means and scales, time scale) lives in buffers, so it is saved
    and loaded with the weights. Until :meth:`set_scaling` is called it is the identity.
    Weights are Glorot-uniform with zero biases; the last layer is scaled by 0.1.

    Examples
    --------
    >>> f = NeuralField(["x", "v"], width=8, depth=1)
    >>> f(torch.tensor(0.0), torch.zeros(3, 2)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        states: Sequence[str],
        inputs: Sequence[str] = (),
        *,
        outputs: Sequence[str] | None = None,
        arguments: Sequence[str] | None = None,
        width: int = 64,
        depth: int = 2,
        activation: str = "tanh",
        time_dependent: bool = False,
        seed: int = 0,
        state_units: Sequence[str] | Mapping[str, str] | None = None,
        input_units: Sequence[str] | Mapping[str, str] | None = None,
        time_units: str = "",
    ) -> None:
        super().__init__()
        self._init_names("NeuralField", states, inputs, outputs, state_units, input_units, time_units)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(f"NeuralField: width must be an integer >= 1; got {width!r}.")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ConfigError(f"NeuralField: depth must be an integer >= 0; got {depth!r}.")
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"NeuralField: unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}."
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"NeuralField: seed must be an integer; got {seed!r}.")
        self.width = width
        self.depth = depth
        self.activation = activation
        self.time_dependent = bool(time_dependent)
        self.seed = seed
        if arguments is None:
            self.arguments = self.state_names
        else:
            if isinstance(arguments, str):
                raise ConfigError(f"NeuralField: arguments must be a list of state names, not {arguments!r}.")
            self.arguments = tuple(str(a) for a in arguments)
            unknown = [a for a in self.arguments if a not in self.state_names]
            if unknown or len(set(self.arguments)) != len(self.arguments):
                raise ConfigError(
                    f"NeuralField: arguments must be distinct states of {list(self.state_names)}; "
                    f"got {list(self.arguments)}."
                )
        n_s, n_i, n_o = len(self.state_names), len(self.input_names), len(self.output_names)
        n_a = len(self.arguments)
        if n_a + n_i + int(self.time_dependent) == 0:
            raise ConfigError("NeuralField: the network reads nothing (no arguments, inputs or time).")
        sizes = [n_a + n_i + int(self.time_dependent)] + [width] * depth + [n_o]
        self.layers = seeded_layers(sizes, torch.Generator().manual_seed(seed))
        self._act = ACTIVATIONS[activation][0]
        # folded weights (of _layers) made once by frozen_weights() for a no-grad block
        self._frozen: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._frozen_grad = False  # made with gradients (folded_once): used by calls with them too
        out_idx = [self.state_names.index(n) for n in self.output_names]
        self.register_buffer("x_mean", torch.zeros(n_s))
        self.register_buffer("x_scale", torch.ones(n_s))
        self.register_buffer("u_mean", torch.zeros(n_i))
        self.register_buffer("u_scale", torch.ones(n_i))
        self.register_buffer("time_scale", torch.ones(()))
        self.register_buffer("_out_idx", torch.tensor(out_idx, dtype=torch.long), persistent=False)
        arg_idx = [self.state_names.index(n) for n in self.arguments]
        self._all_args = self.arguments == self.state_names
        self._all_outputs = self.output_names == self.state_names
        self.register_buffer("_arg_idx", torch.tensor(arg_idx, dtype=torch.long), persistent=False)

    def set_scaling(self, scaling: ScalingLike | Mapping[str, Any] | None) -> None:
        """Normalise with a :class:`sysid.data.Scaling` (or its dict); ``None`` resets to identity."""
        with torch.no_grad():
            if scaling is None:
                self.x_mean.zero_()
                self.x_scale.fill_(1.0)
                self.u_mean.zero_()
                self.u_scale.fill_(1.0)
                self.time_scale.fill_(1.0)
                return
            xm, xs, ts = scaling_arrays(scaling, self.state_names, "NeuralField.set_scaling")
            self.x_mean.copy_(torch.as_tensor(xm))
            self.x_scale.copy_(torch.as_tensor(xs))
            if self.input_names:
                um, us, _ = scaling_arrays(scaling, self.input_names, "NeuralField.set_scaling")
                self.u_mean.copy_(torch.as_tensor(um))
                self.u_scale.copy_(torch.as_tensor(us))
            self.time_scale.fill_(ts)

    def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Derivatives of ``output_names`` for ``x`` (B, S), ``u`` (B, I), ``t`` 0-d or (B,).

        The input scales are folded into the first layer's weights and the output scale
        (``x_scale / time_scale`` of the outputs) into the last layer's, recomputed every call
        from the current weights and buffers (tiny tensors), so training and :meth:`set_scaling`
        stay exact. The means are still subtracted from the batch: folding them into the bias
        would cancel large offsets (e.g. 300 K with a scale of 1) in float32. Inside
        :func:`frozen_weights` and without gradients, or inside :func:`folded_once`, the folded
        weights made on entry are used.
        """
        self._check_xu(x, u)
        xm = self.x_mean
        z = x - xm if self._all_args else x[..., self._arg_idx] - xm[self._arg_idx]
        frozen = self._frozen
        use = frozen is not None and (self._frozen_grad or not torch.is_grad_enabled())
        return self.network(t, z, u, frozen if use else self._layers())

    def network(self, t: torch.Tensor, z: torch.Tensor, u: torch.Tensor | None,
                params: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The layers ``params`` (from :meth:`_layers`) on the centred arguments ``z`` (B, A),
        with the centred inputs and the time appended."""
        z = self._arguments(t, z, u)
        act = torch.sigmoid if self._sigmoid_form else self._act  # the activation of _layers
        for w, b in params[:-1]:
            z = act(F.linear(z, w, b))
        w, b = params[-1]
        return F.linear(z, w, b)

    def _arguments(self, t: torch.Tensor, z: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """What the first layer reads: the centred arguments ``z`` (B, A), with the centred
        inputs and the time appended."""
        if not (self.input_names or self.time_dependent):
            return z
        parts = [z]
        if self.input_names:
            parts.append(u - self.u_mean)  # type: ignore[operator]
        if self.time_dependent:
            tt = torch.as_tensor(t, dtype=z.dtype, device=z.device)
            parts.append(tt.reshape(-1, 1).expand(*z.shape[:-1], 1) if tt.ndim else
                         tt.expand(*z.shape[:-1], 1))
        return torch.cat(parts, dim=-1)

    @property
    def _written_backward(self) -> bool:
        """Whether :meth:`_squared_error_gradient` can run this network: its activation's
        derivative is a function of the activation's output."""
        return self._sigmoid_form or self.activation in _DERIVATIVE_OF_OUTPUT

    def _squared_error_gradient(
            self, params: list[tuple[torch.Tensor, torch.Tensor]], args: torch.Tensor,
            target: torch.Tensor, coef: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``sum(coef * (net(args) - target)**2)`` for the layers ``params`` (from
        :meth:`_layers`, detached) and its gradient with respect to them, by a written-out
        backward pass: no autograd graph, activations overwritten in place.

        For the warm start, whose every step is one forward and backward pass of the network
        over all samples: a step of the default network over 600 rows dispatches 52 operations
        this way (folding and its transpose included) against 75 through autograd, and records
        no graph (counted with a ``TorchDispatchMode``). ``args`` (B, A) from :meth:`_arguments`,
        ``target`` (B, O), ``coef`` (O,) or (B, O); returns the value (a 0-d tensor) and the
        gradients in the order ``[w0, b0, w1, b1, ...]``. Requires :attr:`_written_backward`.
        """
        name = "sigmoid" if self._sigmoid_form else self.activation
        act_, derivative = _DERIVATIVE_OF_OUTPUT[name]
        outs = [args]
        h = args
        for w, b in params[:-1]:
            h = act_(torch.addmm(b, h, w.t()))
            outs.append(h)
        w, b = params[-1]
        err = torch.addmm(b, h, w.t()).sub_(target)
        g = err * (2.0 * coef)  # d value / d output
        value = torch.vdot(err.reshape(-1), g.reshape(-1)) * 0.5
        grads: list[torch.Tensor] = []
        for i in range(len(params) - 1, -1, -1):
            w = params[i][0]
            # the product made with the wider side as its columns: (32 x 600)(600 x 2) took
            # 26 us against 6 us for (2 x 600)(600 x 32) transposed
            gw = (g.t().mm(outs[i]) if w.shape[0] <= w.shape[1] else
                  outs[i].t().mm(g).t().contiguous())
            grads += [g.sum(dim=0), gw]  # (reversed below)
            if i:
                g = derivative(g.mm(params[i][0]), outs[i])
        grads.reverse()
        return value, grads

    def _folded(self, unit: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The layers' ``(weight, bias)`` with the input scales folded into the first layer and
        the output scale (``x_scale / time_scale`` of the outputs) into the last.

        With ``unit`` (S,) (a field of all states to all states only): the layers of
        ``dz/dt = f(x_mean + unit * z) / unit`` in the coordinates ``z`` of a caller that scales
        the states by ``unit`` around the field's own mean (a fit's scaled states), for
        :meth:`network` on ``z`` directly."""
        in_scale, out_scale = self._fold_scales(unit)
        params = [(layer.weight, layer.bias) for layer in self.layers]
        w, b = params[0]
        params[0] = (w / in_scale, b)
        w, b = params[-1]  # (the first layer too when depth is 0)
        params[-1] = (w * out_scale[:, None], b * out_scale)
        return params

    def _layers_transpose(self, grads: list[torch.Tensor],
                          factors: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """The gradient with respect to the layers' own weights and biases (``[w0, b0, w1, b1,
        ...]``), from the gradient ``grads`` with respect to those of :meth:`_layers` (same
        order) made with ``factors`` (:meth:`_fold_factors`): the transpose of the folding,
        which is linear in the weights. Written out for the warm start (a handful of operations
        instead of an autograd graph of the folding); ``tests/test_models_neural_frozen.py``
        checks it against autograd."""
        in_scale, out_scale, first, rows = factors
        n = len(self.layers)
        out = list(grads)
        if not self._sigmoid_form or n == 1:  # _folded: the first layer / in_scale, the last * out
            out[0] = out[0] / in_scale
            out[-2], out[-1] = out[-2] * out_scale.unsqueeze(1), out[-1] * out_scale
            return out
        out[0], out[1] = out[0] * first, out[1] * 2.0
        for i in range(2, 2 * n - 2, 2):  # 4 w, 2 b - 2 w 1
            gw, gb = grads[i], grads[i + 1]
            out[i], out[i + 1] = (gw * 4.0).sub_(gb.unsqueeze(1), alpha=2.0), gb * 2.0
        gw, gb = grads[-2], grads[-1]  # rows w, out_scale b - rows w 1 / 2
        out[-2] = (gw * 2.0).sub_(gb.unsqueeze(1)).mul_(out_scale.unsqueeze(1))
        out[-1] = gb * out_scale
        return out

    def _fold_factors(self, unit: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The constants of the folding of :meth:`_layers` (buffers only: no gradient flows
        through them): ``in_scale, out_scale`` of :meth:`_fold_scales` and, for the sigmoid
        form, the first layer's column factors ``2 / in_scale`` and the last layer's row
        factors ``2 out_scale`` (O, 1). Made once, they serve every step of a warm start."""
        in_scale, out_scale = self._fold_scales(unit)
        return in_scale, out_scale, 2.0 / in_scale, (2.0 * out_scale).unsqueeze(1)

    def _fold_scales(self, unit: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`_folded` divides the first layer's columns by and multiplies the last
        layer's rows by (buffers only: no gradient flows through them)."""
        in_scale = self.x_scale if self._all_args else self.x_scale[self._arg_idx]
        out_scale = self.x_scale if self._all_outputs else self.x_scale[self._out_idx]
        if unit is not None:
            in_scale, out_scale = in_scale / unit, out_scale / unit
        if self.input_names or self.time_dependent:
            scales = [in_scale]
            if self.input_names:
                scales.append(self.u_scale)
            if self.time_dependent:
                scales.append(self.time_scale.reshape(1))
            in_scale = torch.cat(scales)
        return in_scale, out_scale / self.time_scale

    @property
    def _sigmoid_form(self) -> bool:
        """A tanh network evaluated as the same network of sigmoids (:meth:`_layers`)."""
        return TANH_AS_SIGMOID and self.activation == "tanh"

    def _layers(self, unit: torch.Tensor | None = None,
                factors: tuple[torch.Tensor, ...] | None = None,
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The layers :meth:`network` evaluates: those of :meth:`_folded`, and for a tanh network
        the same function as a network of sigmoids, ``tanh(a) = 2 sigmoid(2 a) - 1``.

        With ``s = sigmoid(2 a)`` a hidden layer's output ``h = 2 s - 1`` enters the next layer
        as ``W h + b = 2 W s + (b - W 1)``: each hidden layer's weights and bias are doubled
        (the first's) or made ``4 W, 2 (b - W 1)`` (the others'), the last layer's ``2 W,
        b - W 1``. Torch's CPU tanh is not vectorised (51 us for 600 x 32 floats against 9 us
        for sigmoid, ``benchmarks/bench_neural_forward.py --batch 600``): the default network's
        training step spent a quarter of its time in it. The rewrite costs a few small operations
        per fold, so it pays where one fold serves many evaluations (a rollout: an epoch 1.4x
        faster, ``bench_train_step.py``); folded at every call it gains nothing (the same
        benchmark's forward + backward per call). The NumPy copies keep tanh (NumPy's is fast).
        """
        if not self._sigmoid_form or len(self.layers) == 1:
            return self._folded(unit)
        # the layers of _folded rewritten, made from the weights in 7 operations (the scalings
        # combined first, ``factors`` when given; W 1 by addmv) instead of 12 for the default
        # network, each one node fewer in the backward pass of a rollout
        _, out_scale, first, rows = self._fold_factors(unit) if factors is None else factors
        params = [(layer.weight, layer.bias) for layer in self.layers]
        w, b = params[0]
        out = [(w * first, b * 2.0)]
        for w, b in params[1:-1]:
            out.append((w * 4.0, torch.addmv(b, w, w.new_ones(w.shape[1]), beta=2.0, alpha=-2.0)))
        w, b = params[-1]
        w = w * rows
        out.append((w, torch.addmv(b * out_scale, w, w.new_ones(w.shape[1]), alpha=-0.5)))
        return out

    def numpy_function(self, coordinates: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> NumpyField:
        """Pure-NumPy float64 copy of :meth:`forward` (:mod:`sysid.models.numpy_fields`).

        With ``coordinates = (mean, scale)`` (S,) over all states: the same field in the states
        ``z = (x - mean) / scale`` (``dz/dt`` of the outputs), the scalings composed into the
        network's own normalisation (a fit's scaled states, for its held-out checks)."""

        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().double().numpy()

        x_mean, x_scale = array(self.x_mean), array(self.x_scale)
        if coordinates is not None:
            mean, scale = (np.asarray(c, dtype=float) for c in coordinates)
            x_mean, x_scale = (x_mean - mean) / scale, x_scale / scale
        return neural_function(
            [(array(layer.weight), array(layer.bias)) for layer in self.layers], self.activation,
            x_mean=x_mean, x_scale=x_scale, u_mean=array(self.u_mean),
            u_scale=array(self.u_scale), time_scale=float(self.time_scale),
            outputs=self._out_idx.tolist(), arguments=None if self._all_args else self._arg_idx.tolist(),
            has_inputs=bool(self.input_names), time_dependent=self.time_dependent)

    def spec(self) -> dict[str, Any]:
        """Structure for model files."""
        return {
            "type": "NeuralField",
            "states": list(self.state_names),
            "inputs": list(self.input_names),
            "outputs": list(self.output_names),
            **({} if self._all_args else {"arguments": list(self.arguments)}),
            "width": self.width,
            "depth": self.depth,
            "activation": self.activation,
            "time_dependent": self.time_dependent,
            "seed": self.seed,
            "state_units": list(self.state_units),
            "input_units": list(self.input_units),
            "time_units": self.time_units,
        }


@contextlib.contextmanager
def frozen_weights(module: nn.Module) -> Iterator[None]:
    """Fold the scalings of every :class:`NeuralField` in ``module`` into its weights once, and
    compute the constrained values of every :class:`~sysid.models.physics.PhysicsField`'s
    parameters once, for a block that evaluates the fields many times without gradients and
    without changing them (a free run: ``sysid.simulate``, a fit's validation). Calls with
    gradients enabled, and calls after the block, fold and constrain afresh as usual.

    Examples
    --------
    >>> f = NeuralField(["x"], width=4, depth=1)
    >>> x = torch.ones(2, 1)
    >>> with torch.no_grad(), frozen_weights(f):
    ...     y = f(torch.tensor(0.0), x)
    >>> bool(torch.equal(y, f(torch.tensor(0.0), x).detach()))
    True
    """
    fields = [m for m in module.modules() if isinstance(m, (NeuralField, PhysicsField))]
    saved = [(f._frozen, getattr(f, "_frozen_grad", False)) for f in fields]
    try:
        with torch.no_grad():
            for f in fields:
                if isinstance(f, NeuralField):
                    f._frozen, f._frozen_grad = f._layers(), False
                else:
                    f._frozen = f._values(f.raw)
        yield
    finally:
        for f, (s, g) in zip(fields, saved):
            f._frozen = s
            if isinstance(f, NeuralField):
                f._frozen_grad = g


@contextlib.contextmanager
def folded_once(module: nn.Module) -> Iterator[None]:
    """Fold the scalings of every :class:`NeuralField` in ``module`` into its weights once, with
    gradients, for a block in which the weights do not change (the forward pass of one training
    step: every evaluation of a rollout uses the one fold, and the backward pass after the block
    reaches the weights through it). Without gradients it acts as :func:`frozen_weights`.

    Do not change the weights inside the block (an optimiser step), and do not use it where the
    backward pass evaluates the field again after the block (the adjoint method, gradient
    checkpointing): those calls fold afresh, which is correct but gains nothing.

    Examples
    --------
    >>> f = NeuralField(["x"], width=4, depth=1)
    >>> x = torch.ones(2, 1)
    >>> with folded_once(f):
    ...     y = f(torch.tensor(0.0), x) + f(torch.tensor(1.0), x)
    >>> y.sum().backward()
    >>> f.layers[0].weight.grad is not None
    True
    """
    fields = [m for m in module.modules() if isinstance(m, NeuralField)]
    saved = [(f._frozen, f._frozen_grad) for f in fields]
    try:
        for f in fields:
            f._frozen, f._frozen_grad = f._layers(), torch.is_grad_enabled()
        yield
    finally:
        for f, (s, g) in zip(fields, saved):
            f._frozen, f._frozen_grad = s, g
