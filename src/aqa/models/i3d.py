"""Inception-I3D (Carreira & Zisserman 2017), faithful to DeepMind's Kinetics-400 network.

What "faithful" means here (details and measured agreement in docs/BACKBONE.md):

- TensorFlow "SAME" padding, computed from the actual input size at run time; where TF pads
  asymmetrically the extra row/column/frame goes at the end. Max-pooling pads with -inf, so
  padding never wins the max (TF/Flax semantics, unlike a zero ConstantPad).
- BatchNorm: eps 1e-3, no learned scale (gamma is a fixed buffer of ones, kept under the name
  ``weight`` so that kinetics_i3d_pytorch's ``model_rgb.pth`` loads), Sonnet decay 0.999.
- No convolution bias except in the logits layer.

Parameter names are those of hassony2/kinetics_i3d_pytorch (``conv3d_1a_7x7.conv3d.weight``,
``mixed_3b.branch_1.0.batch3d.running_mean``, ``conv3d_0c_1x1.conv3d.bias``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]

BN_EPS = 1e-3
BN_MOMENTUM = 1e-3  # Sonnet v1 decay 0.999 == PyTorch momentum 0.001
FEATURE_DIM = 1024  # channels of Mixed_5c


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis for an input of `size`.

    The output has ceil(size / stride) positions; TF puts the odd pixel of padding at the end.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_pads(spatial: Sequence[int], kernel: Triple, stride: Triple) -> list[tuple[int, int]]:
    return [tf_same_pads(n, k, s) for n, k, s in zip(spatial, kernel, stride)]


def _f_pad_arg(pads: list[tuple[int, int]]) -> list[int]:
    # F.pad wants the last axis first: (w0, w1, h0, h1, t0, t1)
    return [p for before_after in reversed(pads) for p in before_after]


class TFBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d with TF/Sonnet settings and no learned scale (gamma fixed at 1).

    ``weight`` is a buffer of ones rather than a parameter: it is saved and loaded under the
    usual name but never trained. Subclassing BatchNorm3d keeps `isinstance` checks (freezing
    the backbone's BN) working.
    """

    def __init__(self, num_features: int):
        super().__init__(num_features, eps=BN_EPS, momentum=BN_MOMENTUM, affine=True)
        del self.weight
        self.register_buffer("weight", torch.ones(num_features))


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) -> BatchNorm (optional) -> ReLU (optional)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), *, use_bn: bool = True, use_bias: bool = False,
                 relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=use_bias)
        self.batch3d = TFBatchNorm3d(out_channels) if use_bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        pads = _same_pads(x.shape[2:], self.kernel, self.stride)
        if all(a == b for a, b in pads):
            # symmetric: let the convolution pad (no extra copy of the input)
            x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride,
                         padding=tuple(a for a, _ in pads))
        else:
            x = self.conv3d(F.pad(x, _f_pad_arg(pads)))
        if self.batch3d is not None:
            x = self.batch3d(x)
        return F.relu(x, inplace=True) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max-pooling with TF "SAME" padding; the padding is -inf, so it never wins the max."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x.shape[2:], self.kernel, self.stride)
        if all(a == b for a, b in pads):
            # max_pool3d's own padding is implicitly -inf
            return F.max_pool3d(x, self.kernel, self.stride, padding=tuple(a for a, _ in pads))
        x = F.pad(x, _f_pad_arg(pads), value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception module: four branches concatenated on channels.

    out = (b0 1x1, b1 1x1, b1 3x3, b2 1x1, b2 3x3, b3 1x1 after a 3x3x3 max-pool).
    """

    def __init__(self, in_channels: int, out: Sequence[int]):
        super().__init__()
        self.branch_0 = Unit3D(in_channels, out[0])
        self.branch_1 = nn.Sequential(Unit3D(in_channels, out[1]), Unit3D(out[1], out[2], (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(in_channels, out[3]), Unit3D(out[3], out[4], (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, out[5]))
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


# (name, in_channels, branch widths) of the Inception modules, in order
_MIXED = {
    "mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
LOGITS_POOL: Triple = (2, 7, 7)  # the original's VALID average pool before the logits


class InceptionI3d(nn.Module):
    """RGB Inception-I3D. Input (B, 3, T, H, W) in [-1, 1].

    `forward` -> Kinetics logits (B, num_classes), averaged over time as the original does.
    `features` -> (pooled (B, 1024), mixed_5c (B, 1024, T', H', W')); T' = ceil(T/8),
    H' = ceil(H/32): 16x112x112 -> (1024, 2, 4, 4), 64x224x224 -> (1024, 8, 7, 7).
    """

    def __init__(self, num_classes: int = 400, dropout: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.maxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3D(64, 64)
        self.conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.maxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.mixed_3b = Mixed(*_MIXED["mixed_3b"])
        self.mixed_3c = Mixed(*_MIXED["mixed_3c"])
        self.maxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.mixed_4b = Mixed(*_MIXED["mixed_4b"])
        self.mixed_4c = Mixed(*_MIXED["mixed_4c"])
        self.mixed_4d = Mixed(*_MIXED["mixed_4d"])
        self.mixed_4e = Mixed(*_MIXED["mixed_4e"])
        self.mixed_4f = Mixed(*_MIXED["mixed_4f"])
        self.maxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.mixed_5b = Mixed(*_MIXED["mixed_5b"])
        self.mixed_5c = Mixed(*_MIXED["mixed_5c"])
        self.dropout = nn.Dropout(dropout)
        self.conv3d_0c_1x1 = Unit3D(FEATURE_DIM, num_classes, use_bn=False, use_bias=True, relu=False)

    def mixed_5c_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> Mixed_5c (B, 1024, T', H', W')."""
        for name in ("conv3d_1a_7x7", "maxPool3d_2a_3x3", "conv3d_2b_1x1", "conv3d_2c_3x3",
                     "maxPool3d_3a_3x3", "mixed_3b", "mixed_3c", "maxPool3d_4a_3x3", "mixed_4b",
                     "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f", "maxPool3d_5a_2x2",
                     "mixed_5b", "mixed_5c"):
            x = getattr(self, name)(x)
        return x

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled (B, 1024), mixed_5c (B, 1024, T', H', W')); pooled = global mean of Mixed_5c.

        The global mean is what the TSA code's AvgPool3d((2, 4, 4)) computes on the
        (1024, 2, 4, 4) map of a 16x112x112 snippet.
        """
        fmap = self.mixed_5c_map(x)  # (B, 1024, T', H', W')
        return fmap.mean(dim=(2, 3, 4)), fmap

    def logits_from_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """Mixed_5c (B, 1024, T', H', W') -> logits (B, num_classes).

        The original averages over a (2, 7, 7) VALID window (stride 1), applies the 1x1x1
        logits conv, then averages over time. The window is clipped to the map so that smaller
        inputs work (112x112 -> 4x4: a global spatial mean); the remaining positions are
        averaged, which for 224x224 inputs is exactly the original.
        """
        window = tuple(min(w, n) for w, n in zip(LOGITS_POOL, fmap.shape[2:]))
        pooled = F.avg_pool3d(fmap, window, stride=1)  # (B, 1024, T'-1, H'-6, W'-6) for 224
        logits = self.conv3d_0c_1x1(self.dropout(pooled))  # (B, classes, t, h, w)
        return logits.mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_map(self.mixed_5c_map(x))
