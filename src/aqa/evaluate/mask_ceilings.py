"""What a SAP mask output could score at best, given only its grid and its loss (issue 9; the
probes benchmarks/probe_sap_head.py and probe_sap_ceilings.py; reports/data/stand_in_card.md
"What each tier could reach").

A side output j is one channel on tap j's grid (sap.TAPS: cells of 2x2x2 pixels for tap 1 up to
4x16x16 for tap 4, the T2 head) through a 1->1 transposed conv to 16 x 112 x 112. The best such
map is built from the ground truth itself: its share of foreground per cell (`pool_to_grid`), a
logit per cell, then the model's own upsample, overlapping snippets averaged and the sigmoid, as
`FineParser.predict_masks`. Which logit a cell gets is either a fixed rule (k (2p - 1)) or the
optimum of a per-pixel loss for a cell whose pixels all share one logit (`optimum_logit`: the x
minimising p L(x, 1) + (1 - p) L(x, 0); plain BCE gives logit(p), the focal loss a softer one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aqa.models.sap import TAPS, init_upsample, snippets_to_frames

# the per-pixel losses compared: name -> (gamma, alpha) of the focal loss (gamma 0: BCE)
LOSSES = {"bce": (0.0, None), "focal": (2.0, None), "focal_a0.25": (2.0, 0.25), "focal_a0.75": (2.0, 0.75)}


def cell_size(tap: int) -> tuple[int, int, int]:
    """Pixels (frames, rows, columns) per cell of tap j's grid: its upsample's stride."""
    return tuple(TAPS[tap][3])


def pool_to_grid(target: torch.Tensor, tap: int) -> torch.Tensor:
    """Snippet masks (S, L, H, W) bool or {0, 1} -> each cell's foreground share (S, t, h, w)
    on tap j's grid (average over the cell's pixels)."""
    size = cell_size(tap)
    return F.avg_pool3d(target.float()[:, None], size, size)[:, 0]


def upsampler(tap: int) -> nn.ConvTranspose3d:
    """Tap j's 1 -> 1 transposed conv (upsample_j_) at the model's init: the bilinear kernel."""
    conv = nn.ConvTranspose3d(1, 1, *TAPS[tap][2:], bias=False)
    init_upsample(conv)
    return conv.requires_grad_(False)


def interior_gain(up: nn.ConvTranspose3d, grid: Sequence[int]) -> float:
    """The upsample's output for a constant 1 away from the borders (2: each frame sums two)."""
    ones = up(torch.ones(1, 1, *grid))[0, 0]
    return float(ones[ones.shape[0] // 2, ones.shape[1] // 2, ones.shape[2] // 2])


def expected_loss(x: np.ndarray, p: np.ndarray, gamma: float, alpha: float | None) -> np.ndarray:
    """p L(x, 1) + (1 - p) L(x, 0) for the focal loss of the code (gamma 0: BCE), alpha weighting
    foreground by alpha and background by 1 - alpha (None: no weighting)."""
    log_s, log_1s = -np.logaddexp(0, -x), -np.logaddexp(0, x)   # log sigmoid(x), log(1 - sigmoid(x))
    s = np.exp(log_s)
    a1, a0 = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    return -p * a1 * (1 - s) ** gamma * log_s - (1 - p) * a0 * s ** gamma * log_1s


def optimum_logit(p, gamma: float, alpha: float | None, saturate: float = 10.0) -> np.ndarray:
    """The logit x in [-saturate, saturate] minimising `expected_loss` for each share p: a grid
    search at step 0.01, then 40 golden-section steps inside the best grid point's bracket.
    A pure cell's optimum is at infinity, so p = 0 / 1 gets -saturate / +saturate."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.reshape(-1)
    values, index = np.unique(flat, return_inverse=True)
    grid = np.arange(-saturate, saturate + 1e-9, 0.01)
    best = grid[np.argmin(expected_loss(grid[None, :], values[:, None], gamma, alpha), axis=1)]
    lo, hi = np.maximum(best - 0.01, -saturate), np.minimum(best + 0.01, saturate)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        left = expected_loss(a, values, gamma, alpha) < expected_loss(b, values, gamma, alpha)
        hi, lo = np.where(left, b, hi), np.where(left, lo, a)
    out = (lo + hi) / 2
    out = np.where(values <= 0, -saturate, np.where(values >= 1, saturate, out))
    return out[index].reshape(p.shape)


@torch.no_grad()
def coarse_to_frames(coarse: torch.Tensor, up: nn.ConvTranspose3d, starts: Sequence[int],
                     num_frames: int) -> torch.Tensor:
    """Coarse logits (S, t, h, w) of one dive's snippets -> per-frame probabilities (T, H, W):
    the upsample, frames in two snippets averaged, the sigmoid (FineParser.predict_masks)."""
    fine = up(coarse[:, None].float())[:, 0]                         # (S, L, H, W) logits
    return torch.sigmoid(snippets_to_frames(fine[None], starts, num_frames))[0]
