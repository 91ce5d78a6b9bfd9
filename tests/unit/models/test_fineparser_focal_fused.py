"""The fused focal loss (aqa.models.fineparser_losses.FocalWithLogits): value and gradient against
the direct formula under autograd, torch's gradcheck in float64, hand-made gradients, the chunking."""

from __future__ import annotations

import math

import pytest
import torch

from aqa.models import fineparser_losses as L


def _fused(x, y, gamma=2.0, alpha=None):
    return L.FocalWithLogits.apply(x, y, gamma, alpha)


@pytest.mark.parametrize("gamma, alpha", [(2.0, None), (0.0, None), (1.5, 0.25), (3.0, 0.8)])
def test_gradcheck_float64(gamma, alpha):
    torch.manual_seed(0)
    x = (torch.randn(37, dtype=torch.float64) * 4).requires_grad_()
    y = torch.rand(37) > 0.5
    assert torch.autograd.gradcheck(lambda t: _fused(t, y, gamma, alpha), (x,), eps=1e-6, atol=1e-8)


def test_hand_made_gradients():
    # logit 0, target 1: l = ln 2, p_t = 1/2; d/dx = [(1-p_t)^2 + 2 (1-p_t) p_t l] (sigmoid(0) - 1)
    x = torch.tensor([0.0], requires_grad=True)
    L.focal_loss_with_logits(x, torch.tensor([True])).backward()
    assert x.grad.item() == pytest.approx(-(0.25 + 0.5 * math.log(2)) * 0.5, rel=1e-6)
    # logit 2, target 0, mean of two elements (the other a certain zero): half the per-pixel gradient
    x = torch.tensor([2.0, -30.0], requires_grad=True)
    L.focal_loss_with_logits(x, torch.tensor([False, False])).backward()
    s = 1 / (1 + math.exp(-2.0))
    bce, pt = math.log(1 + math.exp(2.0)), 1 - s
    assert x.grad[0].item() == pytest.approx(((1 - pt) ** 2 + 2 * (1 - pt) * pt * bce) * s / 2, rel=1e-6)
    assert abs(x.grad[1].item()) < 1e-12


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_matches_the_direct_formula_over_several_chunks(monkeypatch, alpha):
    monkeypatch.setattr(L, "CHUNK", 1000)          # 7 full chunks and a partial one
    torch.manual_seed(1)
    logits = (torch.randn(3, 1, 2, 17, 41) * 3)
    target = torch.rand(3, 2, 17, 41) > 0.8
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    fused = L.focal_loss_with_logits(x1, target, alpha=alpha)
    direct = L.focal_loss_reference(x2, target.float(), alpha=alpha)
    (fused * 3.0).backward()
    (direct * 3.0).backward()                         # an upstream gradient other than 1 is applied
    torch.testing.assert_close(fused, direct, rtol=1e-6, atol=0)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-12)
    assert x1.grad.shape == logits.shape and x1.grad.abs().sum() > 0


def test_bool_and_float_targets_agree_and_no_grad_keeps_nothing():
    torch.manual_seed(2)
    outs = [torch.randn(2, 1, 4, 5, 5) for _ in range(2)]
    soft = torch.rand(2, 4, 5, 5)
    assert torch.equal(L.mask_loss(outs, soft), L.mask_loss(outs, soft >= 0.5))
    assert not L.mask_loss(outs, soft).requires_grad
    with pytest.raises(ValueError, match="targets"):
        L.focal_loss_with_logits(outs[0], soft[:1] >= 0.5)
