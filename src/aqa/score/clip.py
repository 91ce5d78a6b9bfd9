"""The new dive's frames: a video cut into JPEGs exactly as extract_frames cuts a dive, or a
folder of frames used as they are (as the pipeline uses real FineDiving frames).

A clip's frames are numbered by the clip itself: 0 .. n-1 for a video (the first decoded frame
is 0), the file names' numbers for a folder (<frame:05d>.jpg, consecutive, as extract_features
requires).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aqa.data.datasets import DiveRange
from aqa.data.frames import FrameExtractionError, extract_video
from aqa.data.video import FrameReader, VideoError
from aqa.errors import AqaError

CLIP_VIDEO, CLIP_IDX = "clip", 0   # the clip's place in a frames root: <root>/clip/0/<n>.jpg


class ClipError(AqaError):
    """The clip is not a readable video or frame folder, or is too short."""


@dataclass(frozen=True)
class Clip:
    source: Path                 # the video file or frame folder given
    frames_root: Path            # holds <video>/<idx>/<n:05d>.jpg, the layout extract_features reads
    video: str
    idx: int
    first: int                   # first and last frame number of the clip
    last: int

    @property
    def num_frames(self) -> int:
        return self.last - self.first + 1

    @property
    def folder(self) -> Path:
        return self.frames_root / self.video / str(self.idx)

    def frame_path(self, n: int) -> Path:
        return self.folder / f"{n:05d}.jpg"

    def digest(self) -> str:
        """sha256 of the frames' names and bytes: the clip's identity (its exemplar draw's key)."""
        h = hashlib.sha256()
        for n in range(self.first, self.last + 1):
            path = self.frame_path(n)
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        return h.hexdigest()


def count_frames(path: Path) -> int:
    """Frames the decoder yields (the container's own count can be missing or wrong)."""
    with FrameReader(path, seek_threshold=None) as reader:
        n = 1   # FrameReader decodes frame 0 when it opens: a file that opens has one frame
        try:
            for n, _ in reader.read(1, 10**9):
                pass
        except VideoError as exc:
            if "video ends after" not in str(exc):
                raise
            n = reader.position
    return n


def video_clip(path: Path, work_dir: Path, *, height: int, jpeg_quality: int) -> Clip:
    """Cut every frame of the video `path` into work_dir/clip/0/<n>.jpg (extract_frames' code)."""
    try:
        n = count_frames(path)
    except VideoError as exc:
        raise ClipError(f"{path}: not a readable video ({exc})".replace(f"({path}: ", "(")) from None
    dive = DiveRange(CLIP_VIDEO, CLIP_IDX, 0, n - 1)
    try:
        extract_video(path, [dive], work_dir / CLIP_VIDEO, height=height, jpeg_quality=jpeg_quality, workers=1)
    except FrameExtractionError as exc:
        raise ClipError(str(exc)) from None
    return Clip(path, work_dir, CLIP_VIDEO, CLIP_IDX, 0, n - 1)


def folder_range(path: Path) -> tuple[int, int]:
    """(first, last) frame number of a folder of <frame:05d>.jpg frames with consecutive numbers."""
    numbers = []
    for p in path.glob("*.jpg"):
        if not p.stem.isdigit() or p.name != f"{int(p.stem):05d}.jpg":
            raise ClipError(f"{p}: frames are named <frame:05d>.jpg (e.g. 00012.jpg), as extract_frames writes them")
        numbers.append(int(p.stem))
    if not numbers:
        raise ClipError(f"{path}: no .jpg frames in the folder")
    first, last = min(numbers), max(numbers)
    missing = sorted(set(range(first, last + 1)) - set(numbers))
    if missing:
        raise ClipError(f"{path}: {len(missing)} frame(s) missing between {first} and {last}, e.g. {missing[:5]}")
    return first, last


def open_clip(path: Path, work_dir: Path, *, height: int, jpeg_quality: int, min_frames: int) -> Clip:
    """The clip of a video file or a frame folder; ClipError (one line) for anything else or a
    clip shorter than `min_frames`."""
    path = Path(path)
    if path.is_dir():
        first, last = folder_range(path)
        # read where it is: linked into the <root>/<video>/<idx>/ layout extract_features reads
        link = work_dir / CLIP_VIDEO / str(CLIP_IDX)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve(), target_is_directory=True)
        clip = Clip(path, work_dir, CLIP_VIDEO, CLIP_IDX, first, last)
    elif path.is_file():
        clip = video_clip(path, work_dir, height=height, jpeg_quality=jpeg_quality)
    else:
        raise ClipError(f"{path}: no such video file or frame folder")
    if clip.num_frames < min_frames:
        raise ClipError(f"{path}: {clip.num_frames} frame(s), fewer than the {min_frames} the protocol needs "
                        "(one I3D snippet)")
    return clip
