"""InceptionI3d: TF "SAME" padding arithmetic, -inf max-pool padding, BN semantics, shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aqa.models.i3d import InceptionI3d, MaxPool3dSame, TFBatchNorm3d, Unit3D, tf_same_pads


@pytest.mark.parametrize(
    "size, kernel, stride, pads",
    [
        (112, 7, 2, (2, 3)),  # Conv3d_1a on a 112 frame: TF puts the odd pixel at the end
        (224, 7, 2, (2, 3)),
        (16, 7, 2, (2, 3)),  # ... and on 16 frames in time
        (56, 3, 1, (1, 1)),  # every stride-1 3x3x3
        (7, 3, 1, (1, 1)),
        (8, 1, 2, (0, 0)),  # 1x1 stride 2, even and odd sizes: never padded
        (7, 1, 2, (0, 0)),
        (56, 3, 2, (0, 1)),  # MaxPool3d_2a 1x3x3 s 1x2x2 on an even size
        (55, 3, 2, (1, 1)),  # ... and on an odd size
        (8, 3, 2, (0, 1)),  # MaxPool3d_4a in time for 16 frames
        (7, 2, 2, (0, 1)),  # MaxPool3d_5a on an odd size (224 input: 14 -> 7 is even, 7 odd)
        (14, 2, 2, (0, 0)),
        (1, 3, 2, (1, 1)),
        (1, 7, 1, (3, 3)),
    ],
)
def test_tf_same_pads_known_values(size, kernel, stride, pads):
    assert tf_same_pads(size, kernel, stride) == pads
    # SAME's defining property: ceil(size / stride) outputs
    out = (size + sum(pads) - kernel) // stride + 1
    assert out == -(-size // stride)


def test_asymmetric_conv_padding_goes_at_the_end():
    # width 8, kernel 3, stride 2: TF pads (0, 1). Taps [1, 10, 100] on x = 1..8.
    unit = Unit3D(1, 1, (1, 1, 3), (1, 1, 2), use_bn=False, relu=False)
    with torch.no_grad():
        unit.conv3d.weight.copy_(torch.tensor([1.0, 10.0, 100.0]).view(1, 1, 1, 1, 3))
    x = torch.arange(1.0, 9.0).view(1, 1, 1, 1, 8)
    y = unit(x).flatten().tolist()
    # out[0] sees x1..x3 (no leading pad); the last output sees x7, x8 and one zero
    assert y == [321.0, 543.0, 765.0, 7.0 + 80.0]


def test_max_pool_padding_never_wins():
    pool = MaxPool3dSame((1, 3, 3), (1, 2, 2))
    x = -1.0 - torch.rand(2, 3, 2, 56, 55)  # all values < -1: a zero pad would show up as 0
    y = pool(x)
    assert y.shape == (2, 3, 2, 28, 28)
    assert (y < -1).all()
    # brute force with explicit -inf padding (H: (0, 1), W: (1, 1))
    ref = F.max_pool3d(F.pad(x, (1, 1, 0, 1, 0, 0), value=float("-inf")), (1, 3, 3), (1, 2, 2))
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_symmetric_max_pool_uses_inf_padding_too():
    pool = MaxPool3dSame((3, 3, 3), (1, 1, 1))
    x = -1.0 - torch.rand(1, 2, 3, 4, 4)
    y = pool(x)
    assert y.shape == x.shape and (y < -1).all()
    assert torch.equal(y[0, 0, 0, 0, 0], x[0, 0, :2, :2, :2].max())


def test_batch_norm_is_tf_style_without_scale():
    bn = TFBatchNorm3d(4)
    assert bn.eps == 1e-3
    assert "weight" not in dict(bn.named_parameters())  # gamma is fixed, not trained
    assert {"weight", "bias", "running_mean", "running_var"} <= set(bn.state_dict())
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
        bn.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        bn.running_var.copy_(torch.tensor([1.0, 4.0, 0.5, 2.0]))
    bn.eval()
    x = torch.randn(2, 4, 1, 2, 2)
    c = (slice(None), None, None, None)
    expected = (x - bn.running_mean[c]) / torch.sqrt(bn.running_var[c] + 1e-3) + bn.bias[c]
    torch.testing.assert_close(bn(x), expected)


def test_no_conv_bias_except_logits():
    model = InceptionI3d()
    biased = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv3d) and m.bias is not None]
    assert biased == ["conv3d_0c_1x1.conv3d"]


def test_kinetics_i3d_pytorch_names():
    names = set(InceptionI3d().state_dict())
    for name in ("conv3d_1a_7x7.conv3d.weight", "conv3d_1a_7x7.batch3d.running_mean",
                 "conv3d_1a_7x7.batch3d.weight", "mixed_3b.branch_1.0.conv3d.weight",
                 "mixed_5c.branch_2.1.batch3d.bias", "mixed_4f.branch_3.1.batch3d.running_var",
                 "conv3d_0c_1x1.conv3d.weight", "conv3d_0c_1x1.conv3d.bias"):
        assert name in names


@pytest.fixture(scope="module")
def model() -> InceptionI3d:
    torch.manual_seed(0)
    m = InceptionI3d().eval()
    with torch.no_grad():  # non-trivial BN statistics so that shapes and pooling are exercised
        for mod in m.modules():
            if isinstance(mod, TFBatchNorm3d):
                mod.running_var.uniform_(0.5, 2.0)
                mod.bias.normal_(0, 0.1)
    return m


@torch.no_grad()
def test_shapes_112_snippet(model):
    x = torch.rand(1, 3, 16, 112, 112) * 2 - 1
    pooled, fmap = model.features(x)
    assert fmap.shape == (1, 1024, 2, 4, 4)
    assert pooled.shape == (1, 1024)
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3, 4)))
    logits = model(x)
    assert logits.shape == (1, 400)
    # 4x4 < the 7x7 window: the logits are the 1x1x1 conv of the global mean (TSA's pooling)
    head = model.conv3d_0c_1x1.conv3d
    torch.testing.assert_close(logits, pooled @ head.weight.flatten(1).T + head.bias, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_shapes_224_and_original_logits_head(model):
    x = torch.rand(1, 3, 9, 224, 224) * 2 - 1  # 9 frames already give T' = 2 (9 -> 5 -> 3 -> 2)
    pooled, fmap = model.features(x)
    assert fmap.shape == (1, 1024, 2, 7, 7)
    # the original: (2, 7, 7) VALID average pool, 1x1x1 conv, mean over time
    head = model.conv3d_0c_1x1.conv3d
    ref = F.conv3d(F.avg_pool3d(fmap, (2, 7, 7), 1), head.weight, head.bias).mean(dim=(2, 3, 4))
    torch.testing.assert_close(model.logits_from_map(fmap), ref)
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_channels_last_input_gives_the_same_result(model):
    x = torch.rand(2, 3, 8, 64, 64) * 2 - 1
    ref = model.features(x)[1]
    out = model.features(x.contiguous(memory_format=torch.channels_last_3d))[1]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    # batch items are independent
    torch.testing.assert_close(model.features(x[1:])[1], ref[1:], rtol=1e-4, atol=1e-4)


def test_odd_sizes_follow_ceil_division(model):
    with torch.no_grad():
        fmap = model.features(torch.zeros(1, 3, 9, 100, 66))[1]
    # T: 9 -> 5 -> 3 -> 2; H: 100 -> 50 -> 25 -> 13 -> 7 -> 4; W: 66 -> 33 -> 17 -> 9 -> 5 -> 3
    assert fmap.shape == (1, 1024, 2, 4, 3)
