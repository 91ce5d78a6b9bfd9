"""Procedure segmentation (PSNet) and the cutting of a dive into its steps (PAPERS.md section 3).

PSNet reads the I3D features of a dive with the 9 snippets as CHANNELS and the 1024 feature
dimensions as LENGTH: an in-conv 9->12 and four down blocks (max-pool /2, two conv1d k3 + BN +
ReLU) 12->24->48->96->96 turn (9, 1024) into (96, 64), i.e. 96 frame slots of 64 dims. So the
9-snippet -> 96-slot mapping is the channel expansion of the convolutions and 1024 -> 64 is
the length reduction of the four max-pools; this is how the reference code builds it.

Transitions: the batch carries the reference loader's values t (first frame of a step minus
one, PAPERS.md section 2); the reference training loop adds one, so the model works with
"boundaries" b = t + 1, the first frame slot of steps 2 and 3. Predicted boundaries are the
argmax of each head column within its half of the slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PSNetConfig:
    in_channels: int = 9                      # snippets
    widths: tuple[int, ...] = (12, 24, 48, 96, 96)  # in-conv, then one per down block
    feature_dim: int = 1024                   # input length (I3D channels)
    head_hidden: tuple[int, ...] = (128, 64)
    num_transitions: int = 2

    @property
    def num_slots(self) -> int:
        return self.widths[-1]

    @property
    def out_dim(self) -> int:
        return self.feature_dim // 2 ** (len(self.widths) - 1)


# Speed (docs/BENCHMARKS.md, train / evaluate). In eval mode BatchNorm only applies its running
# statistics, so `encode` folds each conv + BatchNorm into one conv and runs the sequences as
# channels-last (N, C, 1, L) images, on which oneDNN's convolutions with few channels and long
# sequences are faster: same math, other rounding (~1e-7). Training keeps the plain modules and
# their results bit for bit: channels-last was no faster there on 2 threads (its BatchNorm
# kernels are slow, and their batch statistics ~100x less accurate).


def _folded_conv(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (cout, cin, 1, k) and bias of conv then BatchNorm with running statistics, as one conv."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    bias = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        bias = bias + bn.bias
    return (conv.weight * scale[:, None, None]).unsqueeze(2), bias


def _encode_folded(encoder: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The encoder in eval mode, (N, C, L) -> (N, C', L'): conv + BatchNorm folded, channels-last."""
    layers = [m for m in encoder.modules() if next(m.children(), None) is None]  # leaves, in order
    h = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (N, C, 1, L)
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv1d):
            weight, bias = _folded_conv(layer, layers[i + 1])  # _double_conv: a BatchNorm follows
            h = F.conv2d(h, weight, bias, padding=(0, layer.padding[0]))
            i += 1
        elif isinstance(layer, nn.MaxPool1d):
            h = F.max_pool2d(h, (1, layer.kernel_size), (1, layer.stride))
        elif isinstance(layer, nn.ReLU):
            h = F.relu(h)
        else:
            raise TypeError(f"unexpected encoder layer {layer}")
        i += 1
    return h.squeeze(2).contiguous()


def _foldable(encoder: nn.Sequential) -> bool:
    """Every conv (stride 1, no dilation or groups) followed by a BatchNorm with running statistics."""
    layers = [m for m in encoder.modules() if next(m.children(), None) is None]
    for conv, bn in zip(layers, layers[1:] + [None]):
        if isinstance(conv, nn.Conv1d) and not (
                isinstance(bn, nn.BatchNorm1d) and bn.running_mean is not None
                and conv.stride == (1,) and conv.dilation == (1,) and conv.groups == 1):
            return False
    return True


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(cin, cout, 3, padding=1), nn.BatchNorm1d(cout), nn.ReLU(inplace=True),
        nn.Conv1d(cout, cout, 3, padding=1), nn.BatchNorm1d(cout), nn.ReLU(inplace=True),
    )


class PSNet(nn.Module):
    """`encode` gives the (B, 96, 64) slot features; `head` the (B, 96, 2) transition probabilities."""

    def __init__(self, cfg: PSNetConfig = PSNetConfig()):
        super().__init__()
        if cfg.feature_dim % 2 ** (len(cfg.widths) - 1):
            raise ValueError(f"feature_dim {cfg.feature_dim} must divide by 2**{len(cfg.widths) - 1}")
        self.cfg = cfg
        blocks = [_double_conv(cfg.in_channels, cfg.widths[0])]
        for cin, cout in zip(cfg.widths[:-1], cfg.widths[1:]):
            blocks.append(nn.Sequential(nn.MaxPool1d(2), _double_conv(cin, cout)))
        self.encoder = nn.Sequential(*blocks)
        dims = (cfg.out_dim, *cfg.head_hidden)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers += [nn.Linear(dims[-1], cfg.num_transitions), nn.Sigmoid()]
        self.head = nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 9, 1024) -> (N, 96, 64); in eval mode by the folded channels-last path (see above)."""
        if self.training or not _foldable(self.encoder):
            return self.encoder(x)
        return _encode_folded(self.encoder, x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encode(x)  # (B, 96, 64)
        return feats, self.head(feats)  # (B, 96, 64), (B, 96, 2)


def encode_maps(psnet: PSNet, maps: torch.Tensor, layout: str = "reference") -> torch.Tensor:
    """Run PSNet's encoder over the spatial maps: (B, 9, 1024, H, W) -> (B, 96, 64, H, W).

    "reference": the authors' code flattens the maps with raw reshapes, (B, 9, 1024, H, W) ->
    (B*H*W, 9, 1024) and back (B*H*W, 96, 64) -> (B, 96, 64, H, W), which interleaves feature
    channels and spatial cells rather than treating each cell as a sequence. That is what
    produced the published numbers, so it is the default.
    "spatial": each of the H*W cells is its own (9, 1024) sequence, and each output cell is
    that sequence's (96, 64) encoding (the evident intent).
    """
    b, t, c, h, w = maps.shape
    if layout == "reference":
        out = psnet.encode(maps.reshape(b * h * w, t, c))  # (B*H*W, 96, 64), scrambled rows
        return out.reshape(b, out.shape[1], out.shape[2], h, w)
    if layout == "spatial":
        x = maps.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)  # (B*H*W, 9, 1024)
        out = psnet.encode(x)  # (B*H*W, 96, 64)
        return out.reshape(b, h, w, out.shape[1], out.shape[2]).permute(0, 3, 4, 1, 2)
    raise ValueError(f"unknown map layout {layout!r}; expected 'reference' or 'spatial'")


def predicted_boundaries(seg: torch.Tensor) -> torch.Tensor:
    """Argmax of head column k within the k-th equal share of the slots: (B, T, K) -> (B, K) long.

    With T = 96 and K = 2: b1 in [0, 48), b2 in [48, 96), as the reference.
    """
    b, t, k = seg.shape
    share = round(t / k)
    cols = [seg[:, i * share:(i + 1) * share, i].argmax(1) + i * share for i in range(k)]
    return torch.stack(cols, 1)  # (B, K)


def boundary_targets(boundaries: torch.Tensor, num_slots: int) -> torch.Tensor:
    """One-hot BCE targets (B, T, K): column k is 1 at boundary k (clamped into the slots)."""
    idx = boundaries.long().clamp(0, num_slots - 1)  # (B, K)
    target = torch.zeros(idx.shape[0], num_slots, idx.shape[1], device=idx.device)
    return target.scatter_(1, idx.unsqueeze(1), 1.0)  # (B, T, K)


def safe_boundaries(boundaries: torch.Tensor, length: int) -> torch.Tensor:
    """Clamp (b1, b2) so that all three steps [0, b1), [b1, b2), [b2, T) are non-empty.

    The reference moves a predicted b1 of 0 to 1; everything else it leaves alone (valid ground
    truth already satisfies 1 <= b1 < b2 <= T-1). Clamping makes edge cases safe instead of
    crashing on an empty step.
    """
    b1 = boundaries[:, 0].long().clamp(1, length - 2)
    b2 = torch.maximum(boundaries[:, 1].long(), b1 + 1).clamp(max=length - 1)
    return torch.stack([b1, b2], 1)  # (B, 2)


def resample_steps(x: torch.Tensor, boundaries: torch.Tensor, fix_size: int) -> torch.Tensor:
    """Cut x (B, T, ...) at (b1, b2) into 3 steps, resample each to `fix_size` slots -> (B, 3*fix, ...).

    Linear interpolation along T with align_corners=True, exactly as F.interpolate on each step
    (source position i * (L - 1) / (fix - 1) within a step of length L), vectorised over the batch
    with a gather. Trailing dims (C, or C, H, W) are carried along: the reference's trilinear
    resize keeps H and W, which with align_corners=True is the identity on them.
    """
    bsz, length = x.shape[:2]
    bnd = safe_boundaries(boundaries, length).to(x.device)
    zero = torch.zeros_like(bnd[:, :1])
    full = torch.full_like(bnd[:, :1], length)
    # positions in fp32 whatever x's dtype: fp16 cannot resolve fractions of slot 90
    starts = torch.cat([zero, bnd], 1).float()
    ends = torch.cat([bnd, full], 1).float()  # (B, 3) exclusive
    scale = (ends - starts - 1) / (fix_size - 1) if fix_size > 1 else torch.zeros_like(starts)
    i = torch.arange(fix_size, device=x.device, dtype=torch.float32)
    pos = starts.unsqueeze(-1) + scale.unsqueeze(-1) * i  # (B, 3, fix), as F.interpolate's src
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, ends.long().unsqueeze(-1) - 1)
    w = (pos - lo.to(pos.dtype)).to(x.dtype)
    lo, hi, w = lo.reshape(bsz, -1), hi.reshape(bsz, -1), w.reshape(bsz, -1)  # (B, 3*fix)
    rest = x.shape[2:]
    view = (bsz, lo.shape[1]) + (1,) * len(rest)
    expand = (bsz, lo.shape[1]) + tuple(rest)
    x_lo = x.gather(1, lo.view(view).expand(expand))
    x_hi = x.gather(1, hi.view(view).expand(expand))
    w = w.view(view)
    return x_lo * (1 - w) + x_hi * w  # (B, 3*fix, ...)


def segmentation_loss(seg: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """Mean BCE of the (B, T, K) probabilities against one-hot targets, in fp32 outside autocast."""
    target = boundary_targets(boundaries, seg.shape[1]).to(seg.device)
    with torch.autocast(device_type=seg.device.type, enabled=False):
        return F.binary_cross_entropy(seg.float(), target)
