"""The new dive's I3D features, computed as extract_features computed the model's cache.

The protocol (frames, resize, crop, snippets, normalisation, views, stored dtype) and the
compute precision come from the cache's manifest, not from params: the features of the new dive
must be those the model's exemplars and training dives had. The weights must be the file the
manifest names (its sha256); anything the manifest says that this code would compute otherwise
(another backbone or extractor version) is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from aqa.errors import AqaError
from aqa.features.extract import (BACKBONE, EXTRACTOR_VERSION, dive_job, forward_snippets, load_backbone,
                                  load_snippets)
from aqa.models.i3d_weights import load_verified_weights
from aqa.score.clip import Clip

log = logging.getLogger(__name__)


class FeatureMismatchError(AqaError):
    """The features the scoring would compute differ from those the model was trained on."""


def protocol_of(manifest: dict[str, Any], cache_root: Path) -> dict[str, Any]:
    """The extract_features settings that made the cache (its manifest), refused if this code
    would not compute the same way."""
    where = cache_root / "manifest.json"
    if manifest.get("backbone") != BACKBONE or manifest.get("extractor_version") != EXTRACTOR_VERSION:
        raise FeatureMismatchError(
            f"{where}: features by backbone {manifest.get('backbone')!r} version {manifest.get('extractor_version')!r}; "
            f"this code computes {BACKBONE!r} version {EXTRACTOR_VERSION}: the model was trained on other features")
    if "protocol" not in manifest or "compute_dtype" not in manifest:
        raise FeatureMismatchError(f"{where}: no protocol or compute_dtype: not a feature manifest of extract_features")
    return dict(manifest["protocol"], workers=0)


def clip_features(clip: Clip, manifest: dict[str, Any], cache_root: Path, weights_path: Path,
                  device: torch.device, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(pooled (V, S, 1024), maps (V, S, 1024, h, w)) of the clip in the cache's stored dtype."""
    cfg = protocol_of(manifest, cache_root)
    state, sha = load_verified_weights(weights_path)
    if sha != manifest.get("weights_sha256"):
        raise FeatureMismatchError(
            f"{weights_path}: sha256 {sha[:12]}... is not the {str(manifest.get('weights_sha256'))[:12]}... the "
            f"model's features were computed with ({cache_root / 'manifest.json'}): the model was trained on "
            "other features; pass the weights of its pipeline (--weights)")
    job = dive_job(clip.frames_root, clip.video, clip.idx, clip.first, clip.last, int(cfg["num_frames"]))
    snippets = load_snippets(job, cfg)                        # (V * S, 3, L, crop, crop) uint8
    model = load_backbone(state, device)
    dtype = getattr(torch, manifest["compute_dtype"])         # the cache's precision, whatever this CPU prefers
    batch = max(1, int(cfg.get("batch_snippets", 9)))
    pooled, maps = [], []
    with tqdm(total=snippets.shape[0], unit="snippet", desc="I3D features", disable=not progress) as bar:
        for start in range(0, snippets.shape[0], batch):
            p, m = forward_snippets(model, snippets[start:start + batch], cfg["normalization"], device, dtype)
            pooled.append(p)
            maps.append(m)
            bar.update(p.shape[0])
    views = int(manifest["views"])
    pooled_arr = np.concatenate(pooled).reshape(views, -1, 1024).astype(cfg["dtype"])
    maps_arr = np.concatenate(maps)
    maps_arr = maps_arr.reshape(views, -1, *maps_arr.shape[1:]).astype(cfg["dtype"])
    log.info("I3D features of %s: %d view(s) x %d snippets, %s (as %s)", clip.source, views,
             pooled_arr.shape[1], manifest["compute_dtype"], cache_root / "manifest.json")
    return pooled_arr, maps_arr
