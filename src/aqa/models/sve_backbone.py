"""The per-frame 2D backbone of FineParser's static visual encoder (SVE; ../shared/docs/FINEPARSER.md
2.6, issue 9 item 4; docs/METHODS.md "FineParser: the SVE backbone").

The paper uses torchvision's ImageNet ResNet-34, downloaded at run time; those weights cannot be
fetched on this project's machines. Two backbones, both with real pretrained weights, never a
random one:

- `i3d2d` (the default, a named deviation): the Kinetics I3D that fetch_i3d already brings,
  turned back into a 2D network by summing each 3D kernel over time (the reverse of how I3D was
  inflated from ImageNet's Inception). On a static clip a 3D conv equals the 2D conv of its
  summed kernel away from the temporal borders, so this is the I3D's own response to a frozen
  frame. It is cut after Mixed_4d (512 channels, stride 16, the width of ResNet-34's layer4, so
  the SVE projection is the paper's) and globally averaged. `layer="mixed_5c"` gives the
  1024-channel top instead (for the probe).
- `resnet34`: torchvision's resnet34 architecture (no download) with a user-supplied
  ImageNet weights file, checked against the published torchvision hash before use.

`frame_features(backbone, frames)` turns uint8 frames (N, 3, H, W) into (N, C) features in eval
mode, each backbone with its own input normalisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aqa.errors import AqaError
from aqa.models.i3d import BN_EPS, _MIXED, tf_same_pads
from aqa.provenance import sha256_file

BACKBONES = ("i3d2d", "resnet34")
I3D2D_LAYERS = {"mixed_4d": 512, "mixed_5c": 1024}  # cut -> output width
# torchvision's published file for ResNet34_Weights.IMAGENET1K_V1 is resnet34-b627a593.pth: the
# name carries the first 8 hex digits of its sha256 (torch.hub's check_hash compares exactly these)
RESNET34_FILE = "resnet34-b627a593.pth"
RESNET34_SHA256_PREFIX = "b627a593"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SVEBackboneError(AqaError):
    """A missing, damaged or wrong SVE backbone weights file, or an unknown backbone."""


# --------------------------------------------------------------------------- I3D -> 2D


def _pad2d(x: torch.Tensor, kernel, stride) -> tuple[list[int], bool]:
    (t0, t1), (l0, l1) = (tf_same_pads(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride))
    return [l0, l1, t0, t1], (t0 == t1 and l0 == l1)


class Unit2D(nn.Module):
    """The 2D twin of i3d.Unit3D: conv (TF SAME padding, no bias) -> BatchNorm (eps 1e-3, no
    learned scale) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1), stride=(1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv2d(cin, cout, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, symmetric = _pad2d(x, self.kernel, self.stride)
        if symmetric:
            x = F.conv2d(x, self.conv.weight, None, self.stride, padding=(pads[2], pads[0]))
        else:
            x = self.conv(F.pad(x, pads))
        return F.relu(self.bn(x), inplace=True)


class MaxPool2dSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, symmetric = _pad2d(x, self.kernel, self.stride)
        # Without the padded copy where torch's pool can pad itself (implicitly -inf), or where
        # SAME pads only at the end and ceil_mode's last, partial window is the same window: the
        # same values, gradients and layout (~0.3-0.6x the time in bfloat16, channels-last).
        if symmetric and all(2 * p <= k for p, k in zip(pads[2::-2], self.kernel)):
            return F.max_pool2d(x, self.kernel, self.stride, padding=(pads[2], pads[0]))
        if pads[0] == pads[2] == 0 and all(_ceil_mode_size(n, k, s) == (n + p - k) // s + 1 for n, k, s, p in
                                           zip(x.shape[2:], self.kernel, self.stride, (pads[3], pads[1]))):
            return F.max_pool2d(x, self.kernel, self.stride, ceil_mode=True)
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.kernel, self.stride)


def _ceil_mode_size(n: int, k: int, s: int) -> int:
    """Output size of torch's max-pool with ceil_mode, no padding (the last window starts inside)."""
    out = -(-(n - k) // s) + 1
    return out - 1 if (out - 1) * s >= n else out


class Mixed2D(nn.Module):
    def __init__(self, cin: int, out):
        super().__init__()
        self.branch_0 = Unit2D(cin, out[0])
        self.branch_1 = nn.Sequential(Unit2D(cin, out[1]), Unit2D(out[1], out[2], (3, 3)))
        self.branch_2 = nn.Sequential(Unit2D(cin, out[3]), Unit2D(out[3], out[4], (3, 3)))
        self.branch_3 = nn.Sequential(MaxPool2dSame((3, 3), (1, 1)), Unit2D(cin, out[5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


# the I3D layers in order, with their spatial kernel / stride (the temporal ones drop out)
_I3D2D_LAYERS = (
    ("conv3d_1a_7x7", "unit", (3, 64, (7, 7), (2, 2))),
    ("maxPool3d_2a_3x3", "pool", ((3, 3), (2, 2))),
    ("conv3d_2b_1x1", "unit", (64, 64, (1, 1), (1, 1))),
    ("conv3d_2c_3x3", "unit", (64, 192, (3, 3), (1, 1))),
    ("maxPool3d_3a_3x3", "pool", ((3, 3), (2, 2))),
    ("mixed_3b", "mixed", None), ("mixed_3c", "mixed", None),
    ("maxPool3d_4a_3x3", "pool", ((3, 3), (2, 2))),
    ("mixed_4b", "mixed", None), ("mixed_4c", "mixed", None), ("mixed_4d", "mixed", None),
    ("mixed_4e", "mixed", None), ("mixed_4f", "mixed", None),
    ("maxPool3d_5a_2x2", "pool", ((2, 2), (2, 2))),
    ("mixed_5b", "mixed", None), ("mixed_5c", "mixed", None),
)


class I3D2D(nn.Module):
    """The Kinetics I3D as a per-frame 2D network, up to `layer`: (N, 3, H, W) -> (N, C, h, w).
    Build it with `from_i3d_state_dict`; input in [-1, 1] (what the Kinetics weights expect)."""

    normalization = "i3d"

    def __init__(self, layer: str = "mixed_4d"):
        super().__init__()
        if layer not in I3D2D_LAYERS:
            raise SVEBackboneError(f"i3d2d layer must be one of {sorted(I3D2D_LAYERS)}, got {layer!r}")
        self.layer, self.out_dim = layer, I3D2D_LAYERS[layer]
        self.names = []
        for name, kind, args in _I3D2D_LAYERS:
            if kind == "unit":
                module = Unit2D(*args)
            elif kind == "pool":
                module = MaxPool2dSame(*args)
            else:
                module = Mixed2D(*_MIXED[name])
            self.add_module(name, module)
            self.names.append(name)
            if name == layer:
                break

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
        return x  # (N, C, h, w)


def inflated_to_2d(state_dict: Mapping[str, torch.Tensor], model: I3D2D) -> dict[str, torch.Tensor]:
    """An InceptionI3d state dict -> `model`'s: every conv kernel (out, in, T, kh, kw) summed over
    T; BatchNorm beta and running statistics as they are (gamma stays 1)."""
    out = {}
    for key in model.state_dict():
        src = key.replace(".conv.weight", ".conv3d.weight").replace(".bn.", ".batch3d.")
        if src not in state_dict:
            raise SVEBackboneError(f"i3d2d: the I3D state dict has no {src!r} (for {key!r})")
        v = state_dict[src].float()
        out[key] = v.sum(2) if key.endswith(".conv.weight") else v
    return out


def i3d2d_from_state_dict(state_dict: Mapping[str, torch.Tensor], layer: str = "mixed_4d") -> I3D2D:
    """The I3D-2D backbone with the Kinetics weights (verified by the caller:
    `aqa.models.i3d_weights.load_verified_weights`), in eval mode and frozen."""
    model = I3D2D(layer)
    model.load_state_dict(inflated_to_2d(state_dict, model), strict=True)
    return _frozen(model)


def load_i3d2d(weights_path: str | Path, layer: str = "mixed_4d") -> I3D2D:
    """I3D-2D from fetch_i3d's weights file (sha256 checked against its manifest)."""
    from aqa.models.i3d_weights import load_verified_weights

    sd, _ = load_verified_weights(weights_path)
    return i3d2d_from_state_dict(sd, layer)


# --------------------------------------------------------------------------- ResNet-34 by path


class ResNetTrunk(nn.Module):
    """torchvision ResNet conv1 .. layer4 (fc unused): (N, 3, H, W) -> (N, 512, h, w)."""

    normalization = "imagenet"

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.net = resnet
        self.out_dim = resnet.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))


def load_resnet34(weights_path: str | Path, *, sha256: str | None = None) -> ResNetTrunk:
    """torchvision's resnet34 with the ImageNet weights file at `weights_path`.

    The file's sha256 must start with the published torchvision prefix (resnet34-b627a593.pth),
    or equal `sha256` when a full digest is pinned; it is loaded tensors-only and strictly.
    """
    import torchvision

    path = Path(weights_path)
    if not path.is_file():
        raise SVEBackboneError(f"{path}: ResNet-34 weights file not found (sve.weights_path; the paper's "
                               f"torchvision {RESNET34_FILE})")
    digest = sha256_file(path)
    ok = digest == sha256.lower() if sha256 else digest.startswith(RESNET34_SHA256_PREFIX)
    if not ok:
        want = sha256 or f"{RESNET34_SHA256_PREFIX}... (torchvision's {RESNET34_FILE})"
        raise SVEBackboneError(f"{path}: sha256 {digest[:16]}... is not {want}; refusing other weights")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- one line, whatever torch's reason
        raise SVEBackboneError(f"{path}: not a readable PyTorch state dict") from None
    model = torchvision.models.resnet34(weights=None)
    try:
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise SVEBackboneError(f"{path}: not torchvision resnet34 weights ({str(exc).splitlines()[0]})") from None
    return _frozen(ResNetTrunk(model))


def build_sve_backbone(name: str, weights_path: str | Path, *, layer: str = "mixed_4d",
                       sha256: str | None = None) -> nn.Module:
    """The frozen SVE backbone `name` from its weights file: i3d2d from fetch_i3d's
    kinetics400_rgb.pt (manifest-checked), resnet34 from torchvision's file. Always pretrained:
    a missing or wrong file is an SVEBackboneError, never a random network."""
    if name == "i3d2d":
        return load_i3d2d(weights_path, layer)
    if name == "resnet34":
        return load_resnet34(weights_path, sha256=sha256)
    raise SVEBackboneError(f"sve backbone must be one of {BACKBONES}, got {name!r}")


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def normalize_frames(frames: torch.Tensor, normalization: str) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float: 'imagenet' mean/std, or 'i3d' [-1, 1]."""
    x = frames.float() / 255.0
    if normalization == "i3d":
        return x * 2.0 - 1.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def frame_features(backbone: nn.Module, frames: torch.Tensor, batch: int = 96) -> torch.Tensor:
    """uint8 frames (N, 3, H, W) -> (N, C) float32: the backbone's map, globally averaged."""
    out = []
    for i in range(0, frames.shape[0], batch):
        x = normalize_frames(frames[i:i + batch], backbone.normalization)
        out.append(backbone(x).mean(dim=(2, 3)))
    return torch.cat(out)
