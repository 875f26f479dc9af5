"""Ctrl-C while a checkpoint is written: the file is complete, then the interrupt is raised."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from sysid.training import checkpoint as ck


def test_interrupt_during_checkpoint_is_deferred_until_the_file_is_complete(tmp_path, monkeypatch,
                                                                            python_sigint):
    real_save = torch.save

    def save_and_get_interrupted(obj, f, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of serialising
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ck.torch, "save", save_and_get_interrupted)
    path = tmp_path / "fit.ckpt"
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, {"weights": torch.arange(5.0), "epoch": 3})
    # the checkpoint was still written whole, and the SIGINT handler is back to Python's default
    state = ck.load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["weights"], torch.arange(5.0))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert [p.name for p in tmp_path.iterdir()] == ["fit.ckpt"]  # no temp file left behind
