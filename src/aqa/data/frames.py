"""extract_frames: cut every annotated dive of a raw video into JPEG frames.

Layout (FineDiving release, for every dataset): `<frames_root>/<video>/<idx>/<frame:05d>.jpg`, frames numbered by
their absolute number in the raw video (0 = first decoded frame), scaled to `height` with the
aspect kept and the width rounded to an even number (ffmpeg `scale=-2:<height>`, bicubic).

One decoding pass per video, dives in frame order, seeking only over long gaps; the main thread
decodes while a pool of `workers` threads scales (libswscale) and JPEG-encodes (Pillow,
libjpeg-turbo), both of which release the GIL. Each dive is written into a temporary folder and
renamed when complete, so a dive folder that exists is whole; reruns skip complete dives and
clear leftovers of interrupted runs.

When params' `extract_frames.frames_root.<dataset>` is set (real frames), the drivers skip this
stage for that dataset; this module never reads that key. The dives of a video come from the
dataset's raw annotation folder in its release layout (`aqa.data.datasets.read_ranges`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from tqdm import tqdm

from aqa.data.datasets import DiveRange
from aqa.data.datasets import read_ranges
from aqa.data.video import FrameReader, VideoError, resize_frame
from aqa.errors import AqaError
from aqa.io import atomic_path

log = logging.getLogger(__name__)

# Decoded frames waiting for a worker, per worker: bounds memory while keeping workers busy.
QUEUE_PER_WORKER = 8
# Seek instead of decoding through a gap longer than this many frames (10 s at 25 fps).
SEEK_THRESHOLD = 250


class FrameExtractionError(AqaError, RuntimeError):
    """A video could not be cut into dive frames (names the video and the dive)."""


@dataclass
class VideoStats:
    video: str
    dives_written: int = 0
    dives_skipped: int = 0
    frames_written: int = 0


def frame_name(n: int) -> str:
    return f"{n:05d}.jpg"


def expected_names(dive: DiveRange) -> set[str]:
    return {frame_name(n) for n in range(dive.start_frame, dive.end_frame + 1)}


def dive_is_complete(dive_dir: Path, dive: DiveRange) -> bool:
    """True if `dive_dir` holds exactly the dive's frame files, no more, no fewer."""
    return dive_dir.is_dir() and set(os.listdir(dive_dir)) == expected_names(dive)


def _dive_label(dive: DiveRange) -> str:
    return f"dive {dive.video}/{dive.idx} (frames {dive.start_frame}-{dive.end_frame})"


def _clusters(dives: Sequence[DiveRange]) -> list[list[DiveRange]]:
    """Dives in frame order, grouped where their ranges overlap (each group is read once)."""
    groups: list[list[DiveRange]] = []
    for d in sorted(dives, key=lambda d: (d.start_frame, d.end_frame, d.idx)):
        if groups and d.start_frame <= max(g.end_frame for g in groups[-1]):
            groups[-1].append(d)
        else:
            groups.append([d])
    return groups


@dataclass
class _DiveWriter:
    """A dive being written into its temporary folder; `commit` renames it into place."""

    dive: DiveRange
    final: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    futures: list[Future] = field(default_factory=list)
    tmp: Path | None = None

    def open(self) -> None:
        self.tmp = self.stack.enter_context(atomic_path(self.final))
        self.tmp.mkdir()

    def commit(self) -> int:
        try:
            for fut in self.futures:
                fut.result()  # re-raises an encoding error
            names = set(os.listdir(self.tmp))
            if names != expected_names(self.dive):
                raise FrameExtractionError(f"{_dive_label(self.dive)}: wrote {len(names)} frames, "
                                           f"expected {self.dive.num_frames}")
        except BaseException:
            self.abort()
            raise
        self.stack.close()  # atomic_path renames the temporary folder onto the dive folder
        return len(names)

    def abort(self) -> None:
        # Hand the exception to atomic_path so it removes the temporary folder, not renames it.
        self.stack.__exit__(*sys.exc_info())


class _Encoder:
    """Scales and JPEG-encodes frames on a thread pool, one swscale context per thread."""

    def __init__(self, height: int, quality: int, workers: int):
        self.height, self.quality = height, quality
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jpeg")
        self.local = threading.local()
        self.inflight: deque[Future] = deque()
        self.limit = QUEUE_PER_WORKER * workers

    def _encode(self, frame: VideoFrame, paths: list[Path]) -> None:
        reformatter = getattr(self.local, "reformatter", None)
        if reformatter is None:
            reformatter = self.local.reformatter = VideoReformatter()
        image = resize_frame(frame, self.height, reformatter)
        for path in paths:
            image.save(path, format="JPEG", quality=self.quality)

    def submit(self, frame: VideoFrame, paths: list[Path]) -> Future:
        while len(self.inflight) >= self.limit:
            self.inflight.popleft().result()
        fut = self.pool.submit(self._encode, frame, paths)
        self.inflight.append(fut)
        return fut

    def shutdown(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


def _clear_leftovers(video_dir: Path) -> None:
    """Remove temporary dive folders of an interrupted run (atomic_path's `.<idx>.*.tmp`)."""
    if not video_dir.is_dir():
        return
    for tmp in video_dir.glob(".*.tmp"):
        log.warning("%s: removing incomplete leftover %s", video_dir, tmp.name)
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()


def _check_ranges(video_path: Path, dives: Sequence[DiveRange], num_frames: int) -> None:
    for d in dives:
        if d.start_frame < 0 or d.end_frame < d.start_frame:
            raise FrameExtractionError(f"{video_path}: {_dive_label(d)} is not a valid frame range")
        if num_frames and d.end_frame >= num_frames:
            raise FrameExtractionError(
                f"{video_path}: {_dive_label(d)} lies beyond the end of the video "
                f"({num_frames} frames, last frame number {num_frames - 1})")


def extract_video(video_path: Path, dives: Sequence[DiveRange], video_dir: Path, *, height: int,
                  jpeg_quality: int, workers: int,
                  seek_threshold: int | None = SEEK_THRESHOLD) -> VideoStats:
    """Write `video_dir/<idx>/<frame:05d>.jpg` for every dive of one video; skip complete dives."""
    video_path, video_dir = Path(video_path), Path(video_dir)
    stats = VideoStats(video_path.stem)
    _check_ranges(video_path, dives, 0)
    _clear_leftovers(video_dir)
    todo = []
    for d in dives:
        dive_dir = video_dir / str(d.idx)
        if dive_is_complete(dive_dir, d):
            stats.dives_skipped += 1
        else:
            if dive_dir.exists():
                log.warning("%s: %s is incomplete; extracting it again", dive_dir, _dive_label(d))
            todo.append(d)
    if not todo:
        log.info("%s: all %d dives already extracted", video_path, len(dives))
        return stats

    try:
        reader = FrameReader(video_path, seek_threshold=seek_threshold)
    except VideoError as exc:
        names = ", ".join(f"{d.video}/{d.idx}" for d in todo)
        raise FrameExtractionError(f"{exc}; dives not extracted: {names}") from None
    encoder = _Encoder(height, jpeg_quality, workers)
    writers: dict[int, _DiveWriter] = {}
    group: list[DiveRange] = []
    total = sum(d.num_frames for d in todo)
    try:
        with reader, tqdm(total=total, desc=video_path.stem, unit="frame", leave=False) as bar:
            _check_ranges(video_path, todo, reader.info.num_frames)  # fail before writing anything
            for group in _clusters(todo):
                first = min(d.start_frame for d in group)
                last = max(d.end_frame for d in group)
                for n, frame in reader.read(first, last):
                    paths = []
                    for d in group:
                        if d.start_frame == n:
                            writers[d.idx] = _DiveWriter(d, video_dir / str(d.idx))
                            writers[d.idx].open()
                        if d.start_frame <= n <= d.end_frame:
                            paths.append((d, writers[d.idx].tmp / frame_name(n)))
                    fut = encoder.submit(frame, [p for _, p in paths])
                    for d, _ in paths:
                        writers[d.idx].futures.append(fut)
                        if d.end_frame == n:
                            stats.frames_written += writers.pop(d.idx).commit()
                            stats.dives_written += 1
                    bar.update(len(paths))
    except BaseException as exc:
        encoder.shutdown(cancel=True)  # no worker may still write into a folder we remove
        for writer in writers.values():
            writer.abort()
        if isinstance(exc, VideoError):
            where = "; ".join(_dive_label(d) for d in group) or "no dive"
            raise FrameExtractionError(f"{exc}; while extracting {where}; "
                                       "its frames were not written") from None
        raise
    encoder.shutdown()
    return stats


def _unannotated(path: Path, annotations_dir: Path) -> str:
    return (f"{path}: no annotated dives (no dive of video {path.stem!r} in {annotations_dir}); "
            "remove the file or annotate its dives")


def videos_to_extract(videos_dir: Path, annotations_dir: Path, dataset: str) -> list[str]:
    """The video names to cut: every annotated video. Refuses a folder that does not match them.

    A `.mp4` no dive refers to (a stray file) and an annotated video without its `.mp4` are both
    errors naming the file, raised before any frame is cut.
    """
    videos_dir, annotations_dir = Path(videos_dir), Path(annotations_dir)
    annotated = Counter(dive.video for dive in read_ranges(dataset, annotations_dir))
    present = {p.stem for p in videos_dir.glob("*.mp4")}
    stray = sorted(present - set(annotated))
    if stray:
        raise FrameExtractionError("; ".join(_unannotated(videos_dir / f"{v}.mp4", annotations_dir)
                                             for v in stray))
    missing = sorted(set(annotated) - present)
    if missing:
        raise FrameExtractionError("; ".join(
            f"{videos_dir / f'{v}.mp4'}: video not found, but {annotations_dir} annotates "
            f"{annotated[v]} dive(s) of it" for v in missing))
    return sorted(annotated)


def extract_frames(video_paths: list[Path], *, dataset: str, annotations_dir: Path, frames_root: Path,
                   cfg: dict[str, Any]) -> None:
    """Cut every annotated dive of each video into `frames_root/<video>/<idx>/<frame:05d>.jpg`.

    `cfg` is params' extract_frames section (height, jpeg_quality, workers). Videos are named
    by their file stem; a video with no annotated dive is refused before anything is written.
    Every other video is attempted; failures are collected and raised together.
    """
    frames_root = Path(frames_root)
    by_video: dict[str, list[DiveRange]] = {}
    for dive in read_ranges(dataset, annotations_dir):
        by_video.setdefault(dive.video, [])
        if dive.start_frame < 0 or dive.end_frame < dive.start_frame:
            # No frames can exist for it; convert_annotations refuses the dive (or drops it).
            log.warning("%s: %s has no valid frame range; no frames cut for it", annotations_dir, _dive_label(dive))
            continue
        by_video[dive.video].append(dive)
    video_paths = [Path(p) for p in video_paths]
    unannotated = [_unannotated(p, annotations_dir) for p in video_paths if p.stem not in by_video]
    if unannotated:
        raise FrameExtractionError("; ".join(unannotated))

    errors: list[str] = []
    for path in tqdm(video_paths, desc="videos", unit="video", disable=len(video_paths) < 2):
        try:
            stats = extract_video(path, by_video[path.stem], frames_root / path.stem,
                                  height=int(cfg["height"]), jpeg_quality=int(cfg["jpeg_quality"]),
                                  workers=int(cfg["workers"]))
        except FrameExtractionError as exc:
            log.error("%s", exc)
            errors.append(str(exc))
            continue
        (frames_root / path.stem).mkdir(parents=True, exist_ok=True)  # even when every dive was skipped
        log.info("%s: %d dives written (%d frames), %d already complete", path,
                 stats.dives_written, stats.frames_written, stats.dives_skipped)
    if len(errors) == 1:
        raise FrameExtractionError(errors[0])
    if errors:
        raise FrameExtractionError(f"{len(errors)} of {len(video_paths)} videos failed: " + "; ".join(errors))
