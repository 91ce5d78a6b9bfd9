"""Methods that score a dive on its own, without exemplars: the direct-prediction interface and
I3D+MLP, the plain regressor (docs/METHODS.md, "Direct methods").

A direct model is called on ONE dive batch (the dict `DiveData.batch` makes) and has no
encode / compare:

    out = model(batch)                      # dict of per-dive tensors, out["score"] (B,)
    total, parts = model.loss(out, batch)   # scalar tensor, {name: float}
    scores = model.predict(out)             # (B,) predicted dive scores, float32

`model.pairwise` is False (pairwise models have True), so a host tells the two paths apart
without knowing the method. Batch keys beyond the pairwise ones: `difficulty (B,)` float for the
methods that use the degree of difficulty, `judges (B, J)` float (NaN-padded) and
`num_judges (B,)` long for MUSDL; a method that needs a missing key names it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aqa.models.backbone import CachedFeatures
from aqa.models.regressors import ScoreMLP


def batch_field(batch: dict, key: str, method: str, shape: str) -> torch.Tensor:
    """batch[key], or a KeyError saying which method needs it and what it holds."""
    try:
        return batch[key]
    except KeyError:
        raise KeyError(f"{method} needs batch[{key!r}] {shape}; the host's DiveData.batch must "
                       f"carry it (dives.parquet column)") from None


def difficulty_of(batch: dict, method: str, device: torch.device) -> torch.Tensor:
    """The dives' degree of difficulty (B,) float32, checked positive (it divides scores)."""
    dd = batch_field(batch, "difficulty", method, "(B,) float: the degree of difficulty")
    dd = dd.to(device).float()
    if not bool((dd > 0).all()):
        raise ValueError(f"{method}: degree of difficulty must be > 0, got {dd.min().item()}")
    return dd


def video_feature(pooled: torch.Tensor) -> torch.Tensor:
    """The video-level feature: mean of the snippet features, (B, T, 1024) -> (B, 1024).

    Every baseline reads this (the sources average their 10 clip features; the cache holds 9)."""
    return pooled.mean(1)


def fp32(device: torch.device):
    """Losses in float32 outside autocast (AMP-safe, as the segmentation loss)."""
    return torch.autocast(device_type=device.type, enabled=False)


class DirectModel(nn.Module):
    """Base of the methods without exemplars: forward(batch) -> out, loss(out, batch), predict(out)."""

    pairwise = False

    def __init__(self):
        super().__init__()
        self.backbone = CachedFeatures()

    def features(self, batch: dict) -> torch.Tensor:
        pooled, _ = self.backbone(batch)  # (B, T, 1024), maps unused
        return video_feature(pooled)      # (B, 1024)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, out: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def predict(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The predicted dive scores (B,), float32, detached from the graph."""
        return out["score"].detach().float()


# --------------------------------------------------------------------------- I3D+MLP


@dataclass
class I3DMLPConfig:
    feature_dim: int = 1024
    hidden: tuple[int, ...] = (256, 128)   # USDL's head sizes with one output (BASELINES 2b)
    use_dd: bool = False                   # True: regress y / DD and multiply by DD (w/ DD reading)


class I3DMLPModel(DirectModel):
    """Clip-mean I3D feature -> MLP -> score, MSE on the raw score (or on y / DD with use_dd)."""

    def __init__(self, cfg: I3DMLPConfig = I3DMLPConfig()):
        super().__init__()
        self.cfg = cfg
        self.mlp = ScoreMLP(cfg.feature_dim, cfg.hidden, 1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        value = self.mlp(self.features(batch)).squeeze(-1)  # (B,) score, or y / DD
        if not self.cfg.use_dd:
            return {"value": value, "score": value}
        return {"value": value, "score": value * difficulty_of(batch, "i3d_mlp", value.device)}

    def loss(self, out: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        value = out["value"]
        target = batch["score"].to(value.device).float()
        if self.cfg.use_dd:
            target = target / difficulty_of(batch, "i3d_mlp", value.device)
        with fp32(value.device):
            mse = F.mse_loss(value.float(), target)
        return mse, {"mse": float(mse.detach())}
