"""PSNet, transition prediction and the vectorised step resampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aqa.models.psnet import (
    PSNet, PSNetConfig, boundary_targets, encode_maps, predicted_boundaries, resample_steps,
    safe_boundaries, segmentation_loss,
)


@pytest.mark.parametrize("batch", [1, 3])
def test_psnet_shapes(batch):
    net = PSNet()
    feats, seg = net(torch.randn(batch, 9, 1024))
    assert feats.shape == (batch, 96, 64) and seg.shape == (batch, 96, 2)
    assert ((seg > 0) & (seg < 1)).all()
    assert net.cfg.out_dim == 64 and net.cfg.num_slots == 96


def test_psnet_rejects_indivisible_length():
    with pytest.raises(ValueError, match="divide"):
        PSNet(PSNetConfig(feature_dim=1000))


def test_predicted_boundaries_use_their_half():
    seg = torch.zeros(2, 96, 2)
    seg[0, 70, 0] = 1.0   # column 0 peaks in the second half: ignored
    seg[0, 10, 0] = 0.5
    seg[0, 20, 1] = 1.0   # column 1 peaks in the first half: ignored
    seg[0, 60, 1] = 0.5
    seg[1, 47, 0] = 1.0
    seg[1, 95, 1] = 1.0
    assert predicted_boundaries(seg).tolist() == [[10, 60], [47, 95]]


def test_boundary_targets_one_hot():
    t = boundary_targets(torch.tensor([[3, 50], [0, 120]]), 96)
    assert t.shape == (2, 96, 2) and t.sum().item() == 4
    assert t[0, 3, 0] == 1 and t[0, 50, 1] == 1 and t[1, 0, 0] == 1 and t[1, 95, 1] == 1


def test_segmentation_loss_is_bce():
    seg = torch.full((1, 96, 2), 0.25)
    # 2 positives and 190 negatives over 96 x 2 cells
    expected = -(190 * torch.log(torch.tensor(0.75)) + 2 * torch.log(torch.tensor(0.25))) / 192
    assert segmentation_loss(seg, torch.tensor([[5, 60]])).item() == pytest.approx(expected.item(), rel=1e-5)


def test_resample_steps_by_hand():
    x = torch.arange(12.0).view(1, 12, 1)  # value = slot index
    out = resample_steps(x, torch.tensor([[3, 8]]), fix_size=3)  # steps [0,3) [3,8) [8,12)
    # align_corners: positions start + i * (L - 1) / 2
    assert out.view(-1).tolist() == pytest.approx([0, 1, 2, 3, 5, 7, 8, 9.5, 11])


def _loop_reference(x, bounds, fix):
    """Per-sample F.interpolate over each step, the reference's way (time moved to dim 2)."""
    outs = []
    for xb, (b1, b2) in zip(x, bounds.tolist()):
        xb = xb.unsqueeze(0).movedim(1, 2)  # (1, C, T, ...)
        mode, size = ("linear", fix) if xb.dim() == 3 else ("trilinear", [fix, *xb.shape[-2:]])
        parts = [F.interpolate(xb[:, :, a:b], size=size, mode=mode, align_corners=True)
                 for a, b in ((0, b1), (b1, b2), (b2, xb.shape[2]))]
        outs.append(torch.cat(parts, 2).movedim(2, 1))
    return torch.cat(outs)


@pytest.mark.parametrize("batch", [1, 3])
def test_resample_steps_matches_interpolate(batch):
    g = torch.Generator().manual_seed(batch)
    bounds = torch.stack([torch.randint(1, 48, (batch,), generator=g),
                          torch.randint(48, 96, (batch,), generator=g)], 1)
    x = torch.randn(batch, 96, 8, generator=g)
    torch.testing.assert_close(resample_steps(x, bounds, 5), _loop_reference(x, bounds, 5))
    maps = torch.randn(batch, 96, 4, 2, 3, generator=g)
    torch.testing.assert_close(resample_steps(maps, bounds, 5), _loop_reference(maps, bounds, 5))


def test_edge_boundaries_are_made_safe():
    bounds = torch.tensor([[0, 96], [0, 0], [40, 40], [95, 95]])
    safe = safe_boundaries(bounds, 96)
    assert safe.tolist() == [[1, 95], [1, 2], [40, 41], [94, 95]]
    out = resample_steps(torch.randn(4, 96, 2), bounds, 5)
    assert out.shape == (4, 15, 2) and torch.isfinite(out).all()


def test_encode_maps_layouts():
    net = PSNet().eval()
    maps = torch.randn(2, 9, 1024, 2, 2)
    spatial = encode_maps(net, maps, "spatial")
    assert spatial.shape == (2, 96, 64, 2, 2)
    # spatial: cell (h, w) is the encoding of that cell's own (9, 1024) sequence
    torch.testing.assert_close(spatial[:, :, :, 1, 0], net.encode(maps[:, :, :, 1, 0]))
    reference = encode_maps(net, maps, "reference")
    assert reference.shape == (2, 96, 64, 2, 2)
    # reference: the authors' raw reshapes, row j of the flattened maps is one sequence
    rows = maps.reshape(8, 9, 1024)
    torch.testing.assert_close(reference.reshape(8, 96, 64), net.encode(rows))
    with pytest.raises(ValueError):
        encode_maps(net, maps, "other")


def _plain_encoder(net: PSNet) -> torch.nn.Sequential:
    """PSNet's encoder as the reference builds it (Conv1d / BatchNorm1d / MaxPool1d on (N, C, L)),
    holding a copy of `net`'s weights and running statistics."""
    def double(cin, cout):
        return torch.nn.Sequential(
            torch.nn.Conv1d(cin, cout, 3, padding=1), torch.nn.BatchNorm1d(cout), torch.nn.ReLU(inplace=True),
            torch.nn.Conv1d(cout, cout, 3, padding=1), torch.nn.BatchNorm1d(cout), torch.nn.ReLU(inplace=True))

    w = net.cfg.widths
    blocks = [double(net.cfg.in_channels, w[0])]
    blocks += [torch.nn.Sequential(torch.nn.MaxPool1d(2), double(a, b)) for a, b in zip(w[:-1], w[1:])]
    plain = torch.nn.Sequential(*blocks)
    plain.load_state_dict(net.encoder.state_dict())  # strict: the same keys and shapes
    return plain


@pytest.mark.parametrize("feature_dim", [1024, 128])
def test_encode_matches_the_plain_conv1d_encoder(feature_dim):
    """Training: bit-identical outputs, gradients and running statistics. Eval (conv + BatchNorm
    folded, channels-last): equal up to float rounding."""
    torch.manual_seed(0)
    net = PSNet(PSNetConfig(feature_dim=feature_dim))
    plain = _plain_encoder(net)
    g = torch.Generator().manual_seed(1)
    net.train(), plain.train()
    for _ in range(2):
        x = torch.randn(12, 9, feature_dim, generator=g).relu() * 2  # I3D features are >= 0
        out, ref = net.encode(x), plain(x)
        assert out.shape == ref.shape == (12, 96, feature_dim // 16)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        grad = torch.randn(out.shape, generator=g)
        net.zero_grad(), plain.zero_grad()
        out.backward(grad), ref.backward(grad)
        for (name, p), q in zip(net.encoder.named_parameters(), plain.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
        for (name, a), b in zip(net.encoder.named_buffers(), plain.buffers()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    net.eval(), plain.eval()
    x = torch.randn(5, 9, feature_dim, generator=g).relu() * 2
    with torch.no_grad():
        out, ref = net.encode(x), plain(x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)

