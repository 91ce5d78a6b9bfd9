"""Real test videos written with PyAV whose frame k shows the number k, and annotations for them.

Frame k carries k in binary as BITS vertical bars (white = 1), which survives H.264, scaling
and JPEG, so a test can read back which frame an extracted image really is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from aqa.data.finediving import Dive, FineDivingAnnotations, write_finediving
from aqa.data.video import write_video

BITS = 10  # frame numbers up to 1023


def code_frame(k: int, height: int = 64, width: int = 120) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    bar = width // BITS
    for b in range(BITS):
        if (k >> b) & 1:
            img[:, b * bar:(b + 1) * bar] = 255
    img[:, BITS * bar:] = 128  # the remainder carries no bit
    return img


def read_code(image: Image.Image | np.ndarray, width: int = 120) -> int:
    a = np.asarray(image, dtype=np.float64).mean(axis=2)
    h, w = a.shape
    bar = w * (width // BITS) / width  # bar width at this image's scale
    k = 0
    for b in range(BITS):
        lo, hi = int(b * bar + 0.3 * bar), int(b * bar + 0.7 * bar) + 1
        if a[h // 4:3 * h // 4, lo:hi].mean() > 128:
            k |= 1 << b
    return k


def write_coded_video(path: Path, num_frames: int, *, height: int = 64, width: int = 120,
                      gop: int | None = None, faststart: bool = False) -> Path:
    write_video(path, (code_frame(k, height, width) for k in range(num_frames)), fps=25,
                gop=gop, faststart=faststart)
    return path


def write_annotations(folder: Path, ranges: dict[str, list[tuple[int, int, int]]]) -> Path:
    """FineDiving release files for dives {video: [(idx, start_frame, end_frame), ...]}."""
    dives = {}
    for video, items in ranges.items():
        for idx, start, end in items:
            n = end - start + 1
            labels = np.full(n, 1, np.int64)
            labels[n // 3:] = 10
            labels[2 * n // 3:] = 36
            dives[(video, idx)] = Dive(
                video=video, idx=idx, split="train", action_type="107B", difficulty=3.0,
                dive_score=60.0, judge_scores=[6.5, 7.0, 6.5], start_frame=start, end_frame=end,
                steps_transit_frames=np.array([n // 3 - 1, 2 * n // 3 - 1]), frame_labels=labels)
    lexicon = {i: f"sub{i}" for i in range(1, 43)}
    write_finediving(FineDivingAnnotations(dives, lexicon, list(dives), []), folder)
    return folder
