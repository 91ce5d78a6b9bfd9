"""Masks and frames of dives the stand-in renderer draws stay aligned through the protocol (issue 9's
acceptance test), through the real mp4, its decode by extract_frames and the masks on disk; the
8.4 checks, the motion mask and the trivial references on the same dives."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from aqa.data import mask_checks as C
from aqa.data import masks as MK
from aqa.data.frames import extract_frames
from aqa.data.synthesize import synthesize_videos
from aqa.evaluate import mask_references as R
from aqa.features import transforms as T
from aqa.features.extract import dive_job
from aqa.train.frames import FrameGeometry, draw_augmentation, load_clip

GEOMETRY = FrameGeometry(num_frames=96, snippet_length=16, snippet_stride=10, num_snippets=9, resize=(200, 112),
                         crop=112, normalization="imagenet")
NEAR = 24   # max channel difference from a colour the diver has in the same frame (noise, H.264, lighting)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, repo_params):
    """One stand-in video of 3 dives at the default 456 x 256, cut into frames by extract_frames."""
    from aqa.data.datasets import read_ranges

    root = tmp_path_factory.mktemp("rendered")
    cfg = copy.deepcopy(repo_params["synthesize_videos"])
    cfg["finediving"].update(num_videos=1, dives_per_video=3)
    cfg["workers"] = 1
    synthesize_videos(cfg, dataset="finediving", videos_dir=root / "videos", annotations_dir=root / "ann",
                      masks_dir=root / "masks")
    extract_frames(sorted((root / "videos").glob("*.mp4")), dataset="finediving", annotations_dir=root / "ann",
                   frames_root=root / "frames", cfg={**repo_params["extract_frames"], "workers": 1})
    dives = []
    for r in sorted(read_ranges("finediving", root / "ann"), key=lambda r: r.idx):
        job = dive_job(root / "frames", r.video, r.idx, r.start_frame, r.end_frame, 96)
        masks = MK.dive_mask_paths(root / "masks", r.video, r.idx, r.start_frame, r.end_frame, 96)
        dives.append((r, job, masks))
    return root, dives


def _diver_colours(frame_path, mask_path) -> np.ndarray:
    """The colours the diver (and splash) has in the full-resolution decoded frame, away from its edge."""
    frame = np.asarray(Image.open(frame_path).convert("RGB"), dtype=np.int16)
    inner = ndimage.binary_erosion(np.asarray(Image.open(mask_path)) >= 128, iterations=2)
    return np.unique(frame[inner] // 4, axis=0) * 4


def on_diver_fraction(job, mask_paths, masks: np.ndarray, flip: bool, top: int) -> float:
    """Share of the transformed mask's inner foreground pixels whose colour, in the frame transformed
    the same way, is one the diver has in that frame (within NEAR levels)."""
    frames = load_clip(job.frame_paths, GEOMETRY, flip, top, 0).permute(1, 2, 3, 0).numpy().astype(np.int16)
    near = total = 0
    for t in range(0, 96, 4):
        colours = _diver_colours(job.frame_paths[t], mask_paths[t])
        pixels = frames[t][ndimage.binary_erosion(masks[t])]
        if len(colours) == 0 or len(pixels) == 0:
            continue
        dist = np.abs(pixels[:, None, :] - colours[None]).max(axis=-1).min(axis=1)
        near += int((dist <= NEAR).sum())
        total += len(pixels)
    assert total > 500, "too few foreground pixels to judge"
    return near / total


@pytest.mark.parametrize("crop", ["centre", "training"])
@pytest.mark.parametrize("flip", [False, True])
def test_mask_foreground_lies_on_the_divers_colour_in_the_same_transformed_frame(rendered, crop, flip):
    root, dives = rendered
    for r, job, mask_paths in dives:
        size = MK.image_size(job.frame_paths[0])
        if crop == "centre":
            top = T.center_crop_box(200, 112, 112)[0]
        else:   # a training draw's offsets, as the fine-tuning loads take them
            _, top, left = draw_augmentation(7, r.idx, f"{r.video}/{r.idx}", "query", GEOMETRY)
            assert left == 0
        masks = MK.mask_clip(mask_paths, size, (200, 112), 112, flip, top, 0)
        aligned = on_diver_fraction(job, mask_paths, masks, flip, top)
        assert aligned >= 0.95, (r, aligned)
        # the same judge refuses a misaligned mask: flipped the other way, or cropped 24 rows off
        wrong_flip = MK.mask_clip(mask_paths, size, (200, 112), 112, not flip, top, 0)
        shifted = MK.mask_clip(mask_paths, size, (200, 112), 112, flip, top + 24 if top < 64 else top - 24, 0)
        assert on_diver_fraction(job, mask_paths, shifted, flip, top) < aligned - 0.05, r
        assert on_diver_fraction(job, mask_paths, wrong_flip, flip, top) < aligned, r


def test_coverage_and_temporal_alignment_of_rendered_masks(rendered):
    root, dives = rendered
    checks = []
    for r, job, mask_paths in dives:
        c = C.dive_mask_checks(job.frame_paths, mask_paths, MK.image_size(job.frame_paths[0]), (200, 112), 112)
        assert c["fg_fraction"].shape == (96,) and np.nanmax(c["crop_share"]) <= 1
        checks.append(c)
    report = C.mask_check_report(checks)
    assert report["lag_profile"][0] == max(report["lag_profile"].values())   # the mask of frame n is frame n's
    assert report["median_crop_share"] > C.LOW_COVERAGE and report["frames_without_foreground"] < 0.05
    assert report["flags"] == []
    # frames out of step with their masks would move the peak: shift the masks by two frames
    shifted = [{**c, "lag_profile": C.alignment_profile(
        np.roll(_inside(mask_paths, job), 2, axis=0), C.silhouettes(_frames(job)))} for c, (_, job, mask_paths)
        in zip(checks, dives)]
    moved = C.mask_check_report(shifted)
    assert moved["lag_profile"][2] == max(moved["lag_profile"].values()) > moved["lag_profile"][0]
    assert "alignment does not peak at lag 0" in moved["flags"]


def _inside(mask_paths, job) -> np.ndarray:
    return MK.mask_clip(mask_paths, MK.image_size(job.frame_paths[0]), (200, 112), 112, False, 44, 0)


def _frames(job) -> np.ndarray:
    return T.crop_clip(job.frame_paths, lambda p: T.load_resized(p, (200, 112)), 112, 44, 0)


def test_motion_mask_is_the_thresholded_difference_to_the_previous_distinct_frame():
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    frames[1, 2:4, 2:4] = 30          # appears: |30 - 0| >= 25
    frames[2] = frames[1]             # a repeated protocol frame keeps frame 1's mask
    frames[3, 2:4, 2:4] = 40
    frames[3, 6, 6] = 20              # below the threshold
    m = C.motion_masks(frames)
    assert m[1, 2:4, 2:4].all() and m[1].sum() == 4
    assert (m[0] == m[1]).all()       # the first frame takes the second's difference
    assert (m[2] == m[1]).all()
    assert not m[3].any()             # |40 - 30| < 25 and |20 - 0| < 25


def test_trivial_references_on_rendered_dives(rendered):
    root, dives = rendered
    import pandas as pd

    table = pd.DataFrame([{"video": r.video, "idx": r.idx, "start_frame": r.start_frame, "end_frame": r.end_frame}
                          for r, _, _ in dives])
    scores = R.reference_scores(R.protocol_dives(table, root / "frames", root / "masks", 96, (200, 112), 112))
    bg, motion = scores["all_background"], scores["motion"]
    assert bg["dives"] == motion["dives"] == 3 and bg["frames"] == 288
    # all background: MAE = the mean foreground fraction; no positive pixel; S = 1 - object term only
    gt = np.concatenate([_inside(m, j) for _, j, m in dives])
    assert bg["mae"] == pytest.approx(np.mean([_inside(m, j).mean() for _, j, m in dives]))
    assert bg["iou"] == bg["f1"] == 0.0 and 0 < bg["smeasure"] < 0.6
    assert 0 < gt.mean() < 0.2
    # the motion mask finds part of the diver: better than nothing on every F and S
    assert motion["iou"] > 0.05 and motion["fbeta_mean"] > bg["fbeta_mean"] and motion["smeasure"] > bg["smeasure"]
