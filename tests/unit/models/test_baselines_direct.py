"""The direct-prediction interface (I3D+MLP, USDL, MUSDL): shapes on the cache's layouts, the
batch keys they need, learning on a tiny batch; I3D+MLP's loss and DD reading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aqa.models.registry import build_model
from baseline_data import LAYOUTS, layout_batch, make_data, host_batch

DIRECT = ["i3d_mlp", "usdl", "musdl"]
DD_VARIANTS = [("i3d_mlp", {}), ("i3d_mlp", {"use_dd": True}), ("usdl", {}), ("usdl", {"use_dd": True}),
               ("musdl", {})]


def build(method: str, **cfg):
    torch.manual_seed(0)
    return build_model(method, **cfg)


@pytest.mark.parametrize("method,cfg", DD_VARIANTS)
@pytest.mark.parametrize("views,with_maps", LAYOUTS)
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes_on_both_cache_layouts(method, cfg, views, with_maps, batch):
    model = build(method, **cfg)
    assert model.pairwise is False and not hasattr(model, "compare")
    b = layout_batch(views, with_maps, batch)
    out = model(b)
    scores = model.predict(out)
    assert scores.shape == (batch,) and scores.dtype == torch.float32 and not scores.requires_grad
    assert torch.isfinite(scores).all()
    if method == "usdl":
        assert out["log_probs"].shape == (batch, 101)
        assert torch.allclose(out["log_probs"].exp().sum(-1), torch.ones(batch), atol=1e-5)
    if method == "musdl":
        assert out["judge_log_probs"].shape == (batch, 7, 21)
        assert out["judge_scores"].shape == (batch, 7)
    total, parts = model.loss(out, b)
    assert total.dim() == 0 and torch.isfinite(total) and total.requires_grad
    assert sum(parts.values()) == pytest.approx(total.item(), rel=1e-5)


@pytest.mark.parametrize("method,cfg", DD_VARIANTS)
def test_prediction_is_a_function_of_the_dive_alone(method, cfg):
    """A dive's prediction does not depend on the rest of the batch (no BatchNorm, no exemplar)."""
    model = build(method, **cfg).eval()
    data = make_data(12)
    whole = model.predict(model(host_batch(data, range(6), with_maps=False)))
    alone = torch.cat([model.predict(model(host_batch(data, [i], with_maps=False))) for i in range(6)])
    assert torch.allclose(whole, alone, atol=1e-4)


@pytest.mark.parametrize("method,cfg,key", [("i3d_mlp", {"use_dd": True}, "difficulty"),
                                            ("usdl", {"use_dd": True}, "difficulty"),
                                            ("musdl", {}, "num_judges"), ("musdl", {}, "difficulty")])
def test_a_missing_batch_key_is_named(method, cfg, key):
    model = build(method, **cfg)
    b = layout_batch(1, False, 2)
    del b[key]
    with pytest.raises(KeyError, match=f"{method} needs batch\\['{key}'\\]"):
        model(b)


def test_musdl_loss_needs_the_judges():
    model = build("musdl")
    b = layout_batch(1, False, 2)
    out = model(b)
    del b["judges"]
    with pytest.raises(KeyError, match="musdl needs batch\\['judges'\\]"):
        model.loss(out, b)


def test_raw_variants_need_no_difficulty():
    b = layout_batch(1, False, 2)
    del b["difficulty"], b["judges"], b["num_judges"]
    for method in ("i3d_mlp", "usdl"):
        model = build(method)
        model.loss(model(b), b)


def test_i3d_mlp_regresses_the_score_with_mse():
    model = build("i3d_mlp")
    assert [m.out_features for m in model.mlp.net if isinstance(m, torch.nn.Linear)] == [256, 128, 1]
    b = layout_batch(1, False, 3)
    out = model(b)
    feat = b["pooled"].float().mean(1)
    assert torch.allclose(out["score"], model.mlp(feat).squeeze(-1))
    total, _ = model.loss(out, b)
    assert total.item() == pytest.approx(F.mse_loss(out["score"], b["score"]).item(), rel=1e-6)


def test_i3d_mlp_with_dd_learns_y_over_dd_and_multiplies():
    model = build("i3d_mlp", use_dd=True)
    b = layout_batch(1, False, 3)
    out = model(b)
    assert torch.allclose(out["score"], out["value"] * b["difficulty"])
    total, _ = model.loss(out, b)
    expected = F.mse_loss(out["value"], b["score"] / b["difficulty"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("method,cfg", DD_VARIANTS)
def test_loss_decreases_on_a_tiny_fit(method, cfg):
    model = build(method, **cfg)
    b = host_batch(make_data(12, seed=3), range(8), with_maps=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        total, _ = model.loss(model(b), b)
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0], losses
