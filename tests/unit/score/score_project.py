"""A tiny pipeline project for the `aqa score` tests, made by the stages' own functions:
stand-in videos (the renderer), frames, annotations, an I3D cache with random weights, and small
models trained on it. Scores of the rendered dives are known from their annotations."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from aqa.data.annotations import convert_annotations, read_dives
from aqa.data.frames import extract_frames
from aqa.data.synthesize import synthesize_videos
from aqa.data.video import iter_frames, write_video
from aqa.features.extract import extract_features
from aqa.models.fetch_i3d import WEIGHTS_NAME, import_state_dict
from aqa.models.i3d import InceptionI3d
from aqa.train.run import train_variant

DATASET = "finediving"
# Small heads on the real 1024-d I3D features; PSNet's 96 slots need feature_dim 1024 here.
VARIANTS = {
    "tsa": {"method": "tsa", "psnet": {"head_hidden": [16]}, "decoder": {"heads": 2, "depth": 1},
            "regressor_hidden": [16]},
    "i3d_mlp": {"method": "i3d_mlp", "hidden": [16]},
}


def project_params(tiny_params: dict) -> dict:
    p = copy.deepcopy(tiny_params)
    p["synthesize_videos"]["finediving"].update(num_videos=2, dives_per_video=6)
    p["synthesize_videos"]["workers"] = 1
    # a smaller crop keeps I3D on CPU fast; the protocol is otherwise the default's
    p["extract_features"].update(resize=[32, 32], crop=32, flip_view=False, workers=0, batch_snippets=9,
                                 autocast=False)
    p["train"].update(epochs=2, batch_size=4, seeds=[0, 1], device="cpu", validation_fraction=0.2,
                      variants=copy.deepcopy(VARIANTS))
    p["evaluate"].update(num_exemplars=3, batch_size=8)
    p["datasets"].update(run=[DATASET], variants={DATASET: list(VARIANTS), "mtl_aqa": []},
                         dn_only={DATASET: [], "mtl_aqa": []})
    return p


def make_project(root: Path, params: dict, tracking_uri: str) -> dict[str, Path]:
    """root/{data,models} in the pipeline's layout; returns its paths."""
    raw = root / "data" / "raw" / DATASET
    synthesize_videos(params["synthesize_videos"], dataset=DATASET, videos_dir=raw / "videos",
                      annotations_dir=raw / "annotations", masks_dir=raw / "masks")
    frames = root / "data" / "interim" / "frames" / DATASET
    extract_frames(sorted((raw / "videos").glob("*.mp4")), dataset=DATASET, annotations_dir=raw / "annotations",
                   frames_root=frames, cfg=params["extract_frames"])
    ann = root / "data" / "processed" / "annotations" / DATASET
    convert_annotations(dataset=DATASET, annotations_dir=raw / "annotations", out_dir=ann,
                        cfg=params["convert_annotations"])
    weights_dir = root / "data" / "external"
    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(InceptionI3d().state_dict(), weights_dir / "random_i3d.pt")
    import_state_dict(weights_dir / "random_i3d.pt", weights_dir / "i3d")   # as fetch_i3d.weights_path does
    weights = weights_dir / "i3d" / WEIGHTS_NAME
    features = root / "data" / "processed" / "features" / DATASET / "i3d"
    extract_features(frames_root=frames, dives_parquet=ann / "dives.parquet", weights_path=weights,
                     out_dir=features, cfg=params["extract_features"])
    models = root / "models" / DATASET
    for variant in ("tsa-dn", "i3d_mlp-dn"):
        train_variant(variant, features_dir=features, dives_parquet=ann / "dives.parquet", out_dir=models / variant,
                      params=params, tracking_uri=tracking_uri)
    return {"root": root, "videos": raw / "videos", "frames": frames, "dives": ann / "dives.parquet",
            "weights": weights, "features": features, "models": models}


def cut_dive(videos: Path, dive, out: Path) -> Path:
    """One annotated dive copied out of its competition video into its own mp4 (re-encoded)."""
    frames = (np.asarray(img) for _, img in iter_frames(videos / f"{dive.video}.mp4", int(dive.start_frame),
                                                         int(dive.end_frame)))
    write_video(out, frames, fps=25)
    return out


def scorable_dive(dives_parquet: Path, pool_keys: set[str]):
    """A test-split dive whose dive number the training pool has."""
    dives = read_dives(dives_parquet)
    pool_actions = set(dives[dives["key"].isin(pool_keys)]["action_type"])
    test = dives[(dives["split"] == "test") & dives["action_type"].isin(pool_actions)]
    assert len(test), "the rendered set has no test dive whose dive number the pool has"
    return test.iloc[0]
