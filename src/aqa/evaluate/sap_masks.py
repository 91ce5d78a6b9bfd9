"""FineParser's mask metrics in the evaluate stage and the training's per-epoch test (issue 9
item 5; decision D3 in docs/METHODS.md "Mask metrics"): SAP's predicted masks of the TEST queries
(`model.predict_masks`, view 0 = the centre crop) against their ground-truth protocol masks (the
batch's `masks`), scored by aqa.evaluate.mask_metrics per frame, per dive, over dives.

Flat keys in a protocol block (helper D's tables read them): mask_mae, mask_fbeta (the adaptive
F, the main number), mask_fbeta_max, mask_smeasure; and the code's binary scores mask_iou,
mask_f1, mask_f2 (fused logit >= 0.5, for comparability with the public code's logs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from aqa.errors import AqaError
from aqa.evaluate import mask_metrics as M

# summary key of aqa.evaluate.mask_metrics.summarise -> the metrics JSON's flat key
KEYS = {"mae": "mask_mae", "fbeta_adaptive": "mask_fbeta", "fbeta_max": "mask_fbeta_max",
        "smeasure": "mask_smeasure", "iou": "mask_iou", "f1": "mask_f1", "f2": "mask_f2"}
# the paper protocol's direction of each (best over epochs, as aqa.evaluate.run.BEST)
BEST = {"mask_mae": min, "mask_fbeta": max, "mask_fbeta_max": max, "mask_smeasure": max,
        "mask_iou": max, "mask_f1": max, "mask_f2": max}


class MaskFramesError(AqaError):
    """The evaluation of a model with a SAP without the frames its references and overlays read."""


def predicts_masks(model: torch.nn.Module) -> bool:
    """True for a model with a SAP (FineParser, every ablation but Table 3's B, C, D) on a dataset
    with masks (its `mask_loss`; MTL-AQA has none to score against)."""
    return (callable(getattr(model, "predict_masks", None)) and getattr(model, "sap", None) is not None
            and bool(getattr(model.cfg, "mask_loss", True)))


def config_predicts_masks(method: str, model_kwargs: dict[str, Any]) -> bool:
    """`predicts_masks` of the model `build_model(method, **model_kwargs)` would make, without building it."""
    if method != "fineparser":
        return False
    from aqa.models.registry import make_config

    cfg = make_config(method, **model_kwargs)
    return bool(cfg.use_sap and cfg.mask_loss)


def flat(summary: dict[str, float]) -> dict[str, float]:
    """mask_metrics.summarise's keys as the metrics JSON's flat keys."""
    return {KEYS[k]: float(v) for k, v in summary.items() if k in KEYS}


@torch.no_grad()
def predicted_masks(model: torch.nn.Module, data, rows: np.ndarray, *, batch_size: int, keep: int = 0,
                    on_dive=None) -> list[np.ndarray]:
    """Score SAP's masks of `rows` (view 0) dive by dive: `on_dive(row, pred (96, H, W) float,
    gt (96, H, W) bool)` for each; returns the predictions of the first `keep` rows (overlays)."""
    from aqa.evaluate.voting import _eval_mode
    from aqa.train.data import uses_maps

    rows = np.asarray(rows, dtype=np.int64)
    kept = []
    chunks = [rows[s:s + batch_size] for s in range(0, rows.size, batch_size)]
    with _eval_mode(model):
        for chunk, (batch,) in zip(chunks, data.fetch((data.request(c, with_maps=uses_maps(model)),)
                                                      for c in chunks)):
            if "masks" not in batch:
                raise KeyError("the batch has no 'masks': the feature cache lacks FineParser's additions")
            pred = model.predict_masks(batch).float().cpu().numpy()
            gt = batch["masks"].cpu().numpy() >= 0.5
            for i, row in enumerate(chunk):
                if on_dive is not None:
                    on_dive(int(row), pred[i], gt[i])
                if len(kept) < keep:
                    kept.append(pred[i])
    return kept


def mask_scores(model: torch.nn.Module, data, rows: np.ndarray, *, batch_size: int, keep: int = 0
                ) -> tuple[dict[str, float], list[np.ndarray], dict[int, np.ndarray]]:
    """(flat metrics of SAP's masks on `rows`, the first `keep` predictions, their gt by row)."""
    scores: list[M.DiveMaskScores] = []
    gts: dict[int, np.ndarray] = {}

    def score(row: int, pred: np.ndarray, gt: np.ndarray) -> None:
        scores.append(M.dive_scores(pred, gt))
        if len(gts) < keep:
            gts[row] = gt

    kept = predicted_masks(model, data, rows, batch_size=batch_size, keep=keep, on_dive=score)
    return flat(M.summarise(scores)), kept, gts


def reference_scores(data, rows: np.ndarray, frames: Sequence[np.ndarray], *, batch_size: int
                     ) -> dict[str, dict[str, float]]:
    """The trivial references (aqa.evaluate.mask_references: all background, motion) on the same
    dives and ground truth as SAP's: `frames` the dives' cropped protocol frames (96, H, W, 3) uint8
    in `rows` order, the ground truth the batches' masks. {name: {mae, fbeta, fbeta_max, smeasure}}."""
    from aqa.evaluate.mask_references import REFERENCES, reference_maps

    out: dict[str, list[M.DiveMaskScores]] = {name: [] for name in REFERENCES}
    rows = np.asarray(rows, dtype=np.int64)
    chunks = [rows[s:s + batch_size] for s in range(0, rows.size, batch_size)]
    i = 0
    for (batch,) in data.fetch((data.request(c, with_maps=False),) for c in chunks):
        for gt in batch["masks"].cpu().numpy() >= 0.5:
            for name, pred in reference_maps(frames[i]).items():
                out[name].append(M.dive_scores(pred, gt, pred >= 0.5))
            i += 1
    refs = {}
    for name, dive_list in out.items():
        summary = M.summarise(dive_list)
        refs[name] = {"mae": summary["mae"], "fbeta": summary["fbeta_adaptive"], "fbeta_max": summary["fbeta_max"],
                      "smeasure": summary["smeasure"]}
    return refs


def protocol_frames(dives, frames_root: str | Path, protocol: dict[str, Any]) -> list[np.ndarray]:
    """Each dive's 96 protocol frames at the centre crop (T, crop, crop, 3) uint8, as the cache's
    view 0 saw them (`protocol`: the feature cache manifest's)."""
    from aqa.features import transforms as T
    from aqa.features.extract import dive_job

    resize_hw, crop = tuple(int(v) for v in protocol["resize"]), int(protocol["crop"])
    top, left = T.center_crop_box(resize_hw[0], resize_hw[1], crop)
    out = []
    for row in dives.itertuples(index=False):
        job = dive_job(Path(frames_root), row.video, row.idx, row.start_frame, row.end_frame,
                       int(protocol["num_frames"]))
        out.append(T.crop_clip(job.frame_paths, lambda p: T.load_resized(p, resize_hw), crop, top, left))
    return out


def overlay_pngs(frames: Sequence[np.ndarray], preds: Sequence[np.ndarray], keys: Sequence[str],
                 out_dir: str | Path, frame_idx: Sequence[int] = (10, 35, 60, 85)) -> list[Path]:
    """PNGs of predicted masks over their frames (red, alpha = the probability), one per
    (dive, frame): `<key>_f<frame>.png` in out_dir, the frame at 4x for legibility."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, clip, pred in zip(keys, frames, preds):
        for t in frame_idx:
            rgb = clip[t].astype(np.float32)
            alpha = np.clip(pred[t], 0.0, 1.0)[..., None] * 0.6
            red = np.zeros_like(rgb)
            red[..., 0] = 255.0
            img = Image.fromarray(np.round(rgb * (1 - alpha) + red * alpha).astype(np.uint8))
            img = img.resize((img.width * 4, img.height * 4), Image.NEAREST)
            path = out_dir / f"{key.replace('/', '_')}_f{t:02d}.png"
            img.save(path)
            paths.append(path)
    return paths
