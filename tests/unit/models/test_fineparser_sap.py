"""SAP: shapes per tier, the code's initialisation, Kinetics loading, the snippet layout."""

from __future__ import annotations

import pytest
import torch

from aqa.models.sap import (
    SAP, SAPConfig, SAPError, bilinear_kernel, frames_to_snippets, snippets_to_frames,
)

from fineparser_data import kinetics_like

STARTS = tuple(range(0, 90, 10))


def test_t2_shapes_and_outputs():
    sap = SAP(SAPConfig()).eval()
    m, outs = sap(torch.randn(3, 832, 4, 7, 7))
    assert m.shape == (3, 1024) and len(outs) == 1 and outs[0].shape == (3, 1, 16, 112, 112)
    fused = SAP(SAPConfig(fuse_t2=True)).eval()
    _, outs = fused(torch.randn(2, 832, 4, 7, 7))
    assert [tuple(o.shape) for o in outs] == [(2, 1, 16, 112, 112)] * 2 and fused.num_outputs == 2
    with pytest.raises(SAPError, match="expected"):
        sap(torch.randn(1, 3, 16, 112, 112))


@pytest.mark.parametrize("tier", ["T0", "T1"])
def test_whole_sap_from_frames(tier):
    sap = SAP(SAPConfig(tier=tier)).eval()
    with torch.no_grad():
        m, outs = sap(torch.randn(1, 3, 16, 32, 32))          # sizes divisible by 32 keep every tap aligned
    assert m.shape == (1, 1024)
    assert [tuple(o.shape) for o in outs] == [(1, 1, 16, 32, 32)] * 5   # 4 side outputs + fused


def test_unknown_tier_is_one_line_error():
    with pytest.raises(SAPError, match="sap.tier"):
        SAP(SAPConfig(tier="T3"))


def test_codes_initialisation():
    torch.manual_seed(0)
    sap = SAP(SAPConfig(fuse_t2=True))
    # bilinear kernel of size 4: factor 2, centre 1.5 -> (0.25, 0.75, 0.75, 0.25) outer product
    r = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(4), r[:, None] * r[None, :])
    up = sap.side["4"].upsample.weight                         # (16, 16, 8, 32, 32)
    k = bilinear_kernel(32)
    for i in range(16):
        torch.testing.assert_close(up[i, i], k.expand(8, 32, 32))
    off = up.clone()
    off[torch.arange(16), torch.arange(16)] = 0
    assert off.abs().sum() == 0                                # off-diagonal channels stay 0
    prep = sap.side["4"].side_prep.weight
    assert 0.0005 < prep.std().item() < 0.002 and sap.side["4"].score_dsn.bias.abs().sum() == 0
    # a constant map goes through the 1->1 transposed conv as a constant inside (2 frames summed)
    up1 = sap.side["4"].upsample_
    y = up1(torch.ones(1, 1, 4, 7, 7))
    torch.testing.assert_close(y[0, 0, 4:12, 16:96, 16:96], torch.full((8, 80, 80), 2.0))


def test_kinetics_init_required_and_loaded():
    sap = SAP(SAPConfig())
    with pytest.raises(SAPError, match="never initialised"):
        sap.check_initialised()
    sd = kinetics_like(1)
    sap.init_from_kinetics(sd)
    sap.check_initialised()
    torch.testing.assert_close(sap.mixed_5c.branch_1[1].conv3d.weight, sd["mixed_5c.branch_1.1.conv3d.weight"])
    assert sap.mixed_5b.branch_0.batch3d.weight.requires_grad          # SAP's BatchNorm scale trains
    with pytest.raises(SAPError, match="lacks"):
        SAP(SAPConfig()).init_from_kinetics({k: v for k, v in sd.items() if not k.startswith("mixed_5b")})


def test_snippet_layout_round_trip():
    torch.manual_seed(2)
    frames = torch.randn(2, 96, 3, 3)
    snips = frames_to_snippets(frames, STARTS, 16)                     # (2, 9, 16, 3, 3)
    assert snips.shape == (2, 9, 16, 3, 3)
    torch.testing.assert_close(snips[:, 3, 0], frames[:, 30])
    torch.testing.assert_close(snippets_to_frames(snips, STARTS, 96), frames)
    # overlapping frames (in two snippets) are averaged
    snips[:, 0] = 0
    got = snippets_to_frames(snips, STARTS, 96)
    torch.testing.assert_close(got[:, 10:16], frames[:, 10:16] / 2)
    torch.testing.assert_close(got[:, :10], torch.zeros(2, 10, 3, 3))


def test_t2_gate_input_starts_as_taps_own_feature():
    """SAP's top starts from the Kinetics weights of TAP's I3D: on the same Mixed_4f, before
    training, m equals I3D's pooled feature f (so the gate is sigmoid(f) until SAP learns)."""
    from aqa.models.i3d import InceptionI3d

    sd = kinetics_like(6)
    i3d = InceptionI3d().eval()
    i3d.load_state_dict(sd)
    sap = SAP(SAPConfig()).eval()
    sap.init_from_kinetics(sd)
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        x = clip
        for name in ("conv3d_1a_7x7", "maxPool3d_2a_3x3", "conv3d_2b_1x1", "conv3d_2c_3x3", "maxPool3d_3a_3x3",
                     "mixed_3b", "mixed_3c", "maxPool3d_4a_3x3", "mixed_4b", "mixed_4c", "mixed_4d",
                     "mixed_4e", "mixed_4f"):
            x = getattr(i3d, name)(x)                                  # Mixed_4f (2, 832, 4, 4, 4)
        m, _ = sap(x)
        f, _ = i3d.features(clip)
    torch.testing.assert_close(m, f, rtol=1e-5, atol=1e-5)
