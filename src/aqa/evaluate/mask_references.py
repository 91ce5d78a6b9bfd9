"""Trivial references for FineParser's mask metrics, so that a SAP number on stand-in footage has
a floor: "all background" (every pixel 0) and the frame-difference motion mask
(aqa.data.mask_checks.motion_masks: |gray_t - gray_prev| >= 25 of 255 on the protocol frames).
Both are scored exactly as SAP's maps will be: the test queries' 96 protocol frames, the centre
112 x 112 crop, aqa.evaluate.mask_metrics (per frame, per dive, over dives).

    python -m aqa.evaluate.mask_references --dives data/processed/annotations/finediving/dives.parquet \\
        --frames data/interim/frames/finediving --masks data/raw/finediving/masks
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import click
import numpy as np

from aqa.data import masks as MK
from aqa.data.mask_checks import MOTION_THRESHOLD, motion_masks
from aqa.evaluate import mask_metrics as M
from aqa.features import transforms as T

REFERENCES = ("all_background", "motion")


def reference_maps(frames: np.ndarray, threshold: float = MOTION_THRESHOLD) -> dict[str, np.ndarray]:
    """The references' maps for one dive's cropped protocol frames (T, H, W, 3) uint8: (T, H, W) in {0, 1}."""
    shape = np.asarray(frames).shape[:3]
    return {"all_background": np.zeros(shape), "motion": motion_masks(frames, threshold).astype(np.float64)}


def protocol_dives(dives, frames_root: str | Path, masks_root: str | Path, num_frames: int,
                   resize_hw: Sequence[int], crop: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(key, frames (T, crop, crop, 3) uint8, masks (T, crop, crop) bool) of each dive of the
    `dives` table, centre-cropped as evaluation sees them."""
    from aqa.features.extract import dive_job

    top, left = T.center_crop_box(int(resize_hw[0]), int(resize_hw[1]), crop)
    for row in dives.itertuples(index=False):
        job = dive_job(Path(frames_root), row.video, row.idx, row.start_frame, row.end_frame, num_frames)
        size = MK.image_size(job.frame_paths[0])
        paths = MK.dive_mask_paths(masks_root, row.video, row.idx, row.start_frame, row.end_frame, num_frames)
        frames = T.crop_clip(job.frame_paths, lambda p: T.load_resized(p, resize_hw), crop, top, left)
        yield job.key, frames, MK.mask_clip(paths, size, resize_hw, crop, False, top, left)


def reference_scores(dives: Iterable[tuple[str, np.ndarray, np.ndarray]],
                     threshold: float = MOTION_THRESHOLD) -> dict[str, dict[str, float]]:
    """Each reference's mask metrics (aqa.evaluate.mask_metrics.summarise) over `dives`."""
    scores: dict[str, list[M.DiveMaskScores]] = {name: [] for name in REFERENCES}
    for _, frames, gt in dives:
        for name, pred in reference_maps(frames, threshold).items():
            scores[name].append(M.dive_scores(pred, gt, pred >= 0.5))
    return {name: M.summarise(s) for name, s in scores.items()}


@click.command()
@click.option("--dives", "dives_parquet", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="dives.parquet of convert_annotations (its split column picks the dives).")
@click.option("--frames", "frames_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Frames root <video>/<idx>/<frame:05d>.jpg.")
@click.option("--masks", "masks_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Masks root in the same layout (stand-in or FineDiving-HM).")
@click.option("--split", default="test", show_default=True, help="The dives scored (the test queries).")
@click.option("--num-frames", default=96, show_default=True)
@click.option("--resize", nargs=2, type=int, default=(200, 112), show_default=True, help="Squeeze (height width).")
@click.option("--crop", default=112, show_default=True)
@click.option("--motion-threshold", default=MOTION_THRESHOLD, show_default=True,
              help="Gray levels (of 255) from which a pixel counts as moved.")
def main(dives_parquet, frames_root, masks_root, split, num_frames, resize, crop, motion_threshold) -> None:
    """Print the trivial references' mask metrics (JSON) on one split's dives."""
    from aqa.data.annotations import read_dives

    dives = read_dives(dives_parquet)
    dives = dives[dives["split"] == split].sort_values("key")
    scores = reference_scores(protocol_dives(dives, frames_root, masks_root, num_frames, resize, crop),
                              motion_threshold)
    click.echo(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
