"""What the masks must be for the mask losses to mean something (FINEPARSER.md 8.4), measured in
the protocol's geometry: coverage (how much of the diver the 112 x 112 crop keeps, how large the
diver is there) and temporal alignment (the mask of frame n lies on frame n: its IoU with a
frame-difference silhouette peaks at lag 0). Also the frame-difference motion mask, FineParser's
trivial reference (aqa.evaluate.mask_references).

Frame differences are taken between DISTINCT consecutive protocol frames: a short dive's protocol
repeats frames (linspace over fewer than 96 frames), and a repeat keeps the mask of the frame it
repeats instead of an empty difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aqa.data import masks as MK
from aqa.features import transforms as T

MOTION_THRESHOLD = 25     # gray levels (of 255): |gray_t - gray_prev| from which a pixel moved; fixed a priori
MAX_LAG = 3               # alignment profile: lags -3..3 protocol frames
LOW_COVERAGE = 0.8        # flag: median share of the diver's pixels inside the crop below this
SMALL_DIVER = 0.003       # flag: foreground below 0.3 % of the crop in most flight frames


def gray(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> float32 (T, H, W): the channels' mean."""
    return np.asarray(frames, dtype=np.float32).mean(axis=-1)


def _distinct(frames: np.ndarray) -> np.ndarray:
    """Per position, the index of its distinct frame (a repeat of the previous position keeps its index)."""
    repeat = np.zeros(len(frames), bool)
    repeat[1:] = [np.array_equal(frames[t], frames[t - 1]) for t in range(1, len(frames))]
    return np.cumsum(~repeat) - 1


def _differences(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|gray difference| to the previous distinct frame for each distinct frame (the first takes the
    second's), and the position -> distinct-frame index."""
    which = _distinct(frames)
    first = np.r_[0, np.flatnonzero(np.diff(which)) + 1]   # position of each distinct frame
    g = gray(np.asarray(frames)[first])
    if len(g) == 1:
        return np.zeros_like(g), which
    diff = np.abs(np.diff(g, axis=0))
    return np.concatenate([diff[:1], diff]), which


def motion_masks(frames: np.ndarray, threshold: float = MOTION_THRESHOLD) -> np.ndarray:
    """The frame-difference motion mask: |gray_t - gray_prev| >= threshold, bool (T, H, W)."""
    diff, which = _differences(frames)
    return (diff >= threshold)[which]


def silhouettes(frames: np.ndarray, threshold: float = MOTION_THRESHOLD) -> np.ndarray:
    """Three-frame difference: moved from the previous AND to the next distinct frame, which
    isolates the object at t (a two-frame difference covers t and t-1 alike): bool (T, H, W)."""
    diff, which = _differences(frames)
    moved = diff >= threshold
    after = np.concatenate([moved[1:], moved[-1:]])        # the difference to the next frame
    return (moved & after)[which]


def alignment_profile(masks: np.ndarray, sil: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """Mean IoU of mask[t + lag] with silhouette[t] over t, for lag = -max_lag..max_lag: (2 max_lag + 1,)."""
    out = []
    n = len(masks)
    for lag in range(-max_lag, max_lag + 1):
        t = np.arange(max(0, -lag), min(n, n - lag))
        inter = (masks[t + lag] & sil[t]).sum(axis=(1, 2))
        union = (masks[t + lag] | sil[t]).sum(axis=(1, 2))
        ok = union > 0
        out.append(float((inter[ok] / union[ok]).mean()) if ok.any() else float("nan"))
    return np.array(out)


def dive_mask_checks(frame_paths: Sequence[Path], mask_paths: Sequence[Path], frame_size: Sequence[int],
                     resize_hw: Sequence[int], crop: int, transitions: Sequence[int] | None = None
                     ) -> dict[str, Any]:
    """One dive's coverage per protocol frame (centre crop) and its alignment profile.

    `transitions` (t1, t2 on the 96 scale) split the frames into take-off, flight and entry (the
    steps start at t + 1, as the loaders' b1, b2)."""
    top, left = T.center_crop_box(int(resize_hw[0]), int(resize_hw[1]), crop)
    squeezed = np.stack([MK.binarise(MK.load_squeezed_mask(p, frame_size, resize_hw)) for p in mask_paths])
    inside = squeezed[:, top:top + crop, left:left + crop]
    total = squeezed.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        crop_share = np.where(total > 0, inside.sum(axis=(1, 2)) / total, np.nan)
    frames = T.crop_clip(frame_paths, lambda p: T.load_resized(p, resize_hw), crop, top, left)
    step = np.zeros(len(mask_paths), np.int64)
    if transitions is not None:
        b1, b2 = int(transitions[0]) + 1, int(transitions[1]) + 1
        step[b1:] = 1
        step[b2:] = 2
    return {"fg_fraction": inside.mean(axis=(1, 2)), "crop_share": crop_share, "step": step,
            "lag_profile": alignment_profile(inside, silhouettes(frames))}


def mask_check_report(dives: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """FINEPARSER.md 8.4's numbers over dives, and its two flags."""
    fg = np.concatenate([d["fg_fraction"] for d in dives])
    share = np.concatenate([d["crop_share"] for d in dives])
    step = np.concatenate([d["step"] for d in dives])
    profiles = np.stack([d["lag_profile"] for d in dives])
    lags = np.arange(-MAX_LAG, MAX_LAG + 1)
    peaks = lags[np.nanargmax(np.where(np.isnan(profiles), -1, profiles), axis=1)]
    flight = fg[step == 1]
    report = {
        "dives": len(dives), "frames": int(fg.size),
        "median_crop_share": float(np.nanmedian(share)),
        "frames_losing_foreground": float(np.mean(share[~np.isnan(share)] < 1)),
        "frames_without_foreground": float(np.mean(fg == 0)),
        "median_fg_fraction": {name: float(np.median(fg[step == k])) if (step == k).any() else None
                               for k, name in enumerate(("take_off", "flight", "entry"))},
        "flight_frames_below_0.3%": float(np.mean(flight < SMALL_DIVER)) if flight.size else None,
        "lag_profile": {int(lag): float(v) for lag, v in zip(lags, np.nanmean(profiles, axis=0))},
        "dives_peaking_at_lag_0": float(np.mean(peaks == 0)),
    }
    report["flags"] = [msg for bad, msg in (
        (report["median_crop_share"] < LOW_COVERAGE,
         f"median crop coverage {report['median_crop_share']:.3f} < {LOW_COVERAGE}"),
        (flight.size and report["flight_frames_below_0.3%"] > 0.5, "most flight frames have < 0.3 % foreground"),
        (report["lag_profile"][0] < max(report["lag_profile"].values()), "alignment does not peak at lag 0"),
    ) if bad]
    return report


def _main() -> None:
    """`python -m aqa.data.mask_checks --dives ... --frames ... --masks ... [--split test]`: the
    report (JSON) on one split's dives (all dives with --split all), centre crop of 200 x 112."""
    import json

    import click

    @click.command()
    @click.option("--dives", "dives_parquet", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  required=True, help="dives.parquet of convert_annotations.")
    @click.option("--frames", "frames_root", type=click.Path(exists=True, file_okay=False, path_type=Path),
                  required=True, help="Frames root <video>/<idx>/<frame:05d>.jpg.")
    @click.option("--masks", "masks_root", type=click.Path(exists=True, file_okay=False, path_type=Path),
                  required=True, help="Masks root in the same layout.")
    @click.option("--split", default="test", show_default=True, help="train, test or all.")
    def main(dives_parquet: Path, frames_root: Path, masks_root: Path, split: str) -> None:
        """Print FINEPARSER.md 8.4's mask checks on the protocol geometry (96 frames, 200 x 112, crop 112)."""
        from aqa.data.annotations import read_dives
        from aqa.features.extract import dive_job

        dives = read_dives(dives_parquet)
        if split != "all":
            dives = dives[dives["split"] == split]
        checks = []
        for row in dives.sort_values("key").itertuples(index=False):
            job = dive_job(frames_root, row.video, row.idx, row.start_frame, row.end_frame, 96)
            paths = MK.dive_mask_paths(masks_root, row.video, row.idx, row.start_frame, row.end_frame, 96)
            checks.append(dive_mask_checks(job.frame_paths, paths, MK.image_size(job.frame_paths[0]), (200, 112), 112,
                                           row.transitions_96))
        click.echo(json.dumps(mask_check_report(checks), indent=1))

    main()


if __name__ == "__main__":
    _main()
