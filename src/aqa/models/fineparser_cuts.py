"""FineParser's step cutting (../shared/docs/FINEPARSER.md 2.5): windows of a sequence resampled
to fixed lengths, the I3D-stream windows on the 9-snippet axis and the SVE windows on the 96
frames.

`resample_windows` is the generalisation of `aqa.models.psnet.resample_steps` (the same gather,
F.interpolate's linear / align_corners=True source positions) to arbitrary [start, end) windows
and one target length per window; with the windows [0, b1), [b1, b2), [b2, T) and equal lengths
it equals `resample_steps` (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

I3D_CUTS = ("pair_mean", "own")
SVE_LENGTHS = (36, 60, 48)   # frames per step after the SVE cut (seg_pool_2d)
SVE_MARGIN = 5               # frames added on each side of a step's boundaries (seg_pool_2d)


def resample_windows(x: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor,
                     lengths: Sequence[int]) -> list[torch.Tensor]:
    """x (B, T, ...) and windows [starts, ends) (B, K) long -> K tensors (B, lengths[k], ...).

    Each window is linearly interpolated to its length with align_corners=True (source position
    start + i * (L - 1) / (n - 1)), exactly F.interpolate on x[b, start:end]. A window is clamped
    into [0, T) and kept at least one position long.
    """
    bsz, t = x.shape[:2]
    starts = starts.long().to(x.device).clamp(0, t - 1)
    ends = torch.maximum(ends.long().to(x.device).clamp(max=t), starts + 1)
    rest = x.shape[2:]
    out = []
    for k, n in enumerate(lengths):
        s, e = starts[:, k].float(), ends[:, k].float()            # (B,) in fp32 whatever x's dtype
        scale = (e - s - 1) / (n - 1) if n > 1 else torch.zeros_like(s)
        pos = s[:, None] + scale[:, None] * torch.arange(n, device=x.device, dtype=torch.float32)  # (B, n)
        lo = pos.floor().long()
        hi = torch.minimum(lo + 1, e.long()[:, None] - 1)
        w = (pos - lo.float()).to(x.dtype)
        view = (bsz, n) + (1,) * len(rest)
        expand = (bsz, n) + tuple(rest)
        x_lo = x.gather(1, lo.view(view).expand(expand))
        x_hi = x.gather(1, hi.view(view).expand(expand))
        out.append(x_lo * (1 - w.view(view)) + x_hi * w.view(view))  # (B, n, ...)
    return out


def snippet_cuts(b_self: torch.Tensor, b_other: torch.Tensor | None, mode: str = "pair_mean") -> torch.Tensor:
    """(s1, s2) (B, 2) on the snippet axis from boundaries on the 96 scale.

    pair_mean (the code, helper:106-121): s = floor((b_query + b_exemplar) / 20), the same for
    both videos of a pair; own: s = floor(b / 10), each video at its own boundaries.
    """
    if mode == "pair_mean":
        if b_other is None:
            raise ValueError("i3d_cut 'pair_mean' needs both videos' boundaries")
        return torch.div(b_self.long() + b_other.long(), 20, rounding_mode="floor")
    if mode == "own":
        return torch.div(b_self.long(), 10, rounding_mode="floor")
    raise ValueError(f"i3d_cut must be one of {I3D_CUTS}, got {mode!r}")


def i3d_windows(s: torch.Tensor, num_snippets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(starts, ends) (B, 3) of seg_pool_1d's windows: [0, s1], [s1, s2], [s2 - 1, S - 1]
    (inclusive; step 3 starts one snippet early, as the code). s1, s2 are clamped to the snippets
    (the code would crash on an empty slice instead)."""
    last = num_snippets - 1
    s1 = s[:, 0].clamp(0, last)
    s2 = torch.maximum(s[:, 1], s1).clamp(max=last)
    zero = torch.zeros_like(s1)
    starts = torch.stack([zero, s1, (s2 - 1).clamp(min=0)], 1)
    ends = torch.stack([s1 + 1, s2 + 1, torch.full_like(s1, num_snippets)], 1)
    return starts, ends


def sve_windows(b: torch.Tensor, num_frames: int, margin: int = SVE_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """(starts, ends) (B, 3) of seg_pool_2d's windows on the frames, at the video's own (b1, b2)
    with `margin` frames either side: [0, b1+m), [max(0, b1-m), b2+m), [max(0, b2-m), T)."""
    b1, b2 = b[:, 0].long(), b[:, 1].long()
    zero = torch.zeros_like(b1)
    starts = torch.stack([zero, (b1 - margin).clamp(min=0), (b2 - margin).clamp(min=0)], 1)
    ends = torch.stack([b1 + margin, b2 + margin, torch.full_like(b1, num_frames)], 1).clamp(max=num_frames)
    return starts, ends


def uniform_boundaries(batch_size: int, num_frames: int, device=None) -> torch.Tensor:
    """(B, 2) boundaries cutting the frames into equal thirds: the ablations without TAP (D4)."""
    b = torch.tensor([round(num_frames / 3), round(2 * num_frames / 3)], device=device)
    return b.expand(batch_size, 2).clone()
