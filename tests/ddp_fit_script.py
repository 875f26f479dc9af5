"""Run by tests/test_parallel_distributed.py under torchrun: one data-parallel fit.

Usage: python -m torch.distributed.run --standalone --nproc-per-node N ddp_fit_script.py OUT_DIR
Each process writes OUT_DIR/rank<r>.json (its loss curve, weights and checkpoint setting).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def problem():
    """The data, model and config of the test (float64, a few epochs, hybrid penalty; the
    refinement after the first-order stage runs whole on every process, so it is left out)."""
    import sysid.models
    import sysid.systems
    from sysid.training import FitConfig

    data = sysid.systems.make_dataset("lotka_volterra", n_runs=5, n_obs=16, noise=0.05, seed=1)
    model = sysid.models.hybrid("lotka_volterra", width=6, depth=1, seed=0,
                                values={"a": 0.5, "b": 0.02, "c": 0.7, "d": 0.02})
    config = FitConfig(epochs=6, dtype="float64", shooting={"horizons": (4, 8)},
                       warm_start={"epochs": 20}, validation={"every": 2},
                       refine=False, progress=False,
                       initial_states="free")
    return data, model, config


def main(out: str) -> None:
    torch.set_num_threads(1)
    from sysid.parallel import fit_distributed

    data, model, config = problem()
    checkpoint = str(Path(out) / "checkpoint.pt")
    import dataclasses

    from sysid.training.config import Checkpoint

    result = fit_distributed(model, data, dataclasses.replace(
        config, checkpoint=Checkpoint(path=checkpoint, every=2)))
    rank = int(os.environ.get("RANK", "0"))
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({
        "loss": result.history["loss"].tolist(),
        "weights": [p.detach().reshape(-1).tolist() for p in result.model.parameters()],
        "checkpoint": result.config.checkpoint.path,
        "world": int(os.environ.get("WORLD_SIZE", "1")),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
