"""Direct prediction: the scoring of the methods that are not pairwise (I3D+MLP, USDL, MUSDL).

A direct model scores a dive from that dive alone (`model.predict(model(batch))`, no exemplar,
no voting; aqa.models.direct), so its evaluation is one forward pass per batch of dives in
eval mode, and the metrics are the same as the voted methods' (rho, R-l2, L2 on the same
rows). The per-epoch evaluation in training and the evaluate stage both score through here.
"""

from __future__ import annotations

import numpy as np
import torch

from aqa.evaluate.voting import _eval_mode, autocast_for
from aqa.train.data import DiveData, uses_maps


def is_pairwise(model: torch.nn.Module) -> bool:
    """True for models scored by exemplar voting (encode / compare), False for direct ones."""
    return bool(getattr(model, "pairwise", True))


@torch.no_grad()
def predict_rows(model: torch.nn.Module, data: DiveData, rows: np.ndarray, *, batch_size: int,
                 amp: bool = False) -> np.ndarray:
    """The predicted scores (N,) float64 of data rows `rows` (view 0), `batch_size` dives per call,
    in eval mode. A dive's prediction does not depend on its batch."""
    if is_pairwise(model):
        raise TypeError(f"{getattr(model, 'method', type(model).__name__)} is pairwise: score it by voting "
                        "(aqa.evaluate.voting)")
    rows = np.asarray(rows, dtype=np.int64)
    maps = uses_maps(model)
    parts = []
    chunks = [rows[start:start + batch_size] for start in range(0, rows.size, batch_size)]
    with _eval_mode(model):
        for (batch,) in data.fetch((data.request(c, with_maps=maps),) for c in chunks):
            with autocast_for(data.device, amp):
                out = model(batch)
            parts.append(model.predict(out).float().cpu().numpy())   # (b,)
    return np.concatenate(parts).astype(np.float64) if parts else np.empty(0)


def prediction_metrics(pred: np.ndarray, data: DiveData, rows: np.ndarray) -> dict[str, float]:
    """rho, rl2, l2 of predictions `pred` (N,) for data rows `rows` (N,): the voted methods' metrics."""
    from aqa.metrics import regression_metrics

    true = data.score[torch.as_tensor(np.asarray(rows), device=data.device)].cpu().numpy()
    return {k: float(v) for k, v in regression_metrics(pred, true).items()}
