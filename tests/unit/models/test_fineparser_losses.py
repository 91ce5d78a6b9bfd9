"""FineParser's losses: the focal loss by hand-made cases, the whole loss against direct
re-computations (FINEPARSER.md 3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aqa.models.fineparser_losses import focal_loss_with_logits, mask_loss
from aqa.models.sap import frames_to_snippets

from fineparser_data import fineparser, fp_batch


def test_focal_hand_made_cases():
    # logit 0, target 1: BCE = ln 2, p_t = 1/2 -> (1/2)^2 ln 2
    assert focal_loss_with_logits(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(0.25 * math.log(2))
    # logit 2, target 0: BCE = ln(1 + e^2), p_t = sigmoid(-2)
    bce = math.log(1 + math.e ** 2)
    want = (1 - 1 / (1 + math.e ** 2)) ** 2 * bce
    assert focal_loss_with_logits(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(want, rel=1e-6)
    # a confident right answer costs ~nothing, far less than its BCE
    right = focal_loss_with_logits(torch.tensor([6.0]), torch.tensor([1.0])).item()
    assert right < 1e-5 < F.binary_cross_entropy_with_logits(torch.tensor([6.0]), torch.tensor([1.0])).item()
    # the mean over elements; gamma 0 is the plain BCE
    x, y = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    assert focal_loss_with_logits(x, y).item() == pytest.approx((0.25 * math.log(2) + want) / 2, rel=1e-6)
    assert focal_loss_with_logits(x, y, gamma=0.0).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(x, y).item(), rel=1e-6)
    # alpha weights the positives by alpha, the negatives by 1 - alpha
    assert focal_loss_with_logits(x, y, alpha=0.25).item() == pytest.approx(
        (0.25 * 0.25 * math.log(2) + 0.75 * want) / 2, rel=1e-6)


def test_focal_against_the_probability_formula():
    torch.manual_seed(0)
    x, y = torch.randn(4, 1, 3, 5, 5) * 3, (torch.rand(4, 3, 5, 5) > 0.5).float()
    p = torch.sigmoid(x.reshape(-1))
    yy = y.reshape(-1)
    pt = torch.where(yy == 1, p, 1 - p)
    direct = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    torch.testing.assert_close(focal_loss_with_logits(x, y), direct, rtol=1e-5, atol=1e-6)


def test_mask_loss_sums_outputs_and_binarises_at_half():
    torch.manual_seed(1)
    outs = [torch.randn(2, 1, 4, 3, 3) for _ in range(3)]
    soft = torch.rand(2, 4, 3, 3)
    hard = (soft >= 0.5).float()
    want = sum(focal_loss_with_logits(o, hard) for o in outs)
    torch.testing.assert_close(mask_loss(outs, soft), want)
    with pytest.raises(ValueError, match="targets"):
        focal_loss_with_logits(outs[0], hard[:1])


def test_model_loss_equals_a_direct_recomputation():
    model = fineparser(0).train()
    q, e = fp_batch(2, 1), fp_batch(2, 2)
    out = model(q, e)
    total, parts = model.loss(out, q, e)
    yq, ye = q["score"], e["score"]
    mse = ((out["delta"] - (yq - ye)) ** 2).mean()
    mse_rev = ((out["delta_rev"] - (ye - yq)) ** 2).mean()
    seg = torch.cat([out["seg_query"], out["seg_exemplar"]])              # (2B, 96, 2)
    onehot = torch.zeros_like(seg)
    for i, (b1, b2) in enumerate((torch.cat([q["transitions"], e["transitions"]]) + 1).tolist()):
        onehot[i, b1, 0] = onehot[i, b2, 1] = 1
    bce = -(onehot * seg.log() + (1 - onehot) * (1 - seg).log()).mean()
    logits = torch.cat([out["mask0_query"], out["mask0_exemplar"]]).reshape(-1)    # T2: one output
    target = torch.cat([frames_to_snippets(q["masks"], range(0, 90, 10), 16),
                        frames_to_snippets(e["masks"], range(0, 90, 10), 16)]).reshape(-1)
    p = torch.sigmoid(logits)
    pt = torch.where(target == 1, p, 1 - p)
    focal = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    assert parts == pytest.approx({"mse": mse.item(), "mse_rev": mse_rev.item(), "bce_seg": bce.item(),
                                   "focal_mask": focal.item()}, rel=1e-4)
    assert total.item() == pytest.approx((mse + mse_rev + bce + focal).item(), rel=1e-5)
    # overlapping snippet frames count twice: 9 x 16 frames per video, not 96
    assert logits.numel() == 4 * 9 * 16 * 112 * 112


def test_fused_t2_output_is_supervised_too():
    model = fineparser(0, sap={"fuse_t2": True}).train()
    q, e = fp_batch(1, 3), fp_batch(1, 4)
    out = model(q, e)
    assert {k for k in out if k.startswith("mask")} == {"mask0_query", "mask0_exemplar", "mask1_query", "mask1_exemplar"}
    _, parts = model.loss(out, q, e)
    target = torch.cat([frames_to_snippets(x["masks"], range(0, 90, 10), 16) for x in (q, e)])
    want = sum(focal_loss_with_logits(torch.cat([out[f"mask{i}_query"], out[f"mask{i}_exemplar"]]), target)
               for i in (0, 1))
    assert parts["focal_mask"] == pytest.approx(want.item(), rel=1e-5)
