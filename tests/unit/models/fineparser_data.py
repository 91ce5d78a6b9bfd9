"""Small random FineParser batches with the cache's shapes (pooled, mixed4f, sve, masks)."""

from __future__ import annotations

import torch

from aqa.models.i3d import InceptionI3d
from aqa.models.registry import build_model


def fp_batch(b: int, seed: int, frames: bool = False, hw: int = 112) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t1 = torch.randint(20, 40, (b,), generator=g)
    t2 = t1 + torch.randint(25, 45, (b,), generator=g)
    out = {
        "pooled": torch.randn(b, 9, 1024, generator=g).relu().half(),   # the cache holds fp16
        "sve": torch.randn(b, 96, 512, generator=g).relu(),
        "masks": (torch.rand(b, 96, hw, hw, generator=g) > 0.8).float(),
        "score": torch.rand(b, generator=g) * 100,
        "transitions": torch.stack([t1, t2], 1),
    }
    if frames:
        out["frames"] = torch.randint(0, 256, (b, 3, 96, hw, hw), generator=g, dtype=torch.uint8)
    else:
        out["mixed4f"] = torch.randn(b, 9, 832, 4, 7, 7, generator=g).relu().half()
    return out


def kinetics_like(seed: int = 0) -> dict[str, torch.Tensor]:
    """A Kinetics-shaped I3D state dict with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = InceptionI3d()
    sd = net.state_dict()
    for k, v in sd.items():
        if k.endswith("running_mean") or k.endswith(".bias") and "batch3d" in k:
            v.normal_(0, 0.1)
        elif k.endswith("running_var"):
            v.uniform_(0.5, 2.0)
    return sd


def fineparser(seed: int = 0, **cfg) -> torch.nn.Module:
    """build_model("fineparser", **cfg) with its SAP trunk initialised from Kinetics-shaped weights."""
    torch.manual_seed(seed)
    model = build_model("fineparser", **cfg)
    if model.sap is not None:
        model.sap.init_from_kinetics(kinetics_like(seed))
    return model
