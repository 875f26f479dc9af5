"""NeuralField forward+backward per call: the folded forward against the former unfolded one.

The former forward (normalise the input, slice ``self.layers[:-1]`` into a new ModuleList, run the
MLP, rescale the output) is written out here and timed against ``NeuralField.forward`` on the same
weights, interleaved in one process with one torch thread; the median time per call of each over
``--repeats`` rounds is printed with their ratio.

Run: ``python benchmarks/bench_neural_forward.py [--batch 64] [--width 32] [--depth 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sysid.models import NeuralField


def unfolded(f: NeuralField, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The forward of NeuralField before the scales were folded into the weights."""
    z = (x - f.x_mean) / f.x_scale
    h = z
    for layer in f.layers[:-1]:
        h = f._act(layer(h))
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
    new, old = [], []
    for _ in range(args.repeats):
        new.append(per_call(f, f, t, x, args.calls))
        old.append(per_call(lambda t_, x_: unfolded(f, t_, x_), f, t, x, args.calls))
    m_new, m_old = statistics.median(new), statistics.median(old)
    print(f"forward+backward per call (batch {args.batch}, width {args.width}, depth {args.depth}): "
          f"unfolded {m_old * 1e6:.1f} us, folded {m_new * 1e6:.1f} us")
    print(f"speedup folded vs unfolded: {m_old / m_new:.2f}x")


if __name__ == "__main__":
    main()
