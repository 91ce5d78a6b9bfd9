"""A faster max-pool where no gradient flows through it (issue 9): SAP's T2 trunk, the frozen
I3D of extract_features and the SVE backbone's 2D twin (aqa.models.sve_backbone).

torch's CPU max_pool3d (with indices) took ~120 ms per (144, 832, 2, 4, 4) pool, three pools per
SAP pass, and ~43 % of extract_features' bfloat16 I3D pass (~0.29 s per pool of 36 snippets). A max over a box is the max of maxes along each axis in turn, and a max is exact, so
the separable version gives the same values bit for bit; it is used only when the input needs no
gradient (the cached Mixed_4f input and what follows it before the first trained layer, and every
pool under no_grad), because the backward of torch's pool routes each gradient to one arg-max
among ties and that choice is torch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aqa.models.i3d import MaxPool3dSame, _same_pads
from aqa.models.sve_backbone import MaxPool2dSame


def _max_along(x: torch.Tensor, dim: int, k: int, s: int, lo: int, hi: int,
               memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Max over windows of k along `dim`, stride s, with lo / hi elements of -inf padding."""
    n = x.shape[dim]
    m = (n + lo + hi - k) // s + 1
    shape = list(x.shape)
    shape[dim] = m
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format).fill_(float("-inf"))
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


class SeparableMaxPool2dSame(MaxPool2dSame):
    """MaxPool2dSame; without a gradient to route, the max along W then H (same values, no padded
    copy). The output keeps the input's memory layout as torch's pool does: oneDNN's bfloat16
    convolutions return channels-last maps, and the next convolution's result depends on the layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return super().forward(x)
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
            else torch.contiguous_format
        for dim, k, s in ((3, self.kernel[1], self.stride[1]), (2, self.kernel[0], self.stride[0])):
            x = _max_along(x, dim, k, s, *_same_pads([x.shape[dim]], (k,), (s,))[0], memory_format=fmt)
        return x


_SEPARABLE = {MaxPool3dSame: SeparableMaxPool3dSame, MaxPool2dSame: SeparableMaxPool2dSame}


def use_separable_pools(module: torch.nn.Module) -> torch.nn.Module:
    """Turn every MaxPool3dSame / MaxPool2dSame under `module` into its separable twin (no state
    to move); returns `module`."""
    for m in module.modules():
        if type(m) in _SEPARABLE:
            m.__class__ = _SEPARABLE[type(m)]
    return module
