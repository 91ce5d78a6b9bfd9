"""aqa.data.video on real H.264 files written by PyAV."""

from __future__ import annotations

from fractions import Fraction

import pytest

from aqa.data.video import FrameReader, VideoError, iter_frames, probe_video, scaled_size
from video_helpers import read_code, write_coded_video


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """90 frames, default x264 GOP and B-frames (the synthesize_videos settings)."""
    return write_coded_video(tmp_path_factory.mktemp("v") / "coded.mp4", 90)


@pytest.fixture(scope="module")
def short_gop(tmp_path_factory):
    """200 frames with a keyframe every 10, so that seeking really lands mid-stream."""
    return write_coded_video(tmp_path_factory.mktemp("v") / "gop.mp4", 200, gop=10)


@pytest.mark.parametrize("size, height, expected", [
    ((1280, 720), 256, (456, 256)),   # ffmpeg scale=-2:256; scale=-1:256 would give 455
    ((456, 256), 256, (456, 256)),
    ((120, 64), 32, (60, 32)),
    ((101, 64), 32, (50, 32)),        # 50.5 -> nearest even
    ((106, 64), 32, (54, 32)),        # 53 -> ties round up to the next even number
])
def test_scaled_size(size, height, expected):
    assert scaled_size(*size, height) == expected


def test_scaled_size_rejects_zero():
    with pytest.raises(ValueError):
        scaled_size(0, 64, 32)


def test_probe(coded):
    info = probe_video(coded)
    assert (info.width, info.height, info.num_frames, info.codec) == (120, 64, 90, "h264")
    assert info.fps == Fraction(25)


def test_frame_k_is_kth_decoded_frame(coded):
    got = [(n, read_code(img)) for n, img in iter_frames(coded, 0, 89)]
    assert got == [(k, k) for k in range(90)]


def test_range_and_resize(coded):
    frames = list(iter_frames(coded, 40, 44, height=32))
    assert [n for n, _ in frames] == [40, 41, 42, 43, 44]
    assert all(img.size == (60, 32) and read_code(img) == n for n, img in frames)


def test_seeking_keeps_frame_numbers(short_gop):
    with FrameReader(short_gop, seek_threshold=5) as reader:
        for start, end in [(3, 6), (57, 63), (120, 121), (30, 33), (190, 199)]:
            got = [(n, read_code(f.to_image())) for n, f in reader.read(start, end)]
            assert got == [(k, k) for k in range(start, end + 1)]
        assert reader.seeks >= 3


def test_sequential_without_seeking(short_gop):
    with FrameReader(short_gop, seek_threshold=None) as reader:
        assert [read_code(f.to_image()) for _, f in reader.read(150, 152)] == [150, 151, 152]
        assert reader.seeks == 0


def test_read_past_end(coded):
    with FrameReader(coded) as reader, pytest.raises(VideoError, match=r"ends after 90 frames"):
        list(reader.read(85, 95))


def test_missing_and_not_a_video(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        probe_video(tmp_path / "absent.mp4")
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match=r"bogus\.mp4: cannot open"):
        probe_video(bogus)


def test_truncated_file_fails_to_open(coded, tmp_path):
    # PyAV writes the mp4 index (moov) last, so a cut-off download loses it.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(coded.read_bytes()[: coded.stat().st_size // 2])
    with pytest.raises(VideoError, match=r"cut\.mp4: cannot open video \(truncated or corrupt"):
        FrameReader(cut)


def test_truncated_faststart_file_ends_early(tmp_path):
    # With the index at the front the file opens and claims all its frames, but the data stop.
    full = write_coded_video(tmp_path / "fast.mp4", 90, faststart=True)
    cut = tmp_path / "fastcut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert probe_video(cut).num_frames == 90
    with pytest.raises(VideoError, match=r"fastcut\.mp4: decoding failed at frame \d+"):
        with FrameReader(cut) as reader:
            list(reader.read(0, 89))
