"""One fit across processes with torch.distributed under torchrun: the same loss curve as one
process, identical weights on every process, checkpoints from process 0 only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sysid
from ddp_fit_script import problem
from sysid.errors import ConfigError
from sysid.parallel.distributed import DataParallel, torchrun_command

HERE = Path(__file__).resolve().parent


def test_two_processes_follow_the_single_process_loss_curve(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]),
               OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", str(HERE / "ddp_fit_script.py"), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    data, model, config = problem()
    single = sysid.fit(model, data, config)
    loss = np.array(single.history["loss"])
    for r in ranks:
        assert r["world"] == 2
        # float64: the two processes sum the gradient in another order than one process does
        # (rounding ~1e-16 per step); over 6 epochs and the polish that stays far below 1e-9
        np.testing.assert_allclose(r["loss"], loss, rtol=1e-9)
        for a, b in zip(r["weights"], single.model.parameters()):
            np.testing.assert_allclose(a, b.detach().reshape(-1).numpy(), rtol=1e-7, atol=1e-10)
    # every process holds the same model, bit for bit (they take the same averaged steps)
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["checkpoint"] == str(tmp_path / "checkpoint.pt")
    assert ranks[1]["checkpoint"] is None  # only process 0 writes checkpoints
    assert (tmp_path / "checkpoint.pt").is_file()


def test_data_parallel_needs_an_initialised_group():
    with pytest.raises(ConfigError, match=r"torch.distributed is not initialised; start the "
                                          r"processes with torchrun"):
        DataParallel()


def test_fit_distributed_outside_torchrun_is_a_plain_fit(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    data, model, config = problem()
    from dataclasses import replace

    cfg = replace(config, epochs=2, refine=False, warm_start=False)
    a = sysid.parallel.fit_distributed(model, data, cfg)
    b = sysid.fit(model, data, cfg)
    assert a.history["loss"].equals(b.history["loss"])


def test_torchrun_command_uses_this_interpreter():
    cmd = torchrun_command(3, ["fit", "x.csv"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=3" in cmd and cmd[-4:] == ["-m", "sysid", "fit", "x.csv"]
    with pytest.raises(ConfigError, match=r"--nproc must be an integer >= 1; got 0"):
        torchrun_command(0, [])
