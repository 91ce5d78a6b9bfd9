"""FineParser's cache additions for the train / evaluate tests: `fineparser_dataset` makes a
small-protocol cache by the real extract_features with `extract_features.fineparser.finediving:
true` (JPEG frames and masks: a frame's mask = its pixels brighter than the frame's median, so
predicted and true masks are about the footage), and `load_with_additions` gives its dives with
the three additions (mixed4f, sve, masks) in every batch, through train/data.py's loader.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from aqa.train.data import DiveData, load_dive_data


def write_dive_masks(frames_root: Path, masks_root: Path, rows: list[dict]) -> Path:
    """One 'L' mask (0 / 255) per frame, named as the frame: the frame's pixels brighter than its median."""
    from PIL import Image

    for row in rows:
        src, dst = frames_root / row["video"] / str(row["idx"]), masks_root / row["video"] / str(row["idx"])
        dst.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.glob("*.jpg")):
            gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
            Image.fromarray(((gray > np.median(gray)) * 255).astype(np.uint8), mode="L").save(dst / path.name)
    return masks_root


def fineparser_dataset(tmp: Path, feature_cfg: dict, num_dives: int = 8) -> dict:
    """dives.parquet, frames, masks, weights and a small-protocol cache (32 x 32 crop) with
    FineParser's additions, by the real writer."""
    from aqa.features.extract import extract_features
    from frame_helpers import SMALL_PROTOCOL, write_dive_frames, write_weights
    from train_helpers import make_dives, write_dives

    rows = make_dives(num_dives)
    dives = write_dives(tmp / "annotations" / "finediving" / "dives.parquet", rows)
    frames = write_dive_frames(tmp / "frames", rows)
    masks = write_dive_masks(frames, tmp / "masks", rows)
    weights = write_weights(tmp / "weights")
    cfg = {**copy.deepcopy(feature_cfg), **SMALL_PROTOCOL, "fineparser": {"finediving": True, "mtl_aqa": False}}
    extract_features(frames_root=frames, dives_parquet=dives, weights_path=weights, out_dir=tmp / "features",
                     cfg=cfg, dataset="finediving", masks_root=masks)
    return {"dives": dives, "frames": frames, "masks": masks, "weights": weights, "features": tmp / "features",
            "rows": rows, "cfg": cfg}


def load_with_additions(dives_parquet, features_dir, device="cpu") -> DiveData:
    """The dives with the three additions in every batch (train/data.py's loader)."""
    return load_dive_data(dives_parquet, features_dir, device, cache_keys=("mixed4f", "sve", "masks"))
