"""FineParser's mask loss as the code computes it (../shared/docs/FINEPARSER.md 3).

L_SAP = the sum over SAP's mask outputs (side outputs and the fused one) of
segmentation_models_pytorch's binary FocalLoss on the logits: per pixel l = BCE-with-logits(x, y),
p_t = exp(-l), term = (1 - p_t)^gamma * l, gamma = 2, no alpha, the MEAN over every pixel of every
snippet frame (overlapping snippet frames counted twice, exemplars supervised too). The paper's
eq. 8-9 has an alpha_t and a sum: `alpha` (focal_alpha) multiplies alpha*y + (1-alpha)*(1-y).
The score MSE (both directions) and the transitions' BCE are the host's (`PairwiseModel.loss`,
`aqa.models.psnet.segmentation_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def focal_loss_with_logits(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0,
                           alpha: float | None = None) -> torch.Tensor:
    """Mean binary focal loss of logits against {0, 1} targets of the same number of elements,
    in fp32 outside autocast."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        x = logits.float().reshape(-1)
        y = target.to(x.device).float().reshape(-1)
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
    target (N, L, H, W): a value >= 0.5 is foreground (the code's round())."""
    y = (target.float() >= 0.5).float()
    return sum(focal_loss_with_logits(o, y, gamma=gamma, alpha=alpha) for o in outputs)
