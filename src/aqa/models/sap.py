"""SAP, FineParser's spatial action parser (../shared/docs/FINEPARSER.md 2.3, 8.3; docs/METHODS.md
"FineParser").

A second Kinetics I3D ("I3D_VOS", the fully convolutional I3D) whose side branches turn
intermediate maps into per-frame mask logits, and whose pooled Mixed_5c (m, 1024-d per snippet)
gates TAP's features: u = f * sigmoid(m).

Tiers (decision D1):
- T2 (the CPU default): only the top of the SAP I3D trains: MaxPool3d_5a + Mixed_5b + Mixed_5c,
  initialised from the Kinetics weights, on the Mixed_4f maps (832, 4, 7, 7) that the feature
  cache stores per snippet. The mask head is tap 4's: side_prep4 (1x1x1, 832->16) -> score_dsn4
  (16->1) -> upsample4_ (1->1 transposed conv) -> (1, 16, 112, 112) logits per snippet.
  `fuse_t2` adds the fused output over tap 4's 16-channel upsample (its 16->16 transposed conv
  costs 0.82 GFLOP per snippet), so both a side and a fused output are supervised.
- T1 / T0: the whole SAP I3D from the snippets' frames, taps B_1..B_4 (before each max-pool),
  four side outputs and the fused output, as the code. T1 and T0 differ in which OTHER backbones
  train (TAP's I3D and SVE's), not in SAP.

Each side branch has no non-linearity; transposed convs have no bias and start as bilinear
upsamplers on the diagonal channels; the other convs start at N(0, 0.001^2), bias 0
(i3d_vos.py:334-373); the trunk is then overwritten by the Kinetics weights (`init_from_kinetics`).
SAP's BatchNorm trains (train mode, its scale a parameter), unlike TAP's frozen I3D.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from aqa.errors import AqaError
from aqa.models.backbone import trainable_bn_scale
from aqa.models.i3d import InceptionI3d, MaxPool3dSame, Mixed, _MIXED
from aqa.models.sap_pool import use_separable_pools

TIERS = ("T0", "T1", "T2")
TRUNK_TOP = ("maxPool3d_5a_2x2", "mixed_5b", "mixed_5c")  # what T2 trains
# tap j: (I3D layer whose output is B_j, its channels, upsample kernel / stride / padding)
TAPS = {
    1: ("conv3d_1a_7x7", 64, (4, 4, 4), (2, 2, 2), (1, 1, 1)),
    2: ("conv3d_2c_3x3", 192, (4, 8, 8), (2, 4, 4), (1, 2, 2)),
    3: ("mixed_3c", 480, (4, 16, 16), (2, 8, 8), (1, 4, 4)),
    4: ("mixed_4f", 832, (8, 32, 32), (4, 16, 16), (2, 8, 8)),
}
_TRUNK_ORDER = ("conv3d_1a_7x7", "maxPool3d_2a_3x3", "conv3d_2b_1x1", "conv3d_2c_3x3",
                "maxPool3d_3a_3x3", "mixed_3b", "mixed_3c", "maxPool3d_4a_3x3", "mixed_4b",
                "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f")


class SAPError(AqaError):
    """A SAP setting or input that cannot work (tier, weights, shapes)."""


@dataclass
class SAPConfig:
    tier: str = "T2"
    side_channels: int = 16
    fuse_t2: bool = False     # T2: also the fused output over tap 4's 16-channel upsample
    init_std: float = 1e-3    # N(0, std^2) of the side convs (the code)
    bn_momentum: float = 0.1  # of the trainable BatchNorm (the reference port's PyTorch default)
    # OUR option, not the code's (docs/METHODS.md D1 "head_lr_mult"): the mask head's (side
    # branches and fuse) learning rate = train.lr x this; 1 = the code (one lr for all of SAP)
    head_lr_mult: float = 1.0


def bilinear_kernel(k: int) -> torch.Tensor:
    """The 2-D (k, k) bilinear upsampling kernel of the code's init: factor (k+1)//2, centre
    factor - 0.5 for even k (factor - 1 for odd), w = (1 - |a-c|/f)(1 - |b-c|/f)."""
    factor = (k + 1) // 2
    centre = factor - 0.5 if k % 2 == 0 else factor - 1
    r = 1 - (torch.arange(k, dtype=torch.float32) - centre).abs() / factor
    return r[:, None] * r[None, :]


def init_upsample(conv: nn.ConvTranspose3d) -> None:
    """Zero, then the bilinear kernel on each diagonal channel (i, i) at every temporal index."""
    with torch.no_grad():
        conv.weight.zero_()
        kt, kh, kw = conv.kernel_size
        if kh != kw:
            raise ValueError(f"bilinear init needs a square spatial kernel, got {kh}x{kw}")
        kern = bilinear_kernel(kh)
        for i in range(min(conv.in_channels, conv.out_channels)):
            conv.weight[i, i] = kern.expand(kt, kh, kw)


class SideBranch(nn.Module):
    """Tap j's side branch: side_prep (1x1x1, C->16, no bias) shared by the 16-channel upsample
    (fuse path) and score_dsn (16->1, bias) -> the 1->1 upsample (side output). No non-linearity."""

    def __init__(self, cin: int, side: int, kernel, stride, padding, *, with_fuse_path: bool):
        super().__init__()
        self.side_prep = nn.Conv3d(cin, side, 1, bias=False)
        self.score_dsn = nn.Conv3d(side, 1, 1, bias=True)
        self.upsample_ = nn.ConvTranspose3d(1, 1, kernel, stride, padding, bias=False)
        self.upsample = (nn.ConvTranspose3d(side, side, kernel, stride, padding, bias=False)
                         if with_fuse_path else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        prep = self.side_prep(x)                                   # (N, 16, t, h, w)
        side = self.upsample_(self.score_dsn(prep))                # (N, 1, 16, H, W) logits
        up = self.upsample(prep) if self.upsample is not None else None  # (N, 16, 16, H, W)
        return side, up


class SAP(nn.Module):
    """forward(x) -> (m (N, 1024), mask logits [(N, 1, 16, H, W), ...]: the side outputs, then
    the fused one if any). x: T2 the Mixed_4f maps (N, 832, 4, 7, 7); T0/T1 the normalised
    snippets (N, 3, 16, H, W). N counts snippets."""

    def __init__(self, cfg: SAPConfig = SAPConfig()):
        super().__init__()
        if cfg.tier not in TIERS:
            raise SAPError(f"sap.tier must be one of {TIERS}, got {cfg.tier!r}")
        if not isinstance(cfg.head_lr_mult, (int, float)) or isinstance(cfg.head_lr_mult, bool) \
                or not cfg.head_lr_mult > 0:
            raise SAPError(f"sap.head_lr_mult must be a number > 0, got {cfg.head_lr_mult!r}")
        self.cfg = cfg
        self.from_frames = cfg.tier != "T2"
        if self.from_frames:
            trunk = InceptionI3d(num_classes=400)
            for name in (*_TRUNK_ORDER, *TRUNK_TOP):
                self.add_module(name, getattr(trunk, name))
            taps = (1, 2, 3, 4)
        else:
            self.maxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            self.mixed_5b = Mixed(*_MIXED["mixed_5b"])
            self.mixed_5c = Mixed(*_MIXED["mixed_5c"])
            taps = (4,)
        fuse = self.from_frames or cfg.fuse_t2
        self.taps = taps
        self.side = nn.ModuleDict({str(j): SideBranch(TAPS[j][1], cfg.side_channels, *TAPS[j][2:],
                                                      with_fuse_path=fuse) for j in taps})
        self.fuse = nn.Conv3d(cfg.side_channels * len(taps), 1, 1, bias=True) if fuse else None
        self._init_side()
        use_separable_pools(self)   # same values; faster where no gradient flows (aqa.models.sap_pool)
        trainable_bn_scale(self)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = cfg.bn_momentum
        # 1 once the Kinetics weights are in (saved in checkpoints): a SAP trunk that trains from
        # random weights would be a silent deviation, so the model refuses to run without it
        self.register_buffer("kinetics_loaded", torch.zeros((), dtype=torch.uint8))

    def head_parameters(self) -> list[nn.Parameter]:
        """The mask head's parameters: the side branches and the fuse conv (not the trunk)."""
        return [*self.side.parameters(), *(self.fuse.parameters() if self.fuse is not None else ())]

    @property
    def num_outputs(self) -> int:
        return len(self.taps) + (self.fuse is not None)

    def _init_side(self) -> None:
        for m in [*self.side.modules(), self.fuse]:
            if isinstance(m, nn.ConvTranspose3d):
                init_upsample(m)
            elif isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, self.cfg.init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def init_from_kinetics(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Overwrite the trunk (T2: Mixed_5b/5c only) with verified Kinetics I3D weights
        (`aqa.models.i3d_weights.load_verified_weights`); the side branches keep their init."""
        own = self.state_dict()
        trunk = {k: v for k, v in state_dict.items() if k in own and not k.startswith(("side.", "fuse."))}
        expected = {k for k in own if not k.startswith(("side.", "fuse.")) and k != "kinetics_loaded"}
        missing = sorted(expected - set(trunk))
        if missing:
            raise SAPError(f"SAP {self.cfg.tier}: the Kinetics state dict lacks {len(missing)} trunk "
                           f"tensors (e.g. {missing[:3]})")
        with torch.no_grad():
            for k, v in trunk.items():
                own[k].copy_(v.to(own[k].dtype))
            self.kinetics_loaded.fill_(1)

    def check_initialised(self) -> None:
        if not int(self.kinetics_loaded):
            raise SAPError(f"SAP {self.cfg.tier}: its I3D trunk was never initialised from the Kinetics "
                           "weights (call init_from_kinetics, or load a checkpoint that has them)")

    def forward(self, x: torch.Tensor, masks: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """masks False: m alone (the side branches feed nothing else), the mask list empty; what
        evaluation's encoding needs (the 1->1 upsample to 112 x 112 was half of SAP's forward)."""
        want = 3 if self.from_frames else TAPS[4][1]
        if x.dim() != 5 or x.shape[1] != want:
            raise SAPError(f"SAP {self.cfg.tier}: expected (N, {want}, T, H, W), got {tuple(x.shape)}")
        sides, ups = [], []
        if self.from_frames:
            tap_layer = {TAPS[j][0]: j for j in self.taps}
            for name in _TRUNK_ORDER:
                x = getattr(self, name)(x)
                if masks and name in tap_layer:
                    side, up = self.side[str(tap_layer[name])](x)
                    sides.append(side)
                    ups.append(up)
        elif masks:
            side, up = self.side["4"](x)              # x: Mixed_4f (N, 832, 4, 7, 7)
            sides.append(side)
            ups.append(up)
        top = self.mixed_5c(self.mixed_5b(self.maxPool3d_5a_2x2(x)))  # (N, 1024, 2, 4, 4)
        m = top.mean(dim=(2, 3, 4))                                    # (N, 1024): B_5 pooled
        if masks and self.fuse is not None:
            sides.append(self.fuse(torch.cat(ups, 1)))                 # (N, 1, 16, H, W)
        return m, sides


def pack_snippets(x: torch.Tensor, starts, length: int) -> torch.Tensor:
    """(B, C, T, ...) -> (B, S, C, length, ...): the snippets of each video (frames [s, s+length))."""
    return torch.stack([x[:, :, s:s + length] for s in starts], 1)


def frames_to_snippets(masks: torch.Tensor, starts, length: int) -> torch.Tensor:
    """Per-frame masks (B, T, H, W) -> the snippets' (B, S, length, H, W): the targets laid out
    as the snippet logits (overlapping frames appear in both snippets, as the code's loss)."""
    return torch.stack([masks[:, s:s + length] for s in starts], 1)


def snippets_to_frames(x: torch.Tensor, starts, num_frames: int) -> torch.Tensor:
    """Snippet logits (B, S, L, H, W) -> per-frame (B, T, H, W), frames in two snippets averaged."""
    b, _, length = x.shape[:3]
    out = x.new_zeros((b, num_frames) + tuple(x.shape[3:]))
    count = x.new_zeros(num_frames)
    for i, s in enumerate(starts):
        out[:, s:s + length] += x[:, i]
        count[s:s + length] += 1
    if bool((count == 0).any()):
        raise ValueError(f"snippets {list(starts)} of {length} frames leave frames of {num_frames} uncovered")
    return out / count.view((1, num_frames) + (1,) * (x.dim() - 3))
