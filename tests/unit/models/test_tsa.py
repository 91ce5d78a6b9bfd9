"""TSA and the Table 3 ablations: shapes, losses, transitions, learning on a tiny batch."""

from __future__ import annotations

import pytest
import torch

from aqa.models.registry import build_model

METHODS = ["fr", "fr_asym", "fr_dn", "fsr", "tsa"]
NUM_ACTIONS = 4


# a scaled-down TSA (PSNet over 128 "feature" dims -> 8-dim slots) keeps the learning tests fast
SMALL = {"psnet": {"feature_dim": 128}, "decoder": {"dim": 8, "heads": 2}}


def make_batch(batch: int, seed: int, hw: int = 2, dim: int = 1024) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t1 = torch.randint(5, 40, (batch,), generator=g)
    t2 = torch.randint(55, 90, (batch,), generator=g)
    return {
        "pooled": torch.randn(batch, 9, dim, generator=g),
        "maps": torch.randn(batch, 9, dim, hw, hw, generator=g),
        "score": torch.rand(batch, generator=g) * 40 + 40,
        "transitions": torch.stack([t1, t2], 1),
        "action": torch.randint(0, NUM_ACTIONS, (batch,), generator=g),
    }


def build(method: str, small: bool = False):
    torch.manual_seed(0)
    cfg = {"num_actions": NUM_ACTIONS} if method == "fr_dn" else {}
    if small:
        cfg.update({"fr": {"feature_dim": 128}, "fsr": {"psnet": SMALL["psnet"]}, "tsa": SMALL}.get(
            method.split("_")[0], {}))
    return build_model(method, **cfg)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes(method, batch):
    model = build(method)
    q, e = make_batch(batch, 0), make_batch(batch, 1)
    out = model(q, e)
    assert out["delta"].shape == (batch,)
    if method != "fr_asym":
        assert out["delta_rev"].shape == (batch,)
    if method in ("fsr", "tsa"):
        assert out["seg_query"].shape == out["seg_exemplar"].shape == (batch, 96, 2)
        assert out["pred_transitions"].shape == (batch, 2)
        assert out["pred_transitions"].dtype == torch.long
    total, parts = model.loss(out, q, e)
    assert total.dim() == 0 and torch.isfinite(total)
    assert sum(parts.values()) == pytest.approx(total.item(), rel=1e-5)


def test_loss_parts_by_method():
    q, e = make_batch(2, 0), make_batch(2, 1)
    keys = {}
    for m in METHODS:
        model = build(m)
        keys[m] = set(model.loss(model(q, e), q, e)[1])
    assert keys["fr"] == keys["fr_dn"] == {"mse", "mse_rev"}
    assert keys["fr_asym"] == {"mse"}
    assert keys["fsr"] == keys["tsa"] == {"mse", "mse_rev", "bce_seg"}


def test_symmetric_loss_by_hand():
    model = build("fr")
    q, e = make_batch(3, 0), make_batch(3, 1)
    out = model(q, e)
    _, parts = model.loss(out, q, e)
    d = q["score"] - e["score"]
    assert parts["mse"] == pytest.approx(((out["delta"] - d) ** 2).mean().item(), rel=1e-5)
    assert parts["mse_rev"] == pytest.approx(((out["delta_rev"] + d) ** 2).mean().item(), rel=1e-5)


def test_delta_rev_is_the_swapped_pair():
    q, e = make_batch(3, 0, dim=128), make_batch(3, 1, dim=128)
    for method in ("fr", "fsr", "tsa"):
        model = build(method, small=True).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(q, e)["delta_rev"], model(e, q)["delta"])


def test_action_embedding_is_used():
    model = build("fr_dn").eval()
    q, e = make_batch(2, 0), make_batch(2, 1)
    base = model(q, e)["delta"]
    q2 = dict(q, action=(q["action"] + 1) % NUM_ACTIONS)
    assert not torch.allclose(base, model(q2, e)["delta"])
    assert torch.allclose(build("fr").eval()(q, e)["delta"], build("fr").eval()(q2, e)["delta"])
    with pytest.raises(ValueError, match="action index"):
        model(dict(q, action=torch.tensor([0, NUM_ACTIONS])), e)


@pytest.mark.parametrize("method", ["fsr", "tsa"])
def test_gt_transitions_change_the_steps(method):
    model = build(method, small=True).eval()
    q, e = make_batch(2, 0, dim=128), make_batch(2, 1, dim=128)
    out_gt, out_pred = model(q, e, transitions="gt"), model(q, e, transitions="pred")
    # segmentation itself does not depend on the mode; the cut does
    torch.testing.assert_close(out_gt["seg_query"], out_pred["seg_query"])
    assert not torch.allclose(out_gt["delta"], out_pred["delta"])
    with pytest.raises(ValueError):
        model(q, e, transitions="oracle")


@pytest.mark.parametrize("method", ["fsr", "tsa"])
def test_edge_transitions_stay_finite(method):
    model = build(method, small=True)
    q, e = make_batch(2, 0, dim=128), make_batch(2, 1, dim=128)
    q["transitions"] = torch.tensor([[0, 95], [-1, 94]])
    e["transitions"] = torch.tensor([[40, 40], [0, 0]])
    out = model(q, e, transitions="gt")
    total, _ = model.loss(out, q, e)
    total.backward()
    assert torch.isfinite(out["delta"]).all() and torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_pred_transitions_on_batch_scale():
    model = build("tsa").eval()
    q, e = make_batch(2, 0), make_batch(2, 1)
    out = model(q, e)
    t = out["pred_transitions"]
    assert ((t[:, 0] >= -1) & (t[:, 0] < 47) & (t[:, 1] >= 47) & (t[:, 1] < 95)).all()


def test_tsa_map_layouts_differ_and_batch_is_vectorised():
    q, e = make_batch(3, 0, dim=128), make_batch(3, 1, dim=128)
    torch.manual_seed(0)
    ref = build_model("tsa", **SMALL).eval()
    torch.manual_seed(0)
    spatial = build_model("tsa", map_layout="spatial", **SMALL).eval()
    with torch.no_grad():
        a, b = ref(q, e)["delta"], spatial(q, e)["delta"]
        assert not torch.allclose(a, b)
        one = ref({k: v[1:2] for k, v in q.items()}, {k: v[1:2] for k, v in e.items()})["delta"]
    torch.testing.assert_close(one, a[1:2], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("transitions", ["pred", "gt"])
def test_forward_is_encode_then_compare(method, transitions):
    """In eval mode a dive's encoding does not depend on its batch: encoding query and exemplar
    apart and comparing gives forward's outputs; reverse=False only drops delta_rev."""
    model = build(method, small=True).eval()
    q, e = make_batch(3, 0, dim=128), make_batch(3, 1, dim=128)
    with torch.no_grad():
        ref = model(q, e, transitions)
        enc_q, enc_e = model.encode(q, transitions), model.encode(e, transitions)
        out = model.compare(enc_q, enc_e)
        one_way = model.compare(enc_q, enc_e, reverse=False)
    assert all(v.shape[0] == 3 for v in enc_q.values())
    assert set(out) == set(ref)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-5, atol=1e-5)
    assert "delta_rev" not in one_way
    torch.testing.assert_close(one_way["delta"], ref["delta"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["fsr", "tsa"])
def test_encode_modes_equal_separate_encodes(method):
    model = build(method, small=True).eval()
    q = make_batch(3, 0, dim=128)
    with torch.no_grad():
        both = model.encode_modes(q, ("pred", "gt"))
        for mode in ("pred", "gt"):
            one = model.encode(q, mode)
            assert set(one) == set(both[mode])
            for k in one:
                torch.testing.assert_close(both[mode][k], one[k], rtol=0, atol=0)
    assert not torch.equal(both["pred"]["steps" if method == "fsr" else "tokens"],
                           both["gt"]["steps" if method == "fsr" else "tokens"])


def test_training_forward_normalises_query_and_exemplar_together():
    """Training-mode BatchNorm sees query and exemplar as one batch of 2B, as the reference."""
    model = build("tsa", small=True).train()
    q, e = make_batch(3, 0, dim=128), make_batch(3, 1, dim=128)
    with torch.no_grad():
        joint = model.psnet(torch.cat([q["pooled"], e["pooled"]]))[1]
        out = model(q, e)
        alone = model.encode(q)["seg"]
    torch.testing.assert_close(out["seg_query"], joint[:3])
    torch.testing.assert_close(out["seg_exemplar"], joint[3:])
    assert not torch.allclose(alone, joint[:3])


@pytest.mark.parametrize("method", METHODS)
def test_loss_decreases_on_a_tiny_batch(method):
    model = build(method, small=True)
    q, e = make_batch(4, 0, dim=128), make_batch(4, 1, dim=128)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses, parts = [], []
    for _ in range(10):
        opt.zero_grad()
        total, p = model.loss(model(q, e, transitions="gt"), q, e)
        total.backward()
        opt.step()
        losses.append(total.item())
        parts.append(p)
    assert losses[-1] < 0.5 * losses[0], losses
    if "bce_seg" in parts[0]:
        assert parts[-1]["bce_seg"] < parts[0]["bce_seg"]


def _reference_delta(model, q, e, bounds):
    """TSA written the reference's way: per-sample F.interpolate cuts, raw reshapes of the maps,
    one decoder call per step and direction."""
    import torch.nn.functional as F

    def cut(x, b1, b2, size):  # x (1, C, T, ...) -> (1, C, 3*fix, ...)
        mode = "linear" if x.dim() == 3 else "trilinear"
        return torch.cat([F.interpolate(x[:, :, a:b], size=size, mode=mode, align_corners=True)
                          for a, b in ((0, b1), (b1, b2), (b2, x.shape[2]))], 2)

    fix, n = model.cfg.fix_size, q["pooled"].shape[0]
    feats, _ = model.psnet(torch.cat([q["pooled"], e["pooled"]]))
    maps = torch.cat([q["maps"], e["maps"]])
    _, t, c, h, w = maps.shape
    fmaps = model.psnet.encode(maps.reshape(-1, t, c))
    fmaps = fmaps.reshape(2 * n, fmaps.shape[1], fmaps.shape[2], h, w).transpose(1, 2)  # (2N, C, T, H, W)
    feats = feats.transpose(1, 2)  # (2N, C, T)
    toks, mems = [], []
    for i in range(2 * n):
        b1, b2 = bounds[i].tolist()
        toks.append(cut(feats[i:i + 1], b1, b2, fix).transpose(1, 2))  # (1, 15, C)
        m = cut(fmaps[i:i + 1], b1, b2, [fix, h, w])  # (1, C, 15, H, W)
        mems.append(m.flatten(3).permute(0, 2, 3, 1).reshape(1, -1, m.shape[1]))  # (1, 15*H*W, C)
    toks, mems = torch.cat(toks), torch.cat(mems)
    hw, out = h * w, []
    for src, dst in ((slice(0, n), slice(n, 2 * n)), (slice(n, 2 * n), slice(0, n))):
        dec = [model.decoder(toks[src, s * fix:(s + 1) * fix], mems[dst, s * fix * hw:(s + 1) * fix * hw])
               for s in range(3)]
        out.append(model.regressor(torch.cat(dec, 1)))
    return out


def test_tsa_matches_a_per_sample_reference_loop():
    model = build("tsa", small=True).eval()
    q, e = make_batch(3, 0, dim=128), make_batch(3, 1, dim=128)
    with torch.no_grad():
        out = model(q, e, transitions="gt")
        bounds = torch.cat([q["transitions"], e["transitions"]]) + 1
        delta, delta_rev = _reference_delta(model, q, e, bounds)
    torch.testing.assert_close(out["delta"], delta)
    torch.testing.assert_close(out["delta_rev"], delta_rev)
