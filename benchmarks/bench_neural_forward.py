"""NeuralField forward+backward per call: the folded forward against the former unfolded one, and
torch's tanh against its sigmoid.

The former forward (normalise the input, slice ``self.layers[:-1]`` into a new ModuleList, run the
MLP with ``torch.tanh``, rescale the output) is written out here and timed against
``NeuralField.forward`` on the same weights (folded, and a tanh network evaluated as the same
network of sigmoids, ``NeuralField._layers``), and against the same forward with tanh evaluated
by ``torch.tanh``, interleaved in one process with one torch thread; the median time per call of
each over ``--repeats`` rounds is printed with their ratios. Then the elementwise functions alone:
``torch.tanh``, ``torch.sigmoid`` and ``numpy.tanh`` on ``batch x width`` float32 values (the
activations of one hidden layer).

Run: ``python benchmarks/bench_neural_forward.py [--batch 64] [--width 32] [--depth 2]``
(``--batch 600``: the warm start of ``bench_fit_speed.py``'s task, 6 runs x 100 samples).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sysid.models import NeuralField
from sysid.models.neural import ACTIVATIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import tanh_as_tanh  # noqa: E402


def unfolded(f: NeuralField, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The forward of NeuralField before the scales were folded into the weights."""
    z = (x - f.x_mean) / f.x_scale
    h = z
    act = ACTIVATIONS[f.activation][0]  # torch.tanh for the default
    for layer in f.layers[:-1]:
        h = act(layer(h))
    return f.layers[-1](h) * (f.x_scale[f._out_idx] / f.time_scale)


def per_call(fn, f: NeuralField, t: torch.Tensor, x: torch.Tensor, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        f.zero_grad(set_to_none=True)
        fn(t, x).sum().backward()
    return (time.perf_counter() - t0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    f = NeuralField(["x", "v"], width=args.width, depth=args.depth)
    f.set_scaling({"names": ["x", "v"], "mean": [1.0, -2.0], "scale": [3.0, 0.5], "time_scale": 2.0})
    x = torch.randn(args.batch, 2)
    t = torch.tensor(0.0)

    def tanh_forward(t_, x_):  # today's folded forward with torch.tanh
        with tanh_as_tanh():
            return f(t_, x_)

    new, old, tanh = [], [], []
    for _ in range(args.repeats):
        new.append(per_call(f, f, t, x, args.calls))
        old.append(per_call(lambda t_, x_: unfolded(f, t_, x_), f, t, x, args.calls))
        tanh.append(per_call(tanh_forward, f, t, x, args.calls))
    m_new, m_old, m_tanh = (statistics.median(v) for v in (new, old, tanh))
    print(f"forward+backward per call (batch {args.batch}, width {args.width}, depth {args.depth}): "
          f"unfolded {m_old * 1e6:.1f} us, folded with torch.tanh {m_tanh * 1e6:.1f} us, "
          f"folded as sigmoids (today) {m_new * 1e6:.1f} us")
    print(f"speedup today vs unfolded: {m_old / m_new:.2f}x, vs folded with torch.tanh: "
          f"{m_tanh / m_new:.2f}x")
    h = torch.randn(args.batch, args.width)
    h_np = h.numpy()
    fns = {"torch.tanh": lambda: torch.tanh(h), "torch.sigmoid": lambda: torch.sigmoid(h),
           "numpy.tanh": lambda: np.tanh(h_np)}
    times: dict = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(args.calls):
                fn()
            times[k].append((time.perf_counter() - t0) / args.calls)
    print(f"one hidden layer's activations ({args.batch} x {args.width} float32): " + ", ".join(
        f"{k} {statistics.median(v) * 1e6:.1f} us" for k, v in times.items()))


if __name__ == "__main__":
    main()
