"""The FineParser model: shapes, gradients end to end, encode/compare = forward, the D2 switches
and the ablations as settings of the one model."""

from __future__ import annotations

import pytest
import torch

from aqa.errors import AqaError
from aqa.models.fineparser_ablations import ABLATIONS, OURS, ablation_config
from aqa.models.registry import build_model, make_config

from fineparser_data import fineparser, fp_batch


def test_shapes_of_encode_and_compare():
    model = fineparser(0).eval()
    q, e = fp_batch(2, 1), fp_batch(2, 2)
    with torch.no_grad():
        enc = model.encode_modes(q, ("pred", "gt"))
        for mode in ("pred", "gt"):
            assert enc[mode]["u"].shape == (2, 9, 1024) and enc[mode]["sve_tokens"].shape == (2, 3, 4, 64)
            assert enc[mode]["seg"].shape == (2, 96, 2) and enc[mode]["bounds"].shape == (2, 2)
        assert torch.equal(enc["gt"]["bounds"], q["transitions"] + 1)
        assert torch.equal(enc["pred"]["bounds"], enc["pred"]["pred_transitions"] + 1)
        assert not any(k.startswith("mask") for k in enc["pred"])     # masks only in training
        out = model.compare(enc["pred"], model.encode(e, "pred"))
        assert out["delta"].shape == (2,) and out["delta_rev"].shape == (2,)
        assert "delta_rev" not in model.compare(enc["pred"], model.encode(e, "pred"), reverse=False)
        assert model.predict_masks(q).shape == (2, 96, 112, 112)
        i3d = model._i3d_tokens(enc["pred"]["u"], enc["pred"]["bounds"], enc["pred"]["bounds"])
        assert i3d.shape == (2, 3, 12, 64) and (i3d >= 0).all()          # C_channel ends in ReLU


def test_encode_compare_equals_forward_in_eval():
    """Voting encodes each dive once: the same numbers as the pair forward (SAP's pack and
    PSNet's halves do not matter with running statistics)."""
    model = fineparser(1).eval()
    q, e = fp_batch(2, 3), fp_batch(2, 4)
    with torch.no_grad():
        out = model(q, e, transitions="pred")
        split = model.compare(model.encode(q, "pred"), model.encode(e, "pred"))
    for k in ("delta", "delta_rev", "pred_transitions"):
        torch.testing.assert_close(out[k], split[k], rtol=1e-4, atol=1e-4)


def test_gradients_reach_every_trained_part():
    model = fineparser(2).train()
    q, e = fp_batch(1, 5), fp_batch(1, 6)
    out = model(q, e)
    total, parts = model.loss(out, q, e)
    assert set(parts) == {"mse", "mse_rev", "bce_seg", "focal_mask"}
    total.backward()
    named = dict(model.named_parameters())
    for name in ("sap.mixed_5b.branch_0.conv3d.weight", "sap.mixed_5c.branch_3.1.conv3d.weight",
                 "sap.side.4.side_prep.weight", "sap.side.4.score_dsn.weight", "sap.side.4.upsample_.weight",
                 "psnet.encoder.0.0.weight", "psnet.head.0.weight",
                 "sve_proj.0.net.0.0.weight", "sve_proj.2.net.3.1.3.weight",
                 "c_channel.0.convs.0.0.weight", "c_channel.2.mlp.4.weight",
                 "finereg.decoders.sve.0.blocks.0.attn.q.weight", "finereg.decoders.sve.1.blocks.2.mlp.0.weight",
                 "finereg.decoders.i3d.0.blocks.0.attn.q.weight", "finereg.decoders.i3d.1.blocks.0.attn.q.weight",
                 "finereg.regressors.i3d.net.0.weight", "finereg.regressors.sve.net.4.weight"):
        g = named[name].grad
        assert g is not None and g.abs().sum() > 0, name


def test_psnet_learns_from_the_bce_only_and_the_gate_from_both():
    model = fineparser(3).train()
    q, e = fp_batch(1, 7), fp_batch(1, 8)
    out = model(q, e)
    (out["delta"].sum() + out["delta_rev"].sum()).backward()            # the score path alone
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.psnet.parameters())
    assert model.sap.mixed_5c.branch_0.conv3d.weight.grad.abs().sum() > 0   # u = f * sigmoid(m) feeds the I3D stream


def test_train_cuts():
    q, e = fp_batch(1, 9), fp_batch(1, 10)
    gt = fineparser(4).train()
    torch.manual_seed(0)
    a = gt(q, e, transitions="pred")
    torch.manual_seed(0)
    b = gt(q, e, transitions="gt")
    torch.testing.assert_close(a["delta"], b["delta"])                  # training always cuts at gt
    pred = fineparser(4, train_cuts="pred").train()
    torch.manual_seed(0)
    c = pred(q, e, transitions="pred")                                  # the host's schedule decides
    assert not torch.allclose(c["delta"], b["delta"])


def test_decoder_sharing_and_step_weights():
    ref, per = fineparser(5), fineparser(5, decoder_sharing="per_step")
    assert [len(ref.finereg.decoders[s]) for s in ("i3d", "sve")] == [2, 2]
    assert [len(per.finereg.decoders[s]) for s in ("i3d", "sve")] == [3, 3]
    assert ref.finereg.decoder_for("sve", 0) is ref.finereg.decoder_for("sve", 1) is not ref.finereg.decoder_for("sve", 2)
    assert len({id(per.finereg.decoder_for("i3d", k)) for k in range(3)}) == 3
    d = {"i3d": torch.tensor([[1.0, 2.0, 3.0]]), "sve": torch.tensor([[4.0, 0.0, -1.0]])}
    code = (3 * 1 + 5 * 2 + 2 * 3) / 10, (3 * 4 + 0 - 2) / 10
    assert ref.finereg.combine(d).item() == pytest.approx(sum(code) / 2)                  # the code
    paper = fineparser(5, lambda_norm=False, stream_mean=False).finereg.combine(d).item()
    assert paper == pytest.approx(10 * sum(code))                                          # eq. 6
    assert ref.finereg.regressors.keys() == {"i3d", "sve"}              # no unused third regressor


def test_i3d_cut_switch():
    model = fineparser(6).eval()
    own = fineparser(6, i3d_cut="own").eval()
    own.load_state_dict(model.state_dict())
    q, e = fp_batch(1, 11), fp_batch(1, 12)
    q["transitions"] = torch.tensor([[20, 50]])
    e["transitions"] = torch.tensor([[39, 79]])
    with torch.no_grad():
        a, b = model(q, e, "gt"), own(q, e, "gt")
    assert not torch.allclose(a["delta"], b["delta"])


def test_sap_must_be_initialised():
    model = build_model("fineparser").train()
    with pytest.raises(AqaError, match="Kinetics"):
        model(fp_batch(1, 0), fp_batch(1, 1))


def test_sap_tier_from_frames_runs_on_small_frames():
    model = fineparser(7, sap={"tier": "T1"}).train()
    q, e = fp_batch(1, 13, frames=True, hw=32), fp_batch(1, 14, frames=True, hw=32)
    out = model(q, e)
    assert out["mask4_query"].shape == (1, 9, 1, 16, 32, 32)            # 4 side outputs + fused
    total, parts = model.loss(out, q, e)
    total.backward()
    assert model.sap.conv3d_1a_7x7.conv3d.weight.grad.abs().sum() > 0


# the rows whose settings change the model ({} rows are the default; table5 rows differ only in
# which cached features the wiring feeds)
@pytest.mark.parametrize("name", sorted(n for n, c in ABLATIONS.items() if c and not n.startswith("table5")))
def test_ablations_are_settings_of_one_model(name):
    cfg = ablation_config(name)
    model = fineparser(8, **cfg).train()
    assert type(model).__name__ == "FineParserModel"
    q, e = fp_batch(1, 15), fp_batch(1, 16)
    out = model(q, e)
    total, parts = model.loss(out, q, e)
    total.backward()
    assert ("focal_mask" in parts) == model.cfg.use_sap
    assert ("bce_seg" in parts) == model.cfg.use_tap
    if "sve" in model.cfg.streams:
        assert model.encode(q, "gt")["sve_tokens"].shape[2] == model.cfg.sve_tokens
    if not model.cfg.use_tap:                                            # uniform thirds in both modes
        assert model.encode(q, "gt")["bounds"].tolist() == [[32, 64]]


def test_ablation_table_and_config_round_trip():
    assert set(OURS) == {"table3_A", "table3_B", "table3_C", "table3_D"}
    assert ablation_config("table4_8") == {"sve_tokens": 8}
    with pytest.raises(ValueError, match="unknown FineParser ablation"):
        ablation_config("table3_F")
    import dataclasses

    cfg = make_config("fineparser", **ablation_config("table3_A"), sap={"fuse_t2": True})
    again = make_config("fineparser", **dataclasses.asdict(cfg))        # a checkpoint rebuilds it
    assert again == cfg and again.sap.fuse_t2
    with pytest.raises(ValueError, match="streams"):
        build_model("fineparser", streams=())
    with pytest.raises(ValueError, match="i3d_cut"):
        build_model("fineparser", i3d_cut="mean")
