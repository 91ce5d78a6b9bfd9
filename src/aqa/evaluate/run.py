"""The evaluate stage: honest and paper protocols for every seed, written as one metrics JSON.

honest: the best-validation checkpoint evaluated once on test (also for each M of Table 4).
paper:  the best value of each metric over the epochs on test, each metric independently, as
        the reference code reports (read from the per-epoch history of the same run).

A model is evaluated only if it was trained from the current inputs (annotations, features,
code, params); the metrics file records the provenance of what it was made from, which
make_report checks against the current params.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aqa.evaluate.direct import is_pairwise, prediction_metrics, predict_rows
from aqa.evaluate.floor import action_type_floor, difficulty_floor
from aqa.evaluate.sap_masks import (BEST as MASK_BEST, MaskFramesError, config_predicts_masks, mask_scores, overlay_pngs, predicts_masks, protocol_frames,
                                    reference_scores)
from aqa.evaluate.voting import Votes, exemplar_rows, shared_encodings, vote, votes_metrics
from aqa.io import atomic_path, write_json_atomic
from aqa.models.registry import is_pairwise as is_pairwise_method
from aqa.provenance import EVALUATE_CODE, code_fingerprint, footage, metrics_provenance, sha256_file
from aqa.train.checkpoint import CheckpointError, load_checkpoint, read_run_info
from aqa.train.data import DiveData
from aqa.train.loop import build, resolve_device
from aqa.train.resume import BEST as BEST_VAL, HISTORY, stale_reason, training_inputs
from aqa.train.run import (VariantSpec, dataset_name, load_data, parse_variant, seed_run, split_rows,
                           variant_cache_keys)
from aqa.train.mlflow_model import register_best, registered_name
from aqa.train.tracking import ROLE, Tracker, source_tags
from aqa.trained import stage_name, variant_seeds

log = logging.getLogger(__name__)

OVERLAY_DIVES = 2    # test dives whose predicted masks MLflow shows over their frames (4 frames each)

# Paper protocol: the direction in which each metric is best (FineParser's mask metrics too,
# each its own best over epochs, as the reference's runner).
BEST = {"rho": max, "rl2_x100": min, "l2": min, "aiou50": max, "aiou75": max, **MASK_BEST}


def report_metrics(m: dict[str, float]) -> dict[str, float]:
    """Metrics in the report's units: rl2 x 100; aiou as fractions in [0, 1]."""
    rl2 = m.get("rl2")  # null in a history file where it was NaN (a split with one score)
    out = {"rho": m["rho"], "rl2_x100": None if rl2 is None else 100.0 * rl2, "l2": m["l2"]}
    out.update({k: m[k] for k in ("aiou50", "aiou75", *MASK_BEST) if k in m})
    return out


def paper_metrics(history: list[dict[str, Any]], split: str = "test") -> dict[str, float]:
    """Best value of each metric over epochs on `split`, each metric independently."""
    per_epoch = [report_metrics(h[split]) for h in history if h.get(split)]
    if not per_epoch:
        raise ValueError(f"history has no {split!r} metrics")
    out = {}
    for key, pick in BEST.items():
        values = [e[key] for e in per_epoch if e.get(key) is not None and not math.isnan(e[key])]
        if values:
            out[key] = float(pick(values))
    return out


def summarize(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float | None]]:
    """Mean and sample standard deviation over seeds (std 0 with one seed) of each metric."""
    out = {}
    for key in BEST:
        values = [m.get(key) for m in per_seed]
        if not values or any(v is None for v in values):
            continue
        arr = np.asarray(values, dtype=float)
        out[key] = {"mean": _finite(arr.mean()), "std": _finite(arr.std(ddof=1)) if arr.size > 1 else 0.0}
    return out


def _finite(x: float) -> float | None:
    return None if math.isnan(float(x)) else float(x)


def _clean(obj: Any) -> Any:
    """NaN -> null so the JSON stays standard."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return _finite(obj)
    return obj


def prefix_votes(votes: Votes, m: int) -> Votes:
    """The votes of the first m exemplars (a dive's first m exemplars are its M=m exemplars)."""
    per = votes.per_exemplar[:, :m]
    return Votes(pred=np.nanmean(per, axis=1), per_exemplar=per, pred_transitions=votes.pred_transitions)


def predictions_frame(data: DiveData, rows: np.ndarray, votes: Votes) -> pd.DataFrame:
    frame = pd.DataFrame({
        "key": data.dives["key"].to_numpy()[rows],
        "true": data.dives["dive_score"].to_numpy(float)[rows],
        "predicted": votes.pred.astype(float),
        "num_exemplars": np.isfinite(votes.per_exemplar).sum(axis=1).astype(np.int32),
    })
    if votes.pred_transitions is not None:
        true_t = data.transitions.cpu().numpy()[rows]
        frame["pred_t1"], frame["pred_t2"] = votes.pred_transitions[:, 0], votes.pred_transitions[:, 1]
        frame["true_t1"], frame["true_t2"] = true_t[:, 0], true_t[:, 1]
    return frame


@dataclass
class SeedResult:
    honest: dict[str, float]                 # honest metrics (main M for voted methods)
    by_m: dict[int, dict[str, float]]        # honest metrics for each M ({} for direct methods)
    gt: dict[str, float] | None              # honest metrics with ground-truth transitions, main M
    predictions: pd.DataFrame
    checkpoint: dict[str, Any]
    masks: list[np.ndarray] | None = None    # SAP's predicted masks of the first test dives (overlays)


def retrain_advice(variant: str, seed_dir: Path, params: dict[str, Any] | None = None) -> str:
    """How to retrain; with `params`, a dn-only variant's stage is train_dn@ (aqa.trained)."""
    from aqa.data.datasets import DATASETS, dvc_stage
    from aqa.trained import is_dn_only

    dataset = Path(seed_dir).parent.parent.name  # the pipeline's models/<dataset>/<variant>/seed<k>
    dn_only = params is not None and is_dn_only(params, dataset, variant.rsplit("-", 1)[0])
    stage = dvc_stage("train", dataset, dn_only) if dataset in DATASETS else "train"
    return f"re-run its training: dvc repro {stage}@{variant} (or delete {seed_dir} and run dvc repro)"


def load_trained(spec: VariantSpec, params: dict[str, Any], data: DiveData, seed: int, seed_dir: Path,
                 device: torch.device) -> dict[str, Any]:
    """best_val.pt of one seed, refused (CheckpointError, one line) when it is damaged or was
    trained from other inputs than the current annotations, features, code and params."""
    path = seed_dir / BEST_VAL
    try:
        best = load_checkpoint(path, map_location=device)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {retrain_advice(spec.name, seed_dir, params)}") from None
    pool, _, _ = split_rows(data, params["train"])
    config = seed_run(spec, params, seed, data, pool).config()
    reason = stale_reason(best, config, training_inputs(config, data.annotations_digest, data.fingerprint))
    if reason:
        raise CheckpointError(f"{path}: {reason}; {retrain_advice(spec.name, seed_dir, params)}")
    return best


def evaluate_seed(data: DiveData, best: dict[str, Any], *, mode: str, counts: list[int], eval_cfg: dict[str, Any],
                  device: torch.device) -> SeedResult:
    """Honest metrics of the best-validation checkpoint `best`: voted methods for every M in
    `counts` (predictions at eval_cfg.num_exemplars), direct methods by their own prediction.

    One vote with max(counts) exemplars serves every M: a dive's first M exemplars are its M-set.
    """
    model = build(best["config"], device, data)
    model.load_state_dict(best["model"])
    pool, _, test = split_rows(data, best["config"]["train"])
    amp = best["config"]["train"]["amp"]
    if not is_pairwise(model):
        pred = predict_rows(model, data, test, batch_size=eval_cfg["batch_size"], amp=amp)
        honest = report_metrics(prediction_metrics(pred, data, test))
        votes = Votes(pred=pred, per_exemplar=np.empty((test.size, 0)), pred_transitions=None)
        return SeedResult(honest=honest, by_m={}, gt=None, predictions=predictions_frame(data, test, votes),
                          checkpoint=best)
    m_main = eval_cfg["num_exemplars"]
    ex = exemplar_rows(data, test, pool, mode, max(counts), eval_cfg["exemplar_seed"])
    # each dive encoded once for both votes
    enc = shared_encodings(model, data, np.concatenate([test, pool]), batch_size=eval_cfg["batch_size"], amp=amp)
    votes = vote(model, data, test, ex, batch_size=eval_cfg["batch_size"], amp=amp, encoded=enc["pred"])
    by_m = {m: report_metrics(votes_metrics(prefix_votes(votes, m), data, test)) for m in counts}
    main = prefix_votes(votes, m_main)
    preds = predictions_frame(data, test, main)
    gt = None
    if main.pred_transitions is not None and (data.transitions.cpu().numpy()[test] >= 0).all():
        gt_votes = vote(model, data, test, ex[:, :m_main], batch_size=eval_cfg["batch_size"],
                        transitions="gt", amp=amp, encoded=enc["gt"])
        gt = report_metrics(votes_metrics(gt_votes, data, test))
        preds["predicted_gt"] = gt_votes.pred.astype(float)
    honest, kept = by_m[m_main], None
    if predicts_masks(model):   # FineParser's SAP: the test queries' masks (docs/METHODS.md "Mask metrics")
        scores, kept, _ = mask_scores(model, data, test, batch_size=eval_cfg["batch_size"], keep=OVERLAY_DIVES)
        honest = {**honest, **scores}
    return SeedResult(honest=honest, by_m=by_m, gt=gt, predictions=preds, checkpoint=best, masks=kept)


def _pairs(settings: dict[str, Any]) -> list[list[Any]]:
    """Settings as sorted [key, value] pairs (not an object: `dvc metrics show` would print them)."""
    return sorted([k, v] for k, v in settings.items())


def _read_history(path: Path, variant: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the training history ({type(exc).__name__}); "
                              f"{retrain_advice(variant, path.parent, params)}") from None
    if not isinstance(history, list) or not history:
        raise CheckpointError(f"{path}: expected a non-empty list of epochs; {retrain_advice(variant, path.parent, params)}")
    return history


def evaluate_variant(variant: str, *, models_dir: str | Path, features_dir: str | Path,
                     dives_parquet: str | Path, metrics_path: str | Path, predictions_dir: str | Path,
                     params: dict[str, Any], tracking_uri: str | None = None,
                     frames_root: str | Path | None = None, masks_root: str | Path | None = None
                     ) -> dict[str, Any]:
    """Evaluate every seed of a trained variant; write metrics_path and predictions_dir/seed<k>.parquet.

    Methods that predict transitions also get a "gt_transitions" block: the same models with
    ground-truth transitions at test (TSA-dagger is TSA's).
    """
    spec = parse_variant(variant, params)
    models_dir, predictions_dir = Path(models_dir), Path(predictions_dir)
    eval_cfg = params["evaluate"]
    m_main = eval_cfg["num_exemplars"]
    counts = sorted(set(params["make_report"]["exemplar_counts"]) | {m_main})
    device = resolve_device(params["train"]["device"])
    # with train.backbone finetune: the frames (the fine-tuned I3D's weights are in the checkpoints)
    data = load_data({**params["train"], **spec.train_overrides}, dives_parquet, features_dir, device, frames_root=frames_root,
                     cache_keys=variant_cache_keys(spec, dives_parquet), masks_root=masks_root)
    seed_dirs = {seed: models_dir / f"seed{seed}" for seed in variant_seeds(params, spec.base)}
    # every model checked before anything is written
    trained = {seed: load_trained(spec, params, data, seed, d, device) for seed, d in seed_dirs.items()}
    histories = {seed: _read_history(d / HISTORY, spec.name, params) for seed, d in seed_dirs.items()}
    models = {f"seed{seed}/{name}": sha256_file(d / name)
              for seed, d in seed_dirs.items() for name in (BEST_VAL, HISTORY)}
    dataset = dataset_name(dives_parquet)
    tracker = Tracker(tracking_uri, dataset)
    direct = not is_pairwise_method(spec.method)
    per_seed, gt_seeds = [], []
    source = source_tags(f"aqa evaluate {spec.name}")
    test_rows = split_rows(data, params["train"])[2]
    frames = None   # the test dives' protocol frames: FineParser's mask references and overlays
    if config_predicts_masks(spec.method, next(iter(trained.values()))["config"]["model_kwargs"]):
        frames = _protocol_frames(data, test_rows, features_dir, frames_root)
    for seed, seed_dir in seed_dirs.items():
        res = evaluate_seed(data, trained[seed], mode=spec.mode, counts=counts, eval_cfg=eval_cfg, device=device)
        history = histories[seed]
        pred_path = predictions_dir / f"seed{seed}.parquet"
        with atomic_path(pred_path) as tmp:
            res.predictions.to_parquet(tmp, index=False)
        entry = {"seed": seed, "best_epoch": res.checkpoint["epoch"] - 1, "honest": res.honest,
                 "paper": paper_metrics(history, "test")}
        if not direct:
            entry["by_num_exemplars"] = {str(m): v for m, v in res.by_m.items()}
        per_seed.append(entry)
        if res.gt is not None:
            gt_seeds.append({"seed": seed, "honest": res.gt, "paper": paper_metrics(history, "test_gt")})
        with tempfile.TemporaryDirectory(prefix="aqa-overlays-") as tmp:
            overlays = [] if res.masks is None else overlay_pngs(
                frames[:len(res.masks)], res.masks, data.dives["key"].to_numpy()[test_rows][:len(res.masks)], tmp)
            _track(tracker, spec.name, seed, entry, gt_seeds[-1] if res.gt is not None else None, pred_path,
                   read_run_info(seed_dir).get("mlflow_run_id"), eval_cfg, data, source, overlays,
                   stage=stage_name(params, "evaluate", dataset, spec.name))
        log.info("%s seed %d: honest rho %.4f, paper rho %.4f", variant, seed, entry["honest"]["rho"],
                 entry["paper"].get("rho", float("nan")))
    result = {
        "variant": spec.name, "method": spec.method, "exemplar_mode": spec.mode, "dataset": dataset,
        "scoring": "direct" if direct else "voting",
        # the model's config as trained: the variant's settings and what the exemplar mode and the
        # training pool imply (CoRe's group edges, use_dd); the same for every seed
        "model_settings": _pairs(next(iter(trained.values()))["config"]["model_kwargs"]),
        "footage": footage(params, dataset),
        "seeds": list(seed_dirs), "num_exemplars": None if direct else m_main,
        "honest": summarize([e["honest"] for e in per_seed]),
        "paper": summarize([e["paper"] for e in per_seed]),
    }
    if not direct:   # Table 4's M sweep: voting only (a direct method has no exemplars)
        result["by_num_exemplars"] = {
            str(m): {"honest": summarize([e["by_num_exemplars"][str(m)] for e in per_seed])} for m in counts}
    result.update({
        "floor": action_type_floor(data.dives),
        "floor_difficulty": difficulty_floor(data.dives),
        "per_seed": per_seed,
        "units": "rl2_x100 = R-l2 x 100; aiou50/aiou75 are fractions in [0, 1]; std over seeds (ddof=1)",
    })
    if frames is not None:   # the trivial references on the same test dives and ground truth
        result["mask_references"] = reference_scores(data, test_rows, frames, batch_size=eval_cfg["batch_size"])
    if gt_seeds:
        result["gt_transitions"] = {"honest": summarize([e["honest"] for e in gt_seeds]),
                                    "paper": summarize([e["paper"] for e in gt_seeds]), "per_seed": gt_seeds}
    inputs = {"annotations": data.annotations_digest, "features": data.fingerprint,
              "code": code_fingerprint(EVALUATE_CODE)}
    result["provenance"] = metrics_provenance(params, spec.base, spec.mode, dataset, inputs=inputs, models=models)
    result = _clean(result)
    write_json_atomic(metrics_path, result)
    _track_variant(tracker, spec, result, trained, {s: read_run_info(d).get("mlflow_run_id") for s, d in seed_dirs.items()},
                   source)
    return result


def _protocol_frames(data: DiveData, rows: np.ndarray, features_dir: str | Path,
                     frames_root: str | Path | None) -> list[np.ndarray]:
    """The protocol frames (centre crop, the cache's protocol) of the dives `rows`."""
    if frames_root is None:
        raise MaskFramesError("FineParser's mask references and overlays read the frames: give them "
                              "(aqa evaluate --frames data/interim/frames/<dataset>)")
    protocol = json.loads((Path(features_dir) / "manifest.json").read_text())["protocol"]
    return protocol_frames(data.dives.iloc[rows], frames_root, protocol)


def _track(tracker: Tracker, variant: str, seed: int, entry: dict[str, Any], gt: dict[str, Any] | None,
           pred_path: Path, train_run_id: str | None, eval_cfg: dict[str, Any], data: DiveData,
           source: dict[str, str], overlays: list[Path] = (), stage: str | None = None) -> None:
    """The seed's evaluation run, nested under its training run (its id from the side file
    run.json); re-evaluating updates that run (found by its tags) rather than adding one.
    `overlays`: PNGs of SAP's predicted masks over test frames (FineParser), under mask_overlays/.
    `stage`: the DVC stage that runs it (aqa.trained.stage_name), tagged dvc_stage."""
    key = {ROLE: "evaluation", "variant": variant, "seed": str(seed)}
    tags = {"dvc_stage": stage or f"evaluate@{variant}", "feature_fingerprint": data.fingerprint,
            "annotations_sha256": data.annotations_digest, "protocol": "honest+paper", **source}
    run_id = tracker.reuse_or_start(f"{variant}-seed{seed}-eval", key=key, tags=tags, parent_run_id=train_run_id,
                                    params={"evaluate": eval_cfg, "variant": variant})
    tracker.log_metrics(run_id, _protocol_metrics(entry, gt))
    tracker.log_artifact(run_id, pred_path)
    for path in overlays:
        tracker.log_artifact(run_id, path, artifact_path="mask_overlays")
    tracker.finish(run_id)


def _protocol_metrics(entry: dict[str, Any], gt: dict[str, Any] | None) -> dict[str, float]:
    """honest_<m>, paper_<m>, honest_M<k>_<m>, gt_honest_<m>, gt_paper_<m> of one seed's (or the
    summary's) blocks."""
    metrics = {f"honest_{k}": v for k, v in entry["honest"].items()}
    metrics.update({f"paper_{k}": v for k, v in entry["paper"].items()})
    for m, v in entry.get("by_num_exemplars", {}).items():
        metrics.update({f"honest_M{m}_{k}": x for k, x in v.get("honest", v).items()})
    if gt is not None:
        for protocol in ("honest", "paper"):
            metrics.update({f"gt_{protocol}_{k}": v for k, v in gt[protocol].items()})
    return metrics


def best_seed(trained: dict[int, dict[str, Any]]) -> int:
    """The seed the honest protocol would pick: the highest validation rho of its best-validation
    checkpoint (the first listed seed on a tie, or when there is no validation split)."""
    def val_rho(seed: int) -> float:
        rho = (trained[seed].get("val") or {}).get("rho")
        return -math.inf if rho is None or math.isnan(rho) else float(rho)

    return max(trained, key=val_rho)   # max keeps the first of equal values


def _track_variant(tracker: Tracker, spec: VariantSpec, result: dict[str, Any], trained: dict[int, dict[str, Any]],
                   train_runs: dict[int, str | None], source: dict[str, str]) -> None:
    """The variant's parent run: each metric's mean and std over seeds (`<metric>_mean`, `_std`),
    and the best seed's model registered as <dataset>.<variant>."""
    parent = tracker.variant_run(spec.name, {"method": spec.method, "exemplar_mode": spec.mode, **source})
    metrics = {}
    for name, value in _protocol_metrics(result, result.get("gt_transitions")).items():
        if isinstance(value, dict):
            metrics.update({f"{name}_{stat}": v for stat, v in value.items()})
    tracker.log_metrics(parent, metrics)
    seed = best_seed(trained)
    tags = {"best_seed": seed, "best_seed_val_rho": (trained[seed].get("val") or {}).get("rho")}
    tracker.set_tags(parent, {f"aqa.{k}": v for k, v in tags.items()})
    if train_runs.get(seed):
        name = registered_name(result["dataset"], spec.name)
        version = register_best(tracker, name, train_runs[seed], {**tags, "selection": "highest validation rho"})
        if version is not None:
            tracker.set_tags(parent, {"aqa.registered_model": f"{name}/{version}"})
