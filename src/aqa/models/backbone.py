"""The backbone part of a method: where the per-dive I3D features come from.

`CachedFeatures` passes the features of the feature cache through (frozen I3D, computed once by
`extract_features`). A backbone that computes them from frames (a fine-tuned I3D) only needs the
same `forward(batch) -> (pooled, maps)`, so the methods stay unchanged when it is swapped in.
"""

from __future__ import annotations

import torch
from torch import nn


class CachedFeatures(nn.Module):
    """batch["pooled"] (B, 9, 1024) and batch["maps"] (B, 9, 1024, H, W), as float32."""

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = batch["pooled"].float()  # (B, 9, 1024); the cache may hold fp16
        maps = batch.get("maps")
        return pooled, (None if maps is None else maps.float())  # (B, 9, 1024, H, W)
