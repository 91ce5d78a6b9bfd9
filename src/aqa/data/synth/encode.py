"""H.264 writing with PyAV: frames go to a temporary file that is renamed when complete."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from aqa.io import atomic_path


class VideoWriter:
    def __init__(self, container, stream):
        self._container, self._stream = container, stream

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


@contextlib.contextmanager
def open_video(path: str | Path, *, width: int, height: int, fps: int, crf: int) -> Iterator[VideoWriter]:
    """An H.264 yuv420p mp4 written atomically. One encoder thread keeps output reproducible
    and leaves the other core to the renderer."""
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "superfast", "threads": "1"}
            stream.codec_context.thread_count = 1
            yield VideoWriter(container, stream)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
