"""PyAV decoding helpers: open and probe a video with clear errors, read frames by number, resize.

Frame numbers are absolute and start at 0 for the first decoded frame: frame i is the i-th frame
the decoder yields in presentation order. `FrameReader` keeps that numbering when it seeks (to
skip long stretches between dives) by mapping timestamps to numbers, which is exact for the
constant-frame-rate files this project reads; as soon as a stream's timestamps are seen to be
irregular it stops seeking and counts decoded frames instead.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import av.error
import numpy as np
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from PIL import Image

from aqa.errors import AqaError

log = logging.getLogger(__name__)

# ffmpeg's scale filter defaults to bicubic; using the same keeps our frames close to the
# reference `ffmpeg ... scale=-1:256` frames of the FineDiving release.
INTERPOLATION = "BICUBIC"


class VideoError(AqaError, RuntimeError):
    """A video cannot be opened or decoded, or is shorter than asked for."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: Fraction | None
    num_frames: int  # as the container states it; 0 when it does not say
    codec: str


def open_video(path: str | Path) -> av.container.InputContainer:
    """Open a video file for decoding, or raise VideoError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot open video (truncated or corrupt?): {exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream")
    return container


def _info(path: Path, stream: av.video.stream.VideoStream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        path=path,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=Fraction(rate) if rate else None,
        num_frames=int(stream.frames or 0),
        codec=stream.codec_context.name,
    )


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count and codec of a video (no decoding)."""
    container = open_video(path)
    try:
        return _info(Path(path), container.streams.video[0])
    finally:
        container.close()


def scaled_size(width: int, height: int, target_height: int) -> tuple[int, int]:
    """(width, height) for `target_height`, aspect kept, width rounded to the nearest even number.

    Same as ffmpeg's `scale=-2:<h>` (round half up, then to a multiple of 2); even widths keep
    4:2:0 chroma planes whole. For 1280x720 -> 456x256 (`scale=-1:256` would give 455).
    """
    if width <= 0 or height <= 0 or target_height <= 0:
        raise ValueError(f"invalid sizes: {width}x{height} -> height {target_height}")
    even_halves = (target_height * width + height) // (2 * height)
    return max(2, 2 * even_halves), target_height


class FrameReader:
    """Forward reader of one video by absolute frame number, seeking over long gaps.

    `read(start, end)` yields `(n, frame)` for n = start..end inclusive. Ranges should come in
    increasing order (one decoding pass); a range behind the current position costs a seek or,
    for irregular streams, a re-open.
    """

    def __init__(self, path: str | Path, *, seek_threshold: int | None = 250, threads: bool = True):
        self.path = Path(path)
        self.seek_threshold = seek_threshold  # gap in frames beyond which we seek; None = never
        self.threads = threads
        self.seeks = 0
        self._container = open_video(self.path)
        stream = self._container.streams.video[0]
        self.info = _info(self.path, stream)
        rate = self.info.fps
        step = 1 / (rate * stream.time_base) if rate and stream.time_base else None
        self._step = int(step) if step is not None and step.denominator == 1 else None
        self._first_pts: int | None = None
        self._regular = self._step is not None
        self._start_decoder()
        # Decode frame 0 now: it fixes the timestamp origin and proves the stream decodes at all.
        first = self._decode_next()
        self._frames = itertools.chain([first], self._frames)
        self._next = 0

    def _start_decoder(self) -> None:
        stream = self._container.streams.video[0]
        if self.threads:
            stream.thread_type = "AUTO"  # frame + slice threads in libavcodec
        self._frames = self._container.decode(stream)
        self._next = 0

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def position(self) -> int:
        """Number of the next frame the decoder will yield."""
        return self._next

    def _decode_next(self) -> VideoFrame:
        try:
            frame = next(self._frames)
        except StopIteration:
            raise VideoError(f"{self.path}: video ends after {self._next} frames "
                             f"(last frame number {self._next - 1})") from None
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: decoding failed at frame {self._next} "
                             f"(truncated or corrupt?): {exc}") from None
        if frame.pts is None:
            self._regular = False
        elif self._first_pts is None:
            self._first_pts = frame.pts
        elif self._regular and frame.pts != self._first_pts + self._next * self._step:
            log.info("%s: irregular timestamps at frame %d; counting frames instead of seeking",
                     self.path, self._next)
            self._regular = False
        self._next += 1
        return frame

    def _can_seek(self) -> bool:
        return self.seek_threshold is not None and self._regular and self._first_pts is not None

    def _reopen(self) -> None:
        self._container.close()
        self._container = open_video(self.path)
        self._start_decoder()

    def _seek(self, target: int) -> None:
        """Put the decoder just before frame `target` (at the keyframe at or before it)."""
        stream = self._container.streams.video[0]
        try:
            self._container.seek(self._first_pts + target * self._step, stream=stream, backward=True)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: seeking to frame {target} failed: {exc}") from None
        self._frames = self._container.decode(stream)
        self.seeks += 1
        try:
            frame = next(self._frames)
        except StopIteration:
            raise VideoError(f"{self.path}: video ends before frame {target}") from None
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: decoding failed after seeking to frame {target} "
                             f"(truncated or corrupt?): {exc}") from None
        offset = None if frame.pts is None else frame.pts - self._first_pts
        if offset is None or offset % self._step or not 0 <= offset // self._step <= target:
            # Landed somewhere we cannot number exactly: fall back to counting from the start.
            log.info("%s: seek to frame %d landed off the frame grid; decoding from the start",
                     self.path, target)
            self._regular = False
            self._reopen()
            return
        self._frames = itertools.chain([frame], self._frames)
        self._next = offset // self._step

    def read(self, start: int, end: int) -> Iterator[tuple[int, VideoFrame]]:
        """Yield (n, frame) for every frame number n in [start, end]; VideoError if the video stops."""
        if start < 0 or end < start:
            raise ValueError(f"invalid frame range [{start}, {end}]")
        if start < self._next:
            if self._can_seek():
                self._seek(start)
            else:
                self._reopen()
        elif self._can_seek() and start - self._next > self.seek_threshold:
            self._seek(start)
        while self._next <= end:
            n = self._next
            frame = self._decode_next()
            if n >= start:
                yield n, frame


def resize_frame(frame: VideoFrame, height: int | None = None,
                 reformatter: VideoReformatter | None = None) -> Image.Image:
    """RGB PIL image of `frame`, scaled to `height` (aspect kept, even width) in libswscale.

    Pass a `reformatter` per thread to reuse its scaling context across frames.
    """
    width, out_h = (frame.width, frame.height) if height is None else scaled_size(
        frame.width, frame.height, height)
    reformatter = reformatter or VideoReformatter()
    rgb = reformatter.reformat(frame, width=width, height=out_h, format="rgb24",
                               interpolation=INTERPOLATION)
    return rgb.to_image()


def iter_frames(path: str | Path, start: int, end: int, *,
                height: int | None = None) -> Iterator[tuple[int, Image.Image]]:
    """Decode frames [start, end] (inclusive, absolute numbers) of a video as RGB images."""
    reformatter = VideoReformatter()
    with FrameReader(path) as reader:
        for n, frame in reader.read(start, end):
            yield n, resize_frame(frame, height, reformatter)


def write_video(path: str | Path, frames: Iterable[np.ndarray], *, fps: int = 25, crf: int = 18,
                gop: int | None = None, faststart: bool = False) -> int:
    """Encode RGB uint8 frames (H, W, 3; even H and W) to an H.264 mp4 with PyAV; return the count.

    Used by tests and benchmarks to make real files. `gop` caps the keyframe interval;
    `faststart` puts the index at the front (as streaming files do).
    """
    path = Path(path)
    options = {"movflags": "+faststart"} if faststart else {}
    count = 0
    with av.open(str(path), mode="w", options=options) as out:
        stream = None
        for rgb in frames:
            if stream is None:
                h, w = rgb.shape[:2]
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = {"crf": str(crf)}
                if gop is not None:
                    stream.codec_context.gop_size = gop
                    stream.options["keyint_min"] = str(min(gop, 25))
            frame = VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
            count += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        out.mux(stream.encode(None))
    return count
