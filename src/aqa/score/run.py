"""Score one new dive with a trained variant: the pipeline's protocol from frames to the vote.

frames (clip.py) -> the 96-frame protocol and I3D, as the model's cache was made (features.py)
-> the trained seed (model.py): pairwise methods vote over exemplars of the same dive number
drawn from its training pool exactly as evaluate draws them (`eval_exemplars`, keyed by the
clip's frames digest) and vote with evaluate's code (`vote`); direct methods predict from the
dive alone (`predict_rows`). The new dive joins the pool's tensors as one extra row, so every
number goes through the same code as the evaluate stage.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aqa.errors import AqaError
from aqa.evaluate.direct import is_pairwise, predict_rows
from aqa.evaluate.voting import encode_rows, vote
from aqa.features.cache import FeatureCache
from aqa.score.clip import open_clip
from aqa.score.features import clip_features, protocol_of
from aqa.score.model import TrainedSeed, check_inputs, load_seed, needs_difficulty, pool_rows
from aqa.score.steps import STEP_NAMES, step_contributions, step_frames, supports_step_account
from aqa.train.data import DiveData, load_dive_data
from aqa.train.exemplars import eval_exemplars

log = logging.getLogger(__name__)


class ScoreError(AqaError):
    """The dive cannot be scored with what was given (dive number, difficulty, panel)."""


def pool_action(data: DiveData, pool: np.ndarray, dive_number: str, dives_parquet: Path) -> str:
    """The pool's spelling of `dive_number` (case-insensitive), or ScoreError naming the known ones."""
    known = sorted(set(data.dives["action_type"].astype(str).to_numpy()[pool]))
    match = [a for a in known if a.lower() == dive_number.strip().lower()]
    if not match:
        raise ScoreError(f"dive number {dive_number!r} is not in the training pool of {dives_parquet} "
                         f"(it knows {len(known)}: {', '.join(known)})")
    return match[0]


def pool_difficulty(data: DiveData, pool: np.ndarray, action: str, given: float | None, needed: bool) -> float:
    """The dive's DD: as given, else the pool's DD of that dive number when it has one only."""
    if given is not None:
        if not given > 0:
            raise ScoreError(f"--difficulty {given}: a degree of difficulty is > 0")
        return float(given)
    dds = sorted(set(data.dives["difficulty"].to_numpy(float)[pool][
        data.dives["action_type"].astype(str).to_numpy()[pool] == action].tolist()))
    if len(dds) == 1:
        return dds[0]
    if needed:
        raise ScoreError(f"dive number {action} has DD {' or '.join(map(str, dds))} in the training pool (3 m and "
                         "10 m differ) and this model multiplies by it: give --difficulty")
    return float("nan")


def with_new_dive(data: DiveData, pooled: np.ndarray, maps: np.ndarray, *, key: str, action: str,
                  difficulty: float, judges: int) -> tuple[DiveData, int]:
    """`data` plus the new dive as its last row (score unknown: NaN); (new data, its row)."""
    row = len(data.dives)
    new = {"key": key, "video": "clip", "idx": 0, "split": "score", "action_type": action,
           "difficulty": difficulty, "dive_score": float("nan"), "judge_scores": None, "num_judges": judges}
    dives = pd.concat([data.dives, pd.DataFrame([new])], ignore_index=True)
    dev = data.device

    def cat(t: torch.Tensor, value) -> torch.Tensor:
        return torch.cat([t, torch.as_tensor(value, dtype=t.dtype, device=dev).view(1, *t.shape[1:])])

    ext = DiveData(
        dives=dives,
        pooled=cat(data.pooled, torch.from_numpy(np.asarray(pooled, np.float16)).to(data.pooled.dtype)),
        maps=cat(data.maps, torch.from_numpy(np.asarray(maps, np.float16)).to(data.maps.dtype)),
        score=cat(data.score, float("nan")),
        transitions=cat(data.transitions, [-1, -1]),                       # unknown: only predicted steps
        action=cat(data.action, data.action_names.index(action)),
        action_names=data.action_names, fingerprint=data.fingerprint, annotations_digest=data.annotations_digest,
        difficulty=cat(data.difficulty, difficulty),
        judges=cat(data.judges, [float("nan")] * data.judges.shape[1]),
        num_judges=cat(data.num_judges, judges))
    return ext, row


def _model(trained: TrainedSeed, device: torch.device) -> torch.nn.Module:
    from aqa.train.loop import build

    model = build(trained.config, device)
    model.load_state_dict(trained.state["model"])
    return model.eval()


def _exemplar_rows(data: DiveData, row: int, pool: np.ndarray, mode: str, count: int, seed: int) -> np.ndarray:
    keys = np.asarray(data.keys, dtype=object)
    actions = data.dives["action_type"].astype(str).to_numpy()
    pos = eval_exemplars([keys[row]], actions[[row]], list(keys[pool]), actions[pool], mode, count, seed)[0]
    return pool[pos[pos >= 0]]


def score_pairwise(model, data: DiveData, row: int, ex: np.ndarray, batch_size: int) -> dict[str, Any]:
    """Evaluate's vote of the new dive over exemplar rows `ex` (M,), with the per-step account;
    each dive encoded once for both."""
    enc = encode_rows(model, data, np.concatenate([[row], ex]), ("pred",), batch_size=batch_size)["pred"]
    votes = vote(model, data, np.array([row]), ex[None, :], batch_size=batch_size, encoded=enc)
    contributions = None
    if supports_step_account(model):
        q = enc.take(np.full(ex.size, row))
        contributions = step_contributions(model, q, enc.take(ex)).float().cpu().numpy()   # (M, 3)
    return {"predicted": float(votes.pred[0]), "per_exemplar": votes.per_exemplar[0],   # (M,) delta + exemplar score
            "pred_transitions": None if votes.pred_transitions is None else votes.pred_transitions[0],
            "contributions": contributions}


def score_dive(clip_path: Path, *, dive_number: str, model_dir: Path, features_dir: Path, dives_parquet: Path,
               weights_path: Path, frames_cfg: dict[str, Any], seed: int | None = None,
               difficulty: float | None = None, judges: int = 7, num_exemplars: int | None = None,
               figure_path: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Score the dive in `clip_path` (a video file or a folder of <frame:05d>.jpg) as `model_dir`'s
    variant scores; returns the result (report.py prints it). `frames_cfg` is params'
    extract_frames section (height, jpeg_quality), used to cut a video as the pipeline does."""
    clip_path, model_dir = Path(clip_path), Path(model_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache = FeatureCache(features_dir)                          # before the model: a missing cache is named
    trained = load_seed(model_dir, seed, device)
    check_inputs(trained, Path(dives_parquet), cache)
    protocol = protocol_of(cache.manifest, cache.root)
    config = trained.config
    data = load_dive_data(dives_parquet, features_dir, device)
    pool = pool_rows(data, config)
    action = pool_action(data, pool, dive_number, Path(dives_parquet))
    dd = pool_difficulty(data, pool, action, difficulty, needs_difficulty(config))
    if judges not in (3, 5, 7):
        raise ScoreError(f"--judges {judges}: a panel has 3, 5 or 7 judges")
    with tempfile.TemporaryDirectory(prefix="aqa-score-") as work:
        clip = open_clip(clip_path, Path(work), height=int(frames_cfg["height"]),
                         jpeg_quality=int(frames_cfg["jpeg_quality"]), min_frames=int(protocol["snippet_length"]))
        log.info("%s: %d frames (%d..%d); %s seed %d (validation rho %s)", clip_path, clip.num_frames, clip.first,
                 clip.last, config["variant"], trained.seed,
                 "n/a" if trained.val_rho is None else f"{trained.val_rho:.3f}")
        pooled, maps = clip_features(clip, cache.manifest, cache.root, Path(weights_path), device, progress)
        data, row = with_new_dive(data, pooled[:1], maps[:1], key=f"clip/{clip.digest()[:16]}", action=action,
                                  difficulty=dd, judges=judges)
        model = _model(trained, device)
        batch = int(config["evaluate"]["batch_size"])
        if is_pairwise(model):
            m = int(num_exemplars or config["evaluate"]["num_exemplars"])
            ex = _exemplar_rows(data, row, pool, config["mode"], m, int(config["evaluate"]["exemplar_seed"]))
            scored = score_pairwise(model, data, row, ex, batch)
        else:
            ex = np.empty(0, dtype=np.int64)
            scored = {"predicted": float(predict_rows(model, data, np.array([row]), batch_size=batch)[0]),
                      "per_exemplar": np.empty(0), "pred_transitions": None, "contributions": None}
        result = assemble(clip, trained, data, ex, scored, action=action, difficulty=dd, judges=judges,
                          pairwise=is_pairwise(model), features=cache, dives_parquet=Path(dives_parquet))
        if figure_path is not None:
            from aqa.score.figure import draw_timeline

            draw_timeline(result, clip, Path(figure_path))
    return result


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def assemble(clip, trained: TrainedSeed, data: DiveData, ex: np.ndarray, scored: dict[str, Any], *, action: str,
             difficulty: float, judges: int, pairwise: bool, features: FeatureCache,
             dives_parquet: Path) -> dict[str, Any]:
    """The result as plain values: what `aqa score` prints and --json writes."""
    config = trained.config
    test = trained.test_metrics()
    per_ex = np.asarray(scored["per_exemplar"], dtype=float)
    result: dict[str, Any] = {
        "clip": {"path": str(clip.source), "first_frame": clip.first, "last_frame": clip.last,
                 "num_frames": clip.num_frames},
        "dive_number": action, "difficulty": _num(difficulty), "judges": judges,
        "model": {"folder": str(trained.folder.parent), "variant": config["variant"], "method": config["method"],
                  "exemplar_mode": config["mode"], "seed": trained.seed, "epoch": int(trained.state["epoch"]),
                  "validation_rho": trained.val_rho,
                  "test_rho": None if not test else _num(test.get("rho")),
                  "test_rmse": None if not test or test.get("l2") is None else math.sqrt(test["l2"])},
        "features": {"cache": str(features.root), "weights_sha256": features.manifest.get("weights_sha256"),
                     "compute_dtype": features.manifest.get("compute_dtype")},
        "annotations": str(dives_parquet),
        "scoring": "voting" if pairwise else "direct",
        "score": {"predicted": scored["predicted"],
                  "spread": None if not per_ex.size else {
                      "std": float(per_ex.std()), "min": float(per_ex.min()), "max": float(per_ex.max()),
                      "num_exemplars": int(per_ex.size)}},
        "steps": None, "step_account": None, "exemplars": [],
    }
    if scored["pred_transitions"] is not None:
        t = np.asarray(scored["pred_transitions"])
        result["steps"] = [{"name": name, "first_frame": a, "last_frame": b}
                           for name, (a, b) in zip(STEP_NAMES, step_frames(t, clip.first, clip.last))]
        result["transitions_96"] = [int(v) for v in t]
    contrib = scored["contributions"]
    for i, r in enumerate(ex):
        true = float(data.dives["dive_score"].iloc[r])
        entry = {"key": data.keys[r], "true_score": true, "difficulty": float(data.dives["difficulty"].iloc[r]),
                 "predicted": float(per_ex[i]), "difference": float(per_ex[i] - true)}
        if contrib is not None:
            entry["step_contributions"] = {name: float(c) for name, c in zip(STEP_NAMES, contrib[i])}
        result["exemplars"].append(entry)
    if contrib is not None:
        result["step_account"] = {name: float(c) for name, c in zip(STEP_NAMES, contrib.mean(0))}
    return result
