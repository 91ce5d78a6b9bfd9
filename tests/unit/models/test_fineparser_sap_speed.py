"""SAP's speed-ups compute the same numbers: the separable max-pools (aqa.models.sap_pool) equal
torch's pool bit for bit and leave gradients to torch's; SAP without its mask head gives the same m."""

from __future__ import annotations

import pytest
import torch

from aqa.models.i3d import MaxPool3dSame
from aqa.models.sap import SAP, SAPConfig
from aqa.models.sap_pool import SeparableMaxPool3dSame

from fineparser_data import fineparser, fp_batch


@pytest.mark.parametrize("shape, kernel, stride", [
    ((2, 3, 2, 4, 4), (3, 3, 3), (1, 1, 1)), ((2, 3, 4, 7, 7), (2, 2, 2), (2, 2, 2)),
    ((1, 2, 5, 9, 6), (1, 3, 3), (1, 2, 2)), ((1, 2, 5, 9, 6), (2, 3, 3), (2, 2, 2)),
    ((1, 2, 7, 8, 5), (3, 3, 3), (2, 2, 2))])
def test_separable_pool_equals_torch_pool(shape, kernel, stride):
    torch.manual_seed(0)
    x = torch.randn(shape)
    x[x < 0] = 0                                   # ReLU maps: many ties
    want = MaxPool3dSame(kernel, stride)(x)
    got = SeparableMaxPool3dSame(kernel, stride)(x)
    assert got.shape == want.shape and torch.equal(got, want)


def test_pool_with_a_gradient_is_torch_s():
    torch.manual_seed(1)
    x1 = torch.randn(1, 2, 3, 5, 5).clamp_min(0).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    MaxPool3dSame((3, 3, 3), (1, 1, 1))(x1).sum().backward()
    SeparableMaxPool3dSame((3, 3, 3), (1, 1, 1))(x2).sum().backward()
    assert torch.equal(x1.grad, x2.grad)


def test_sap_uses_separable_pools_and_m_does_not_depend_on_the_mask_head():
    sap = SAP(SAPConfig(fuse_t2=True)).eval()
    assert sum(isinstance(m, SeparableMaxPool3dSame) for m in sap.modules()) == 3
    x = torch.randn(2, 832, 4, 7, 7).clamp_min(0)
    with torch.no_grad():
        m, outs = sap(x)
        m2, none = sap(x, masks=False)
    assert len(outs) == 2 and none == [] and torch.equal(m, m2)


def test_model_encodes_without_masks_in_eval_and_trains_with_them():
    model = fineparser(0)
    q, e = fp_batch(2, 1), fp_batch(2, 2)
    model.train()
    assert {k for k in model(q, e) if k.startswith("mask")} == {"mask0_query", "mask0_exemplar"}
    model.eval()
    with torch.no_grad():
        out = model(q, e)
        assert not any(k.startswith("mask") for k in out)
        u_eval = model.encode(q, "pred")["u"]
        m, _ = model.sap_pass(q, masks=True)
        f, _ = model.backbone(q)
    assert torch.equal(u_eval, f * torch.sigmoid(m))
