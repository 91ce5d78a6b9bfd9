"""aqa.evaluate.mask_ceilings on generated masks with hand-known answers: a mask aligned with a
tap's grid pools exactly, each loss's per-cell optimum is where the code's own loss is flat, the
upsample is the model's, the frames path is predict_masks'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa.evaluate import mask_ceilings as C
from aqa.models.fineparser_losses import focal_loss_reference
from aqa.models.sap import SAP, TAPS, SAPConfig

STARTS, LENGTH, FRAMES = (0, 10, 20, 30, 40, 50, 60, 70, 80), 16, 96


@pytest.mark.parametrize("tap", [1, 2, 3, 4])
def test_a_mask_aligned_with_the_grid_pools_to_its_cells(tap):
    t, h, w = C.cell_size(tap)
    cells = torch.rand(2, LENGTH // t, 112 // h, 112 // w, generator=torch.Generator().manual_seed(tap)) < 0.3
    mask = cells.repeat_interleave(t, 1).repeat_interleave(h, 2).repeat_interleave(w, 3)   # (2, 16, 112, 112)
    assert torch.equal(C.pool_to_grid(mask, tap), cells.float())
    half = torch.zeros(1, LENGTH, 112, 112, dtype=torch.bool)
    half[:, :t, :h // 2, :w] = True          # the top half of cell (0, 0, 0) only
    pooled = C.pool_to_grid(half, tap)
    assert float(pooled[0, 0, 0, 0]) == 0.5 and float(pooled.sum()) == 0.5


def test_the_upsample_is_the_models_and_its_gain_is_two():
    t1, t2 = SAP(SAPConfig(tier="T1")), SAP(SAPConfig())
    grids = {1: (8, 56, 56), 2: (8, 28, 28), 3: (8, 14, 14), 4: (4, 7, 7)}
    for tap in TAPS:
        up = C.upsampler(tap)
        assert torch.equal(up.weight, t1.side[str(tap)].upsample_.weight)
        assert up(torch.zeros(1, 1, *grids[tap])).shape == (1, 1, LENGTH, 112, 112)
        assert C.interior_gain(up, grids[tap]) == pytest.approx(2.0)
    assert torch.equal(C.upsampler(4).weight, t2.side["4"].upsample_.weight)


def test_bce_and_weighted_bce_optima_are_the_closed_forms():
    p = np.array([0.001, 0.05, 0.3, 0.5, 0.8, 0.999])
    assert np.allclose(C.optimum_logit(p, 0.0, None), np.log(p / (1 - p)), atol=1e-6)
    a = 0.25      # alpha-weighted BCE: the weighted share a p / (a p + (1 - a)(1 - p)) is the optimum
    q = a * p / (a * p + (1 - a) * (1 - p))
    assert np.allclose(C.optimum_logit(p, 0.0, a), np.log(q / (1 - q)), atol=1e-6)
    assert np.array_equal(C.optimum_logit([0.0, 1.0], 2.0, None, saturate=7.0), [-7.0, 7.0])


@pytest.mark.parametrize("alpha", [None, 0.25, 0.75])
def test_the_focal_optimum_is_where_the_codes_focal_loss_is_flat(alpha):
    n = 1024
    for k in (10, 51, 300, 512, 900):
        x = torch.tensor(float(C.optimum_logit(k / n, 2.0, alpha)), dtype=torch.float64, requires_grad=True)
        target = torch.arange(n) < k
        loss = focal_loss_reference(x.expand(n), target, gamma=2.0, alpha=alpha)
        (grad,) = torch.autograd.grad(loss, x)
        assert abs(float(grad)) < 1e-6
        for dx in (-0.05, 0.05):
            assert float(focal_loss_reference((x.detach() + dx).expand(n), target, gamma=2.0, alpha=alpha)) > float(loss.detach())
    x = C.optimum_logit(np.array([0.1, 0.5, 0.9]), 2.0, None)   # softer than BCE, symmetric, 0 at one half
    assert x[1] == pytest.approx(0.0, abs=1e-6) and x[0] == pytest.approx(-x[2], abs=1e-6)
    assert np.log(0.1 / 0.9) < x[0] < 0


def test_coarse_logits_reach_the_frames_as_predict_masks():
    up = C.upsampler(1)
    coarse = torch.full((len(STARTS), 8, 56, 56), 0.75)
    probs = C.coarse_to_frames(coarse, up, STARTS, FRAMES)
    assert probs.shape == (FRAMES, 112, 112)
    # frame 42 lies inside snippets 3 and 4, neither one's first or last frame: gain 2 in each
    assert torch.allclose(probs[42, 30:80, 30:80], torch.sigmoid(torch.tensor(1.5)))
