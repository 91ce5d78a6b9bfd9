"""A faster max-pool where no gradient flows through it (issue 9): SAP's T2 trunk and the frozen
I3D of extract_features.

torch's CPU max_pool3d (with indices) took ~120 ms per (144, 832, 2, 4, 4) pool, three pools per
SAP pass, and ~43 % of extract_features' bfloat16 I3D pass (~0.29 s a pool of 36 snippets).
A max over a box is the max of maxes along each axis in turn, and a max is exact, so the
separable version gives the same values bit for bit; it is used only when the input needs no
gradient (the cached Mixed_4f input and what follows it before the first trained layer, and every
pool under no_grad), because the backward of torch's pool routes each gradient to one arg-max
among ties and that choice is torch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aqa.models.i3d import MaxPool3dSame, _same_pads


def _max_along(x: torch.Tensor, dim: int, k: int, s: int, lo: int, hi: int) -> torch.Tensor:
    """Max over windows of k along `dim`, stride s, with lo / hi elements of -inf padding."""
    n = x.shape[dim]
    m = (n + lo + hi - k) // s + 1
    shape = list(x.shape)
    shape[dim] = m
    out = x.new_full(shape, float("-inf"))
    for j in range(k):                     # window i reads input i*s + j - lo
        i0 = max(0, -((j - lo) // s))      # first i with i*s + j - lo >= 0
        i1 = min(m - 1, (n - 1 + lo - j) // s)
        if i1 < i0:
            continue
        src = [slice(None)] * x.dim()
        dst = [slice(None)] * x.dim()
        start = i0 * s + j - lo
        src[dim] = slice(start, start + (i1 - i0) * s + 1, s)
        dst[dim] = slice(i0, i1 + 1)
        view = out[tuple(dst)]
        torch.maximum(view, x[tuple(src)], out=view)
    return out


class SeparableMaxPool3dSame(MaxPool3dSame):
    """MaxPool3dSame; without a gradient to route, the max along T, H and W in turn (same values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return super().forward(x)
        for dim, (k, s, (lo, hi)) in zip((4, 3, 2), reversed(list(zip(
                self.kernel, self.stride, _same_pads(x.shape[2:], self.kernel, self.stride))))):
            x = _max_along(x, dim, k, s, lo, hi)
        return x


def use_separable_pools(module: torch.nn.Module) -> torch.nn.Module:
    """Turn every MaxPool3dSame under `module` into a SeparableMaxPool3dSame (no state to move);
    returns `module`."""
    for m in module.modules():
        if type(m) is MaxPool3dSame:
            m.__class__ = SeparableMaxPool3dSame
    return module
