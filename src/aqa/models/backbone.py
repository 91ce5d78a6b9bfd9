"""The backbone part of a method: where the per-dive I3D features come from.

Every method reads its features through `model.backbone(batch) -> (pooled (B, S, 1024),
maps (B, S, 1024, h, w) | None)`, so one model class serves both backbones (train.backbone):

- `CachedFeatures` (cached): passes the feature cache's tensors through (I3D frozen, computed
  once by `extract_features`).
- `FinetunedI3D` (finetune): computes the same tensors from the batch's frames with an I3D that
  is part of the model and trains with it, as the authors' code does: the frames are cut into
  the protocol's snippets, normalised and run through I3D; pooled = the global mean of Mixed_5c,
  maps = Mixed_5c averaged over time (what the cache stores, `aqa.features.extract`).
  BatchNorm layers stay in eval mode (running statistics frozen, `fix_bn` of the reference);
  their affine parameters train (the scale, a fixed buffer of ones in the Kinetics network,
  becomes a parameter here, as in the reference's PyTorch port where it is one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


class CachedFeatures(nn.Module):
    """batch["pooled"] (B, 9, 1024) and batch["maps"] (B, 9, 1024, H, W), as float32."""

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = batch["pooled"].float()  # (B, 9, 1024); the cache may hold fp16
        maps = batch.get("maps")
        return pooled, (None if maps is None else maps.float())  # (B, 9, 1024, H, W)


class FinetunedI3D(nn.Module):
    """batch["frames"] (B, 3, T, H, W) uint8 -> (pooled (B, S, 1024), maps (B, S, 1024, h, w)).

    `snippet_starts` / `snippet_length`: the snippets cut from the T sampled frames (the
    protocol's 9 x 16 at 0, 10, ..., 80); `normalization`: as `aqa.features.transforms.normalize`.
    `state_dict`: verified Kinetics weights (`load_verified_weights`), or None when a checkpoint's
    weights replace them right after. `channels_last`: run I3D in channels_last_3d memory layout;
    `compile`: run I3D's feature pass through torch.compile (options, docs/TRAINING.md).
    """

    def __init__(self, *, snippet_starts: Sequence[int], snippet_length: int, normalization: str,
                 state_dict: Mapping[str, torch.Tensor] | None = None, channels_last: bool = False,
                 compile: bool = False):
        super().__init__()
        from aqa.models.i3d import InceptionI3d

        self.snippet_starts = tuple(int(s) for s in snippet_starts)
        self.snippet_length = int(snippet_length)
        self.normalization = normalization
        self.channels_last = channels_last
        self.i3d = InceptionI3d(num_classes=400)
        if state_dict is not None:
            self.i3d.load_state_dict(state_dict, strict=True)
        trainable_bn_scale(self.i3d)
        # the Kinetics logits layer is never used for features: no gradient ever reaches it (also
        # what DistributedDataParallel needs, which refuses parameters without gradients)
        self.i3d.conv3d_0c_1x1.requires_grad_(False)
        if channels_last:
            self.i3d.to(memory_format=torch.channels_last_3d)
        # a compiled function, not a wrapped module: the state dict keeps I3D's own names
        self._features = torch.compile(self.i3d.features) if compile else self.i3d.features

    def train(self, mode: bool = True) -> "FinetunedI3D":
        """Train everything but BatchNorm, whose running statistics stay frozen (the reference's fix_bn)."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        from aqa.features.transforms import normalize

        frames = batch["frames"]                          # (B, 3, T, H, W) uint8
        b = frames.shape[0]
        clips = torch.stack([frames[:, :, s:s + self.snippet_length] for s in self.snippet_starts], 1)
        x = normalize(clips.flatten(0, 1), self.normalization)   # (B*S, 3, L, H, W) float32
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        pooled, fmap = self._features(x)                  # (B*S, 1024), (B*S, 1024, T', h, w)
        maps = fmap.mean(dim=2)                           # (B*S, 1024, h, w): time-averaged, as the cache
        s = len(self.snippet_starts)
        return pooled.view(b, s, -1), maps.reshape(b, s, *maps.shape[1:])


def trainable_bn_scale(module: nn.Module) -> None:
    """Turn BatchNorm scales kept as buffers (the Kinetics I3D has none learnt) into parameters
    with the same values and names, so that they train like the reference's; state dicts are unchanged."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and "weight" in m._buffers:
            weight = m._buffers.pop("weight")
            m.weight = nn.Parameter(weight.detach().clone())


def frozen_bn_statistics(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every BatchNorm running statistic of `module` (for checks that they never move)."""
    return {f"{name}.{key}": buf.detach().clone() for name, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for key, buf in m.named_buffers(recurse=False) if buf is not None}
