"""The step ranges in clip frames, and the per-step account of TSA and F+S+R against their compare()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa.data.protocol import sample_frame_numbers
from aqa.models.registry import build_model
from aqa.score.steps import step_contributions, step_frames, supports_step_account

SMALL = {
    "tsa": {"psnet": {"feature_dim": 128, "head_hidden": [16]}, "decoder": {"dim": 8, "heads": 2, "depth": 2},
            "regressor_hidden": [16]},
    "fsr": {"psnet": {"feature_dim": 128, "head_hidden": [16]}, "hidden": [16]},
}


def _batch(n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"pooled": torch.randn(n, 9, 128, generator=g), "maps": torch.randn(n, 9, 128, 2, 2, generator=g),
            "transitions": torch.tensor([[20, 60]] * n), "score": torch.zeros(n), "action": torch.zeros(n).long()}


@pytest.mark.parametrize("method", ["tsa", "fsr"])
def test_step_contributions_add_up_to_the_models_difference(method):
    torch.manual_seed(0)
    model = build_model(method, **SMALL[method]).eval()
    with torch.no_grad():
        enc_q, enc_e = model.encode(_batch(5, 1)), model.encode(_batch(5, 2))
        delta = model.compare(enc_q, enc_e, reverse=False)["delta"]
    parts = step_contributions(model, enc_q, enc_e)
    assert parts.shape == (5, 3) and supports_step_account(model)
    torch.testing.assert_close(parts.sum(1), delta, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(parts[:, 0], parts[:, 1])       # the steps differ: not delta / 3 each


def test_methods_without_steps_have_no_account():
    model = build_model("fr", feature_dim=128, hidden=[16])
    assert not supports_step_account(model)
    with pytest.raises(TypeError):
        step_contributions(model, {}, {})


@pytest.mark.parametrize("first,last", [(0, 108), (561, 669), (0, 40)])
def test_step_frames_cover_the_clip_in_its_own_frame_numbers(first, last):
    t = np.array([24, 58])                       # the loader's scale: steps start at slots 25 and 59
    steps = step_frames(t, first, last)
    frames = sample_frame_numbers(first, last, 96)
    assert steps[0][0] == first and steps[-1][1] == last
    assert steps[1][0] == frames[25] and steps[2][0] == frames[59]
    assert all(a[1] + 1 == b[0] for a, b in zip(steps, steps[1:]))


def test_step_frames_clamp_as_the_model_cuts():
    # a predicted first boundary at slot 0 is moved to 1, as the model's resampling does
    steps = step_frames(np.array([-1, 50]), 0, 95)
    assert steps[0] == (0, 0) and steps[1][0] == 1
