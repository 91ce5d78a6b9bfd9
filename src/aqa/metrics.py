"""Evaluation metrics, computed exactly as the reference code does (PAPERS.md section 6).

- Spearman's rho: ``scipy.stats.spearmanr(pred, true)``, computed as it computes it (`spearman_rho`)
  without importing scipy.stats (~0.5 s of every train / evaluate process's start).
- R-l2: the SQUARED error relative to the ground-truth range of the evaluated split,
  ``mean(((pred - true) / (true.max() - true.min()))**2)``; tables print it x100.
- L2: ``mean((pred - true)**2)``.
- AIoU@d: the two transitions of a dive form one interval [t1, t2]; IoU with the predicted
  interval without +1 on lengths and with an epsilon in the denominator (the reference's
  ``segment_iou``); the fraction of dives with IoU >= d.
"""

from __future__ import annotations

import sys
import warnings
from typing import Sequence

import numpy as np


def _vector(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def regression_metrics(pred, true) -> dict[str, float]:
    """Spearman rho, relative L2 (not x100) and L2 of score predictions against ground truth.

    rho is nan when either input is constant (Spearman is undefined there); rl2 is nan when the
    ground truth has no range. Neither raises: a collapsed model is a result, not a crash.
    """
    pred, true = _vector(pred, "pred"), _vector(true, "true")
    if pred.shape != true.shape:
        raise ValueError(f"pred and true differ in length: {pred.size} vs {true.size}")
    err = pred - true
    span = true.max() - true.min()
    if pred.size < 2 or np.ptp(pred) == 0 or span == 0:
        rho = float("nan")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearman_rho(pred, true)
    rl2 = float(np.mean((err / span) ** 2)) if span > 0 else float("nan")
    return {"rho": rho, "rl2": rl2, "l2": float(np.mean(err**2))}


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N of a 1-d array, ties sharing their mean rank (scipy.stats.rankdata's 'average');
    exact in float64 (whole or half numbers), so any correct computation gives the same values."""
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]        # the first of each run of equal values
    dense = np.empty(x.size, dtype=np.intp)
    dense[order] = np.cumsum(first)                          # 1-based index of each value's run
    bounds = np.r_[np.nonzero(first)[0], x.size]             # where each run starts, then N
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """scipy.stats.spearmanr(a, b)[0] for two 1-d float64 arrays, by its own steps: the columns'
    average ranks, then np.corrcoef of the (N, 2) ranks (bit for bit: tests/unit/test_metrics.py);
    nan when either holds a nan (its nan_policy 'propagate'). The caller handles constant inputs."""
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    ranked = np.column_stack((average_ranks(a), average_ranks(b)))
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def segment_iou(pred_t, true_t) -> np.ndarray:
    """IoU of the intervals [t1, t2] per dive, shape (N,); inputs (N, 2) or (2,).

    inter = max(0, min(t2, t2') - max(t1, t1')); union = (t2 - t1) + (t2' - t1') - inter;
    IoU = inter / (union + float eps), as the reference (so two identical points give 0).
    """
    pred = np.asarray(pred_t, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true_t, dtype=np.float64).reshape(-1, 2)
    if pred.shape != true.shape:
        raise ValueError(f"pred_t and true_t differ in shape: {pred.shape} vs {true.shape}")
    inter = np.clip(np.minimum(pred[:, 1], true[:, 1]) - np.maximum(pred[:, 0], true[:, 0]), 0, None)
    union = (pred[:, 1] - pred[:, 0]) + (true[:, 1] - true[:, 0]) - inter
    return inter / (union + sys.float_info.epsilon)


def aiou(pred_t, true_t, thresholds: Sequence[float] = (0.5, 0.75)) -> dict[float, float]:
    """Fraction of dives whose transition interval IoU reaches each threshold (AIoU@d)."""
    iou = segment_iou(pred_t, true_t)
    if iou.size == 0:
        raise ValueError("aiou of zero dives")
    return {float(d): float(np.mean(iou >= d)) for d in thresholds}
