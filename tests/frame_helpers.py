"""Tiny inputs for the fine-tuned backbone's tests: real JPEG frames of every dive, random I3D
weights imported as fetch_i3d does, and a real feature cache made from them by extract_features
(the fine-tuning path reads its protocol, weights digest and frame digests).

The protocol is the reference's (96 frames, 9 snippets of 16, the squeeze then a square crop)
at a small size, 40 x 32 squeezed and 32 cropped, so that I3D runs in about a second per batch
on one CPU core; the maps are then 1 x 1 instead of 4 x 4.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aqa.features.extract import extract_features
from aqa.models.fetch_i3d import WEIGHTS_NAME, import_state_dict
from aqa.models.i3d import InceptionI3d
from train_helpers import make_dives, write_dives

SMALL_PROTOCOL = {"resize": [40, 32], "crop": 32, "flip_view": False, "autocast": False, "dtype": "float32",
                  "workers": 0, "batch_snippets": 18}

# Heads on I3D's 1024 channels, as small as they go.
FINETUNE_VARIANTS = {
    "fr": {"method": "fr", "hidden": [8]},
    "fr_asym": {"method": "fr_asym", "hidden": [8]},
    "fr_dn": {"method": "fr_dn", "hidden": [8], "action_dim": 4},
    "fsr": {"method": "fsr", "psnet": {"head_hidden": [8]}, "hidden": [8]},
    "tsa": {"method": "tsa", "psnet": {"head_hidden": [8]}, "decoder": {"dim": 64, "heads": 2, "depth": 1},
            "regressor_hidden": [8]},
    "core": {"method": "core", "hidden": 8},
    "usdl": {"method": "usdl", "hidden": [8]},
    "i3d_mlp": {"method": "i3d_mlp", "hidden": [8]},
    "musdl": {"method": "musdl", "hidden": [8]},
}


def write_dive_frames(frames_root: Path, rows: list[dict], height: int = 48, width: int = 64) -> Path:
    """Real JPEG frames <video>/<idx>/<frame:05d>.jpg for every frame of each dive's range: a
    per-dive texture that shifts with the frame number, brighter for better scores."""
    for i, row in enumerate(rows):
        rng = np.random.default_rng(i)
        base = rng.integers(0, 200, size=(height, width, 3)).astype(np.int64)
        base += int(row["dive_score"] - 40)
        folder = frames_root / row["video"] / str(row["idx"])
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(row["start_frame"], row["end_frame"] + 1):
            img = np.clip(np.roll(base, 2 * (n - row["start_frame"]), axis=1), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{n:05d}.jpg", quality=90)
    return frames_root


def write_weights(folder: Path, seed: int = 0) -> Path:
    """Random I3D weights with fetch_i3d's manifest: <folder>/i3d/kinetics400_rgb.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(InceptionI3d().state_dict(), folder / "random_i3d.pt")
    import_state_dict(folder / "random_i3d.pt", folder / "i3d")
    return folder / "i3d" / WEIGHTS_NAME


def frames_dataset(tmp: Path, feature_cfg: dict, num_dives: int = 8, **kw) -> dict:
    """dives.parquet, frames, weights and the small-protocol cache of `num_dives` dives (96
    frames each). `feature_cfg`: params extract_features (the small protocol is set on a copy)."""
    rows = make_dives(num_dives, **kw)
    dives = write_dives(tmp / "annotations" / "finediving" / "dives.parquet", rows)
    frames = write_dive_frames(tmp / "frames", rows)
    weights = write_weights(tmp / "weights")
    cfg = {**copy.deepcopy(feature_cfg), **SMALL_PROTOCOL}
    extract_features(frames_root=frames, dives_parquet=dives, weights_path=weights, out_dir=tmp / "features",
                     cfg=cfg)
    return {"dives": dives, "frames": frames, "weights": weights, "features": tmp / "features", "rows": rows,
            "cfg": cfg}


def finetune_train_params(params: dict, **train) -> dict:
    """params with the fine-tuned backbone, the small heads, one epoch of batch 2, CPU."""
    p = copy.deepcopy(params)
    p["train"].update({"backbone": "finetune", "epochs": 1, "batch_size": 2, "seeds": [0], "device": "cpu",
                       "validation_fraction": 0.25, "variants": copy.deepcopy(FINETUNE_VARIANTS), **train})
    p["evaluate"].update({"num_exemplars": 2, "batch_size": 4})
    p["make_report"]["exemplar_counts"] = [1, 2]
    p["datasets"]["variants"] = {"finediving": list(FINETUNE_VARIANTS), "mtl_aqa": []}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    return p
