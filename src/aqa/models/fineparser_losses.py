"""FineParser's mask loss as the code computes it (../shared/docs/FINEPARSER.md 3).

L_SAP = the sum over SAP's mask outputs (side outputs and the fused one) of
segmentation_models_pytorch's binary FocalLoss on the logits: per pixel l = BCE-with-logits(x, y),
p_t = exp(-l), term = (1 - p_t)^gamma * l, gamma = 2, no alpha, the MEAN over every pixel of every
snippet frame (overlapping snippet frames counted twice, exemplars supervised too). The paper's
eq. 8-9 has an alpha_t and a sum: `alpha` (focal_alpha) multiplies alpha*y + (1-alpha)*(1-y).
The score MSE (both directions) and the transitions' BCE are the host's (`PairwiseModel.loss`,
`aqa.models.psnet.segmentation_loss`).

Speed (issue 9): the loss runs over 2B x 9 x 16 x 112 x 112 = 29 M pixels per step. Autograd of
the direct formula keeps ~8 full-size float tensors alive and walks them ~15 times; the fused
`FocalWithLogits` computes each chunk's loss terms and their gradient in one pass over cache-sized
pieces, against a bool target, and keeps only the gradient. Same per-pixel formula (the same
torch ops for the terms); the sum and the gradient's order of operations differ, so the results
agree with `focal_loss_reference` within float rounding (tests/unit/models/test_fineparser_losses.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

CHUNK = 1 << 18   # pixels per pass: 1 MB of float32, so each chunk's temporaries stay in cache


def _terms(x: torch.Tensor, y: torch.Tensor, gamma: float, alpha: float | None, want_grad: bool):
    """(sum of the focal terms in float64, d term / d x or None) of one chunk; y float {0, 1}."""
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    pt = torch.exp(-bce)
    one_m = 1.0 - pt
    mod = one_m.pow(gamma)
    term = mod * bce
    w = alpha * y + (1.0 - alpha) * (1.0 - y) if alpha is not None else None
    if w is not None:
        term.mul_(w)
    total = term.sum(dtype=torch.float64)
    if not want_grad:
        return total, None
    # d term / d bce = (1-p_t)^g + g (1-p_t)^(g-1) p_t bce  (d p_t / d bce = -p_t); d bce / d x = sigmoid(x) - y
    dbce = one_m.pow(gamma - 1.0).mul_(pt).mul_(bce).mul_(gamma).add_(mod) if gamma != 0 else torch.ones_like(x)
    grad = torch.sigmoid(x).sub_(y).mul_(dbce)
    if w is not None:
        grad.mul_(w)
    return total, grad


class FocalWithLogits(torch.autograd.Function):
    """Mean focal loss of flat float logits x against a flat bool target y, loss and gradient in
    one chunked pass (the gradient is kept for backward instead of autograd's intermediates)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, gamma: float, alpha: float | None) -> torch.Tensor:
        want_grad = ctx.needs_input_grad[0]
        grad = torch.empty_like(x) if want_grad else None
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        n = x.numel()
        for s in range(0, n, CHUNK):
            t, g = _terms(x[s:s + CHUNK], y[s:s + CHUNK].to(x.dtype), gamma, alpha, want_grad)
            total += t
            if g is not None:
                grad[s:s + CHUNK] = g
        if grad is not None:
            grad.div_(n)
            ctx.save_for_backward(grad)
        return (total / n).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None


def binary_target(target: torch.Tensor) -> torch.Tensor:
    """A bool target as is; a float one binarised at 0.5 (the code's round())."""
    return target if target.dtype == torch.bool else target.float() >= 0.5


def focal_loss_with_logits(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0,
                           alpha: float | None = None) -> torch.Tensor:
    """Mean binary focal loss of logits against {0, 1} targets (bool, or float binarised at 0.5)
    of the same number of elements, in fp32 outside autocast (the fused pass)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        x = logits.float().reshape(-1).contiguous()
        y = binary_target(target.to(x.device)).reshape(-1).contiguous()
        if x.numel() != y.numel():
            raise ValueError(f"focal loss: {x.numel()} logits for {y.numel()} targets")
        return FocalWithLogits.apply(x, y, float(gamma), None if alpha is None else float(alpha))


def focal_loss_reference(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0,
                         alpha: float | None = None) -> torch.Tensor:
    """The direct formula under autograd (the fused pass's reference in the tests and benchmark)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        x = logits.float().reshape(-1)
        y = binary_target(target.to(x.device)).float().reshape(-1)
        if x.numel() != y.numel():
            raise ValueError(f"focal loss: {x.numel()} logits for {y.numel()} targets")
        bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        loss = (1.0 - torch.exp(-bce)).pow(gamma) * bce
        if alpha is not None:
            loss = loss * (alpha * y + (1.0 - alpha) * (1.0 - y))
        return loss.mean()


def mask_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor, *, gamma: float = 2.0,
              alpha: float | None = None) -> torch.Tensor:
    """Sum over SAP's outputs [(N, 1, L, H, W), ...] of the focal loss against the binarised
    target (N, L, H, W): bool, or float where a value >= 0.5 is foreground (the code's round())."""
    y = binary_target(target)
    return sum(focal_loss_with_logits(o, y, gamma=gamma, alpha=alpha) for o in outputs)
