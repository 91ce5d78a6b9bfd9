"""MTL-AQA annotations as CoRe / FineParser read them: the dive dictionary and one numbered split.

Files (yuxumin/CoRe, MTL-AQA/info/): final_annotations_dict_with_dive_number.pkl, key
(video: int, idx: int) -> {start_frame, end_frame, difficulty, final_score, judge_scores (7),
dive_number, primary_view, position, armstand, rotation_type, ss_no, tw_no}; train_split_<k>.pkl /
test_split_<k>.pkl, lists of keys. `write_mtl_aqa` writes the same layout (the stand-in renderer's
output), so a folder written here can replace the real one and vice versa.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqa.data.pickles import load_pickle
from aqa.errors import AqaError
from aqa.io import write_bytes_atomic

ANNOTATIONS = "final_annotations_dict_with_dive_number.pkl"
REQUIRED_FIELDS = ("start_frame", "end_frame", "difficulty", "final_score", "judge_scores", "dive_number")

MtlKey = tuple[int, int]


class MtlAqaError(AqaError):
    """The MTL-AQA info folder is incomplete or malformed."""


def split_files(split: int) -> tuple[str, str]:
    return f"train_split_{split}.pkl", f"test_split_{split}.pkl"


def video_name(video: int) -> str:
    """Folder name of an MTL-AQA video: two digits, as CoRe's loader and FineDiving name them."""
    return f"{int(video):02d}"


@dataclass
class MtlDive:
    video: int
    idx: int
    dive_number: str  # as released, upper-case letter (e.g. "407C")
    difficulty: float
    final_score: float
    judge_scores: list[float]
    start_frame: int
    end_frame: int


@dataclass
class MtlAqaAnnotations:
    dives: dict[MtlKey, MtlDive]
    train_keys: list[MtlKey] = field(default_factory=list)
    test_keys: list[MtlKey] = field(default_factory=list)


def _keys(obj: object, path: Path) -> list[MtlKey]:
    if not isinstance(obj, (list, tuple)):
        raise MtlAqaError(f"{path}: expected a list of (video, idx) keys, got {type(obj).__name__}")
    try:
        return [(int(v), int(i)) for v, i in obj]
    except (TypeError, ValueError) as exc:
        raise MtlAqaError(f"{path}: a split entry is not a (video, idx) pair of integers: {exc}") from None


def resolve_info_dir(folder: str | Path) -> Path:
    """The folder holding the dive dictionary: `folder` itself, or its `info/` (CoRe's MTL-AQA/ layout)."""
    folder = Path(folder)
    if not (folder / ANNOTATIONS).is_file() and (folder / "info" / ANNOTATIONS).is_file():
        return folder / "info"
    return folder


def read_mtl_records(info_dir: str | Path) -> dict[MtlKey, dict[str, Any]]:
    """The dive dictionary as released (every field kept), keys as (video, idx) integers."""
    path = Path(info_dir) / ANNOTATIONS
    if not path.is_file():
        raise MtlAqaError(f"{info_dir}: missing MTL-AQA file(s): {ANNOTATIONS}")
    raw = load_pickle(path)
    if not isinstance(raw, dict):
        raise MtlAqaError(f"{path}: expected a dict of dives, got {type(raw).__name__}")
    records: dict[MtlKey, dict[str, Any]] = {}
    for raw_key, rec in raw.items():
        try:
            key = (int(raw_key[0]), int(raw_key[1]))
        except (TypeError, ValueError, IndexError):
            raise MtlAqaError(f"{path}: key {raw_key!r} is not a (video, idx) pair of integers") from None
        absent = [f for f in REQUIRED_FIELDS if not isinstance(rec, dict) or f not in rec]
        if absent:
            raise MtlAqaError(f"{path}: dive {key} lacks field(s) {', '.join(absent)}")
        records[key] = rec
    return records


def _dive(key: MtlKey, rec: dict[str, Any]) -> MtlDive:
    return MtlDive(video=key[0], idx=key[1], dive_number=str(rec["dive_number"]),
                   difficulty=float(rec["difficulty"]), final_score=float(rec["final_score"]),
                   judge_scores=[float(j) for j in rec["judge_scores"]],
                   start_frame=int(rec["start_frame"]), end_frame=int(rec["end_frame"]))


def read_mtl_dives(info_dir: str | Path) -> dict[MtlKey, MtlDive]:
    """The dive dictionary alone (no split file needed), as records."""
    return {key: _dive(key, rec) for key, rec in read_mtl_records(info_dir).items()}


def read_split(info_dir: str | Path, split: int) -> tuple[list[MtlKey], list[MtlKey]]:
    """(train keys, test keys) of split `split`, release order kept."""
    info_dir = Path(info_dir)
    names = split_files(split)
    missing = [n for n in names if not (info_dir / n).is_file()]
    if missing:
        raise MtlAqaError(f"{info_dir}: missing MTL-AQA file(s): {', '.join(missing)}")
    train_name, test_name = names
    return (_keys(load_pickle(info_dir / train_name), info_dir / train_name),
            _keys(load_pickle(info_dir / test_name), info_dir / test_name))


def read_mtl_aqa(info_dir: str | Path, split: int = 0) -> MtlAqaAnnotations:
    """Read the dive dictionary and split `split` from an MTL-AQA info folder."""
    info_dir = Path(info_dir)
    names = (ANNOTATIONS, *split_files(split))
    missing = [n for n in names if not (info_dir / n).is_file()]
    if missing:
        raise MtlAqaError(f"{info_dir}: missing MTL-AQA file(s): {', '.join(missing)}")
    dives = read_mtl_dives(info_dir)
    train, test = read_split(info_dir, split)
    return MtlAqaAnnotations(dives, train, test)


def write_mtl_aqa(records: dict[MtlKey, dict[str, Any]], train_keys: list[MtlKey], test_keys: list[MtlKey],
                  folder: str | Path, split: int = 0) -> None:
    """Write the dive dictionary and split `split` in the release layout (each file atomically);
    same input, same bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_name, test_name = split_files(split)
    payloads = {ANNOTATIONS: dict(records), train_name: [tuple(k) for k in train_keys],
                test_name: [tuple(k) for k in test_keys]}
    for name, obj in payloads.items():
        write_bytes_atomic(folder / name, pickle.dumps(obj, protocol=4))
