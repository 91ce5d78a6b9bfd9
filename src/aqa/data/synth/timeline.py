"""Where dives sit on a competition video's timeline, and the step timing the renderer follows."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from aqa.data.finediving import Dive, FineDivingAnnotations, Key
from aqa.data.synth.dive_numbers import ENTRY_LABEL, TWIST_LABELS
from aqa.data.synth.sampler import rng_for


@dataclass(frozen=True)
class StepTiming:
    """Frame offsets inside one dive (0 = its first frame)."""

    num_frames: int
    leave: int  # first flight frame (first frame of the second step)
    entry: int  # first frame of the last step (Entry)
    contact: int  # hands reach the water (inside the entry step)
    twist: tuple[int, int] | None  # [start, end) of the twisting part of the flight


def step_timing(labels: np.ndarray, half_twists: int) -> StepTiming:
    """Step frames from the per-frame labels, as the reference loader reads transitions."""
    labels = np.asarray(labels)
    n = len(labels)
    changes = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    leave = int(changes[0]) if len(changes) else n // 3
    entry = int(changes[-1]) if len(changes) >= 2 else max(leave + 1, (2 * n) // 3)
    if labels[-1] != ENTRY_LABEL or entry <= leave:  # odd label runs: fall back to thirds
        leave, entry = n // 3, (2 * n) // 3
    leave = int(np.clip(leave, 1, n - 3))
    entry = int(np.clip(entry, leave + 1, n - 2))
    contact = int(min(n - 1, entry + max(2, round(0.3 * (n - entry)))))
    twist = None
    if half_twists:
        idx = np.flatnonzero(np.isin(labels[leave:entry], list(TWIST_LABELS))) + leave
        if len(idx):
            twist = (int(idx[0]), int(idx[-1]) + 1)
        else:
            span = entry - leave
            twist = (leave + span // 4, entry - span // 4)
    return StepTiming(n, leave, entry, contact, twist)


@dataclass(frozen=True)
class VideoPlan:
    name: str
    keys: list[Key]  # dives in idx order
    num_frames: int  # total length of the video


def place_on_timeline(ann: FineDivingAnnotations, gap_frames: tuple[int, int], seed: int
                      ) -> tuple[FineDivingAnnotations, list[VideoPlan]]:
    """Move every dive onto its synthetic video's own timeline.

    Dives of a video follow in idx order, each after a random gap (the first one too), and one
    more gap ends the video. Labels and step offsets are relative, so they do not change.
    """
    lo, hi = int(gap_frames[0]), int(gap_frames[1])
    if hi < lo:
        raise ValueError(f"gap_frames must be [min, max], got {list(gap_frames)}")
    by_video: dict[str, list[Key]] = {}
    for key in ann.dives:
        by_video.setdefault(key[0], []).append(key)
    dives: dict[Key, Dive] = {}
    plans = []
    for video in sorted(by_video):
        keys = sorted(by_video[video], key=lambda k: k[1])
        rng = rng_for(seed, video, "timeline")
        cursor = 0
        for key in keys:
            d = ann.dives[key]
            start = cursor + int(rng.integers(lo, hi + 1))
            dives[key] = replace(d, start_frame=start, end_frame=start + len(d.frame_labels) - 1)
            cursor = dives[key].end_frame + 1
        plans.append(VideoPlan(video, keys, cursor + int(rng.integers(lo, hi + 1))))
    ordered = {k: dives[k] for k in ann.dives}  # keep the release's key order
    return FineDivingAnnotations(ordered, dict(ann.sub_action_types), list(ann.train_keys),
                                 list(ann.test_keys)), plans
