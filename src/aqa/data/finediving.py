"""The FineDiving annotation release: six pickles, read into records and written back.

File names and value layouts follow the public release exactly (PAPERS.md section 1), so a
folder written here can replace the real one and vice versa.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aqa.data.pickles import load_pickle
from aqa.errors import AqaError
from aqa.io import write_bytes_atomic

COARSE = "FineDiving_coarse_annotation.pkl"
FINE = "FineDiving_fine-grained_annotation.pkl"
AQA = "fine-grained_annotation_aqa.pkl"
SUB_ACTIONS = "Sub_action_Types_Table.pkl"
TRAIN_SPLIT = "train_split.pkl"
TEST_SPLIT = "test_split.pkl"
RELEASE_FILES = (COARSE, FINE, AQA, SUB_ACTIONS, TRAIN_SPLIT, TEST_SPLIT)

Key = tuple[str, int]


@dataclass
class Dive:
    """One annotated dive. Frame numbers are absolute positions in the raw competition video."""

    video: str
    idx: int
    split: str  # "train" | "test"
    action_type: str  # dive number, e.g. "407c"
    difficulty: float
    dive_score: float
    judge_scores: list[float]
    start_frame: int
    end_frame: int
    steps_transit_frames: np.ndarray  # int, 2-4 values, relative to start_frame
    frame_labels: np.ndarray  # int sub-action id per frame, length end-start+1

    @property
    def key(self) -> Key:
        return (self.video, self.idx)

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1


@dataclass
class FineDivingAnnotations:
    dives: dict[Key, Dive]
    sub_action_types: dict[int, str]  # the 42-name lexicon
    train_keys: list[Key] = field(default_factory=list)  # release order is kept
    test_keys: list[Key] = field(default_factory=list)


class AnnotationError(AqaError):
    """An annotation folder is incomplete or inconsistent."""


def read_finediving(folder: str | Path) -> FineDivingAnnotations:
    """Read the six release files of a FineDiving annotation folder."""
    folder = Path(folder)
    missing = [name for name in RELEASE_FILES if not (folder / name).is_file()]
    if missing:
        raise AnnotationError(f"{folder}: missing FineDiving annotation file(s): {', '.join(missing)}")
    coarse = load_pickle(folder / COARSE)
    fine = load_pickle(folder / FINE)
    lexicon = {int(k): str(v) for k, v in load_pickle(folder / SUB_ACTIONS).items()}
    train_keys = [(str(v), int(i)) for v, i in load_pickle(folder / TRAIN_SPLIT)]
    test_keys = [(str(v), int(i)) for v, i in load_pickle(folder / TEST_SPLIT)]
    split_of = {k: "train" for k in train_keys} | {k: "test" for k in test_keys}

    dives: dict[Key, Dive] = {}
    for raw_key, c in coarse.items():
        key = (str(raw_key[0]), int(raw_key[1]))
        if key not in fine:
            raise AnnotationError(f"{folder / FINE}: no fine-grained entry for dive {key}")
        if key not in split_of:
            raise AnnotationError(f"{folder}: dive {key} is in neither split")
        f = fine[key]
        dives[key] = Dive(
            video=key[0],
            idx=key[1],
            split=split_of[key],
            action_type=str(c["action_type"]),
            difficulty=float(c["difficulty"]),
            dive_score=float(c["dive_score"]),
            judge_scores=[float(j) for j in c["judge_scores"]],
            start_frame=int(c["start_frame"]),
            end_frame=int(c["end_frame"]),
            steps_transit_frames=np.asarray(f["steps_transit_frames"], dtype=np.int64),
            frame_labels=np.asarray(f["frames_labels"], dtype=np.int64),
        )
    return FineDivingAnnotations(dives, lexicon, train_keys, test_keys)


def release_payloads(ann: FineDivingAnnotations) -> dict[str, object]:
    """The objects of the six release files, in the release's own layout."""
    coarse, fine, aqa = {}, {}, {}
    for key, d in ann.dives.items():
        labels = np.asarray(d.frame_labels, dtype=np.int64)
        transits = np.asarray(d.steps_transit_frames, dtype=np.int64)
        coarse[key] = {
            "action_type": d.action_type,
            "start_frame": int(d.start_frame),
            "end_frame": int(d.end_frame),
            "dive_score": float(d.dive_score),
            "difficulty": float(d.difficulty),
            "judge_scores": [float(j) for j in d.judge_scores],
        }
        used = sorted(set(labels.tolist()))
        fine[key] = {
            "action_type": d.action_type,
            "dive_score": float(d.dive_score),
            "difficulty": float(d.difficulty),
            "steps_transit_frames": transits,
            "frames_labels": labels,
            "sub-action_types": {np.int64(i): ann.sub_action_types[i] for i in used},
        }
        aqa[key] = [d.action_type, float(d.dive_score), float(d.difficulty), transits, labels]
    return {
        COARSE: coarse,
        FINE: fine,
        AQA: aqa,
        SUB_ACTIONS: dict(ann.sub_action_types),
        TRAIN_SPLIT: list(ann.train_keys),
        TEST_SPLIT: list(ann.test_keys),
    }


def write_finediving(ann: FineDivingAnnotations, folder: str | Path) -> None:
    """Write the six release files (each atomically); same input, same bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in release_payloads(ann).items():
        write_bytes_atomic(folder / name, pickle.dumps(obj, protocol=4))
