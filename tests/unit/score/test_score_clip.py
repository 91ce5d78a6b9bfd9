"""The clip given to `aqa score`: a real video cut into frames, a frame folder, and what is refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aqa.data.video import write_video
from aqa.score.clip import ClipError, open_clip
from video_helpers import read_code, write_coded_video


def _folder(path, numbers):
    path.mkdir(parents=True)
    for n in numbers:
        Image.fromarray(np.full((32, 48, 3), n, np.uint8)).save(path / f"{n:05d}.jpg")
    return path


def test_a_video_is_cut_into_its_own_frame_numbers(tmp_path):
    video = write_coded_video(tmp_path / "dive.mp4", 40)
    clip = open_clip(video, tmp_path / "work", height=64, jpeg_quality=90, min_frames=16)
    assert (clip.first, clip.last, clip.num_frames) == (0, 39, 40)
    for n in (0, 17, 39):                        # frame n of the file is clip frame n
        with Image.open(clip.frame_path(n)) as img:
            assert img.height == 64 and read_code(img) == n
    assert clip.digest() == open_clip(video, tmp_path / "again", height=64, jpeg_quality=90, min_frames=16).digest()


def test_a_frame_folder_is_read_where_it_is(tmp_path):
    folder = _folder(tmp_path / "frames", range(120, 140))
    clip = open_clip(folder, tmp_path / "work", height=64, jpeg_quality=90, min_frames=16)
    assert (clip.first, clip.last) == (120, 139)
    assert clip.frame_path(125).resolve() == (folder / "00125.jpg").resolve()


@pytest.mark.parametrize("numbers,expected", [
    ([1, 2, 4, 5] + list(range(6, 30)), "1 frame(s) missing between 1 and 29"),
    ([], "no .jpg frames"),
])
def test_a_frame_folder_with_gaps_or_nothing_is_refused(tmp_path, numbers, expected):
    folder = _folder(tmp_path / "frames", numbers)
    with pytest.raises(ClipError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        open_clip(folder, tmp_path / "work", height=64, jpeg_quality=90, min_frames=16)


def test_badly_named_frames_and_missing_paths_are_refused(tmp_path):
    folder = _folder(tmp_path / "frames", range(20))
    (folder / "img_1.jpg").write_bytes((folder / "00001.jpg").read_bytes())
    with pytest.raises(ClipError, match="<frame:05d>.jpg"):
        open_clip(folder, tmp_path / "work", height=64, jpeg_quality=90, min_frames=16)
    with pytest.raises(ClipError, match="no such video file or frame folder"):
        open_clip(tmp_path / "absent.mp4", tmp_path / "work2", height=64, jpeg_quality=90, min_frames=16)


def test_a_short_folder_is_refused(tmp_path):
    folder = _folder(tmp_path / "frames", range(10))
    with pytest.raises(ClipError, match="10 frame"):
        open_clip(folder, tmp_path / "work", height=64, jpeg_quality=90, min_frames=16)
