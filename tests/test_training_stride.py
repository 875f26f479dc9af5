"""The last curriculum stage: multiple shooting proper with free starts, overlapping otherwise."""

from __future__ import annotations

import pytest
import torch

from sysid.errors import ConfigError
from sysid.training import FitConfig
from sysid.training.windows import make_windows


def test_final_stage_stride_depends_on_how_windows_start():
    free = FitConfig(horizons=(5, 10, 20), initial_states="free")
    measured = FitConfig(horizons=(5, 10, 20))
    assert [free.stride_for(h) for h in (5, 10, 20)] == [1, 1, 19]
    assert [measured.stride_for(h) for h in (5, 10, 20)] == [1, 1, 1]
    assert FitConfig(horizons=(5, 20), initial_states="free", final_stride=3).stride_for(20) == 3


def test_shooting_windows_count_every_sample_once_but_shared_end_points():
    lengths = torch.tensor([21, 7])
    w = make_windows(lengths, 20, stride=FitConfig(horizons=(20,), initial_states="free").stride_for(20))
    counts = torch.zeros(2, 21, dtype=torch.long)
    for run, idx, valid in zip(w.run, w.idx, w.valid):
        counts[run].index_add_(0, idx[valid], torch.ones(int(valid.sum()), dtype=torch.long))
    # run 0: windows [0..19] and [19, 20]; sample 19 is the shared end point
    assert counts[0].tolist() == [1] * 19 + [2, 1]
    # run 1, shorter than the horizon: one window = single shooting
    assert counts[1, :7].tolist() == [1] * 7


def test_final_stride_must_be_positive():
    with pytest.raises(ConfigError, match="final_stride"):
        FitConfig(final_stride=0)
