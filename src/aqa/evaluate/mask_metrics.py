"""Mask metrics of FineParser's Table 1 / 3 / 4 (MAE, F-beta, S-measure), vectorised over frames,
and the public code's IoU / F1 / F2 (FINEPARSER.md 5.3-5.4, decision D3; docs/METHODS.md "Mask
metrics").

Every per-frame function takes predicted maps `pred` (N, H, W) float in [0, 1] and ground truth
`gt` (N, H, W) bool, and returns (N,) values; the formulas are the saliency toolkit's
(pysodmetrics 1.6.2, the test oracle), so an S-measure or F-beta here is the number a SOD paper
would print for the same maps:
- MAE = mean |pred - gt| per frame.
- F-beta with beta^2 = 0.3: F = (1 + b2) P R / (b2 P + R) on a binarised map. `adaptive_fbeta`
  binarises at min(2 mean(pred), 1) (Achanta 2009; a frame without foreground, or with no hit,
  scores 0); `fbeta_curve` at the 256 thresholds k / 255 of the map quantised to uint8 (for the
  max-F and mean-F over thresholds, taken on the curve averaged over frames and dives).
- S-measure (Fan 2017) with alpha = 0.5: object term + region term (4 blocks split at the ground
  truth's rounded centroid, area-weighted SSIM), 1 - mean(pred) on an empty ground truth,
  mean(pred) on a full one. A block without pixels (centroid on the last row / column) adds 0
  where the toolkit gives nan.
`minmax` rescales each frame's map to [0, 1] when it is not constant (the toolkit's
normalisation of a saved map; the paper's "normalised saliency map").

Averaging (D3): per frame, then the mean over a dive's frames, then the mean over dives. The
code's binary scores are micro over a dive's frames (tp, fp, fn summed, as smp's
`reduction="micro"` over one pair's frames), then averaged over dives; a dive without any
positive or foreground pixel scores 1 (smp's zero_division default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BETA2 = 0.3                 # F-beta's beta^2 (the SOD convention for "beta = 0.3")
ALPHA = 0.5                 # S-measure's object / region balance
EPS = np.spacing(1)         # the toolkit's epsilon (MATLAB's eps)
THRESHOLDS = 256            # F-beta curve: thresholds 0..255 on the uint8-quantised map
CODE_LOGIT_THRESHOLD = 0.5  # the public code thresholds the fused LOGITS at 0.5 (p >= 0.6225), FINEPARSER.md 5.3


def _inputs(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt)
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be (N, H, W)")
    if gt.dtype != bool:
        raise ValueError(f"gt must be bool masks, got {gt.dtype}")
    if pred.size and (pred.min() < 0 or pred.max() > 1):
        raise ValueError(f"pred must lie in [0, 1], got [{pred.min()}, {pred.max()}]")
    return pred, gt


def minmax(pred) -> np.ndarray:
    """Each frame's map rescaled to [0, 1] (unchanged when constant): (N, H, W) float64."""
    pred = np.asarray(pred, dtype=np.float64)
    lo = pred.min(axis=(-2, -1), keepdims=True)
    hi = pred.max(axis=(-2, -1), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, (pred - lo) / span, pred)


def mae(pred, gt) -> np.ndarray:
    pred, gt = _inputs(pred, gt)
    return np.abs(pred - gt).mean(axis=(1, 2))


def _fbeta(tp, positives, foreground, beta2: float) -> np.ndarray:
    precision = tp / np.where(positives == 0, 1, positives)
    recall = tp / np.maximum(foreground, 1)
    num = (1 + beta2) * precision * recall
    return num / np.where(num == 0, 1, beta2 * precision + recall)


def adaptive_fbeta(pred, gt, beta2: float = BETA2) -> np.ndarray:
    """F-beta per frame at the adaptive threshold min(2 mean(pred), 1)."""
    pred, gt = _inputs(pred, gt)
    threshold = np.minimum(2 * pred.mean(axis=(1, 2)), 1.0)
    positive = pred >= threshold[:, None, None]
    tp = (positive & gt).sum(axis=(1, 2))
    return np.where(tp == 0, 0.0, _fbeta(tp, positive.sum(axis=(1, 2)), gt.sum(axis=(1, 2)), beta2))


def fbeta_curve(pred, gt, beta2: float = BETA2) -> np.ndarray:
    """F-beta per frame and threshold: (N, 256), column k = the map quantised to uint8 and
    binarised at >= k."""
    pred, gt = _inputs(pred, gt)
    n = pred.shape[0]
    level = (pred * 255).astype(np.uint8).astype(np.int64) + THRESHOLDS * np.arange(n)[:, None, None]
    fg = np.bincount(level[gt], minlength=n * THRESHOLDS).reshape(n, THRESHOLDS)
    bg = np.bincount(level[~gt], minlength=n * THRESHOLDS).reshape(n, THRESHOLDS)
    tp = np.cumsum(fg[:, ::-1], axis=1)[:, ::-1]          # pixels >= k inside the foreground
    positives = tp + np.cumsum(bg[:, ::-1], axis=1)[:, ::-1]
    return _fbeta(tp, positives, gt.sum(axis=(1, 2))[:, None], beta2)


def _region_stats(values: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: pixel count, mean and sample std (N - 1; 0 for one pixel) of `values` in `region`."""
    count = region.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(region, values, 0).sum(axis=(1, 2)) / count
        sq = np.where(region, (values - mean[:, None, None]) ** 2, 0).sum(axis=(1, 2))
        std = np.where(count > 1, np.sqrt(sq / (count - 1)), 0.0)
    return count, mean, std


def _object_score(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    _, mean, std = _region_stats(values, region)
    return 2 * mean / (mean ** 2 + 1 + std + EPS)


def _region_score(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    n, h, w = gt.shape
    count = gt.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.where(count > 0, np.round(gt.sum(axis=2) @ np.arange(h) / count), np.round(h / 2))
        cx = np.where(count > 0, np.round(gt.sum(axis=1) @ np.arange(w) / count), np.round(w / 2))
    cy, cx = cy.astype(np.int64) + 1, cx.astype(np.int64) + 1  # the toolkit's (MATLAB) split: rows < cy on top
    block = (2 * (np.arange(h)[None, :, None] >= cy[:, None, None])
             + (np.arange(w)[None, None, :] >= cx[:, None, None]))             # 0 lt, 1 rt, 2 lb, 3 rb
    index = (block + 4 * np.arange(n)[:, None, None]).ravel()
    size = np.bincount(index, minlength=4 * n).astype(np.float64)
    x, y = pred.ravel(), gt.ravel().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(index, weights=x, minlength=4 * n) / size
        my = np.bincount(index, weights=y, minlength=4 * n) / size
        dx, dy = x - mx[index], y - my[index]
        sxx = np.bincount(index, weights=dx * dx, minlength=4 * n) / (size - 1 + EPS)
        syy = np.bincount(index, weights=dy * dy, minlength=4 * n) / (size - 1 + EPS)
        sxy = np.bincount(index, weights=dx * dy, minlength=4 * n) / (size - 1 + EPS)
        a = 4 * mx * my * sxy
        b = (mx ** 2 + my ** 2) * (sxx + syy)
        ssim = np.where(a != 0, a / (b + EPS), np.where(b == 0, 1.0, 0.0))
    ssim = np.where(size > 0, ssim, 0.0).reshape(n, 4)
    area = h * w
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    weights = np.stack([w_lt, w_rt, w_lb, 1 - w_lt - w_rt - w_lb], axis=1)
    return (ssim * weights).sum(axis=1)


def smeasure(pred, gt, alpha: float = ALPHA) -> np.ndarray:
    """S-measure per frame (object + region structure similarity)."""
    pred, gt = _inputs(pred, gt)
    y = gt.mean(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        obj = _object_score(pred, gt) * y + _object_score(1 - pred, ~gt) * (1 - y)
    score = np.maximum(0, alpha * obj + (1 - alpha) * _region_score(pred, gt))
    mean_pred = pred.mean(axis=(1, 2))
    return np.where(y == 0, 1 - mean_pred, np.where(y == 1, mean_pred, score))


def confusion(positive, gt) -> np.ndarray:
    """tp, fp, fn per frame of binary predictions: (N, 3) int64."""
    positive, gt = np.asarray(positive, dtype=bool), np.asarray(gt, dtype=bool)
    if positive.shape != gt.shape:
        raise ValueError(f"positive {positive.shape} and gt {gt.shape} differ")
    axes = tuple(range(1, gt.ndim))
    return np.stack([(positive & gt).sum(axis=axes), (positive & ~gt).sum(axis=axes),
                     (~positive & gt).sum(axis=axes)], axis=-1).astype(np.int64)


def code_positive(logits) -> np.ndarray:
    """The public code's binary prediction: fused logit >= 0.5 (smp get_stats, threshold 0.5)."""
    return np.asarray(logits) >= CODE_LOGIT_THRESHOLD


# ----------------------------------------------------------------------------- per dive, over dives


@dataclass(frozen=True)
class DiveMaskScores:
    """One dive's frame means and the sums the binary scores need."""

    frames: int
    mae: float
    fbeta_adaptive: float
    fbeta_curve: np.ndarray    # (256,) mean over the dive's frames
    smeasure: float
    confusion: np.ndarray      # (3,) tp, fp, fn summed over the frames


def dive_scores(pred, gt, positive=None, *, normalize: bool = True) -> DiveMaskScores:
    """Scores of one dive's frames: `pred` (T, H, W) maps in [0, 1] (sigmoid of SAP's fused
    logits), `gt` (T, H, W) bool, `positive` the binary prediction for the code's scores (default:
    pred >= sigmoid(0.5), the code's logit rule on probabilities, before any normalisation).
    `normalize`: per-frame min-max first (default: the toolkit's path, the paper's "normalised
    saliency map"; binary and constant maps are unchanged by it)."""
    pred, gt = _inputs(pred, gt)
    if positive is None:
        positive = pred >= 1 / (1 + np.exp(-CODE_LOGIT_THRESHOLD))
    if normalize:
        pred = minmax(pred)
    return DiveMaskScores(frames=int(pred.shape[0]), mae=float(mae(pred, gt).mean()),
                          fbeta_adaptive=float(adaptive_fbeta(pred, gt).mean()),
                          fbeta_curve=fbeta_curve(pred, gt).mean(axis=0), smeasure=float(smeasure(pred, gt).mean()),
                          confusion=confusion(positive, gt).sum(axis=0))


def _micro(confusion_sums: np.ndarray, beta2: float) -> float:
    tp, fp, fn = (float(v) for v in confusion_sums)
    den = (1 + beta2) * tp + beta2 * fn + fp
    return 1.0 if den == 0 else (1 + beta2) * tp / den


def summarise(dives: Sequence[DiveMaskScores]) -> dict[str, float]:
    """The mean over dives of each dive's frame mean; max-F / mean-F on the averaged curve; the
    code's IoU, F1, F2 (micro per dive, then the mean over dives)."""
    if not dives:
        raise ValueError("no dives to summarise")
    curve = np.mean([d.fbeta_curve for d in dives], axis=0)
    out = {"mae": float(np.mean([d.mae for d in dives])),
           "fbeta_adaptive": float(np.mean([d.fbeta_adaptive for d in dives])),
           "fbeta_max": float(curve.max()), "fbeta_mean": float(curve.mean()),
           "smeasure": float(np.mean([d.smeasure for d in dives]))}
    for name, beta2 in (("f1", 1.0), ("f2", 4.0)):
        out[name] = float(np.mean([_micro(d.confusion, beta2) for d in dives]))
    out["iou"] = float(np.mean([_iou(d.confusion) for d in dives]))
    out["dives"], out["frames"] = len(dives), int(sum(d.frames for d in dives))
    return out


def _iou(confusion_sums: np.ndarray) -> float:
    tp, fp, fn = (float(v) for v in confusion_sums)
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)
