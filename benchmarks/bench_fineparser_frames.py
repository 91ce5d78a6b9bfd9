"""FineParser on the frames path (train.backbone finetune, SAP at T1): what a load's masks cost
beside its frames, and that a centre-crop load's masks and SVE equal the cache's.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_fineparser_frames.py <a project after make repro>

Reads <root>'s FineDiving annotations, frames, masks and feature cache (with FineParser's additions).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from aqa.features.cache import FeatureCache
from aqa.train.data import load_cache_additions
from aqa.train.frames import load_clip, load_frame_data


def main(root: str) -> None:
    features = f"{root}/data/processed/features/finediving/i3d"
    t = time.perf_counter()
    data = load_frame_data(f"{root}/data/processed/annotations/finediving/dives.parquet", features,
                           f"{root}/data/interim/frames/finediving", None, "cpu", cache_keys=("sve", "masks"),
                           masks_root=f"{root}/data/raw/finediving/masks")
    print(f"load_frame_data, {len(data.dives)} dives (frame and mask digests checked): {time.perf_counter() - t:.1f} s")
    rows = list(range(8))
    for _ in range(3):
        t = time.perf_counter()
        for r in rows:
            load_clip(data.clips[r], data.geometry, True, 30, 0)
        frames = time.perf_counter() - t
        t = time.perf_counter()
        for r in rows:
            data.masks.clip(r, data.geometry, True, 30, 0)
        print(f"8 dives (flip, top 30): frames {frames:.2f} s, masks {time.perf_counter() - t:.2f} s")
    picked = np.arange(0, len(data.dives), 30)
    cached = load_cache_additions(FeatureCache(features), data.dives, ("masks", "sve")).batch(
        picked, np.zeros_like(picked), data.device)
    ours = data.batch(picked)
    print(f"centre-crop masks equal the cache's: {torch.equal(ours['masks'], cached['masks'])}, "
          f"sve: {torch.equal(ours['sve'], cached['sve'])} ({len(picked)} dives)")


if __name__ == "__main__":
    main(sys.argv[1])
