"""aqa.data.frames on real H.264 files: layout, frame identity, resume, and clean failures."""

from __future__ import annotations

import logging
import os
import pickle
import re

import pytest
from PIL import Image

from aqa.data.finediving import COARSE, read_finediving
from aqa.data.frames import FrameExtractionError, extract_frames, extract_video, videos_to_extract
from aqa.data.pickles import load_pickle
from video_helpers import read_code, write_annotations, write_coded_video

CFG = {"frames_root": None, "height": 32, "jpeg_quality": 90, "workers": 2}
DIVES = [(0, 5, 14), (1, 30, 41), (2, 36, 44), (3, 70, 79)]  # dives 1 and 2 overlap


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_coded_video(tmp_path_factory.mktemp("raw") / "vidA.mp4", 100)


@pytest.fixture()
def dives(tmp_path):
    ann = read_finediving(write_annotations(tmp_path / "ann", {"vidA": DIVES}))
    return sorted(ann.dives.values(), key=lambda d: d.idx)


def run(video, dives, out, **kw):
    args = dict(height=32, jpeg_quality=90, workers=2) | kw
    return extract_video(video, dives, out / "vidA", **args)


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_layout_and_frame_identity(video, dives, tmp_path):
    out = tmp_path / "frames"
    stats = run(video, dives, out)
    assert (stats.dives_written, stats.dives_skipped) == (4, 0)
    assert stats.frames_written == sum(e - s + 1 for _, s, e in DIVES)
    assert sorted(os.listdir(out / "vidA")) == ["0", "1", "2", "3"]
    for idx, start, end in DIVES:
        dive_dir = out / "vidA" / str(idx)
        assert sorted(os.listdir(dive_dir)) == [f"{n:05d}.jpg" for n in range(start, end + 1)]
        for n in range(start, end + 1):
            with Image.open(dive_dir / f"{n:05d}.jpg") as img:
                assert img.format == "JPEG" and img.size == (60, 32)
                assert read_code(img) == n, f"{dive_dir}/{n:05d}.jpg shows frame {read_code(img)}"


def test_seeking_over_gaps(tmp_path):
    video = write_coded_video(tmp_path / "vidA.mp4", 300, gop=10)
    ann = read_finediving(write_annotations(tmp_path / "ann", {"vidA": [(0, 3, 6), (1, 150, 160),
                                                                       (2, 290, 299)]}))
    run(video, list(ann.dives.values()), tmp_path / "frames", seek_threshold=5)
    for idx, start, end in [(0, 3, 6), (1, 150, 160), (2, 290, 299)]:
        for n in range(start, end + 1):
            with Image.open(tmp_path / "frames" / "vidA" / str(idx) / f"{n:05d}.jpg") as img:
                assert read_code(img) == n


def test_rerun_skips_complete_dives(video, dives, tmp_path):
    out = tmp_path / "frames"
    run(video, dives, out)
    stamp = (out / "vidA" / "0" / "00005.jpg").stat().st_mtime_ns
    stats = run(video, dives, out)
    assert (stats.dives_written, stats.dives_skipped) == (0, 4)
    assert (out / "vidA" / "0" / "00005.jpg").stat().st_mtime_ns == stamp


def test_resume_redoes_incomplete_and_clears_leftovers(video, dives, tmp_path):
    out = tmp_path / "frames"
    run(video, dives, out)
    (out / "vidA" / "1" / "00033.jpg").unlink()          # a dive missing a frame
    (out / "vidA" / "2" / "stray.txt").write_text("x")   # a dive with an extra file
    leftover = out / "vidA" / ".3.abc123.tmp"            # an interrupted run's temp folder
    leftover.mkdir()
    (leftover / "00070.jpg").write_bytes(b"partial")
    stats = run(video, dives, out)
    assert (stats.dives_written, stats.dives_skipped) == (2, 2)
    assert not leftover.exists()
    assert sorted(os.listdir(out / "vidA" / "2")) == [f"{n:05d}.jpg" for n in range(36, 45)]
    assert (out / "vidA" / "1" / "00033.jpg").is_file()


def test_dive_beyond_end_fails_cleanly(video, tmp_path):
    ann = read_finediving(write_annotations(tmp_path / "ann", {"vidA": [(0, 5, 14), (7, 95, 120)]}))
    out = tmp_path / "frames"
    with pytest.raises(FrameExtractionError, match=r"vidA\.mp4: dive vidA/7 \(frames 95-120\) lies "
                                                   r"beyond the end of the video \(100 frames"):
        run(video, list(ann.dives.values()), out)
    assert listing(out) in ([], ["vidA"])  # nothing half-written


def test_video_shorter_than_it_claims_fails_cleanly(tmp_path):
    # Index at the front says 100 frames, but the data stop early: found only while decoding.
    full = write_coded_video(tmp_path / "full.mp4", 100, faststart=True)
    video = tmp_path / "vidA.mp4"
    video.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.8)])
    ann = read_finediving(write_annotations(tmp_path / "ann", {"vidA": [(0, 2, 8), (1, 60, 99)]}))
    out = tmp_path / "frames"
    with pytest.raises(FrameExtractionError, match=r"vidA\.mp4.*dive vidA/1 \(frames 60-99\)"):
        run(video, list(ann.dives.values()), out)
    names = listing(out)
    assert not any("tmp" in n for n in names) and not any(n.startswith("vidA/1") for n in names)


def test_truncated_video_fails_cleanly(video, dives, tmp_path):
    cut = tmp_path / "raw" / "vidA.mp4"
    cut.parent.mkdir()
    cut.write_bytes(video.read_bytes()[:5000])
    out = tmp_path / "frames"
    with pytest.raises(FrameExtractionError, match=r"vidA\.mp4: cannot open video.*vidA/0"):
        run(cut, dives, out)
    assert listing(out) in ([], ["vidA"])


def test_extract_frames_collects_errors_on_one_line(video, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = raw / "vidA.mp4"
    good.write_bytes(video.read_bytes())
    bad = raw / "vidB.mp4"
    bad.write_bytes(video.read_bytes()[:3000])
    ann = write_annotations(tmp_path / "ann", {"vidA": [(0, 5, 9)], "vidB": [(4, 1, 3)]})
    out = tmp_path / "frames"
    with pytest.raises(FrameExtractionError) as err:
        extract_frames([good, bad], dataset="finediving", annotations_dir=ann, frames_root=out, cfg=CFG)
    assert "\n" not in str(err.value)
    assert re.match(r".*vidB\.mp4: cannot open video.*vidB/4", str(err.value))
    assert sorted(os.listdir(out / "vidA" / "0")) == [f"{n:05d}.jpg" for n in range(5, 10)]
    assert not (out / "vidB").exists() or os.listdir(out / "vidB") == []


def test_a_video_without_annotated_dives_is_refused_before_any_work(video, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = raw / "vidA.mp4"
    good.write_bytes(video.read_bytes())
    notes = raw / "notes.mp4"
    notes.write_bytes(b"my notes, not a video\n")
    ann = write_annotations(tmp_path / "ann", {"vidA": [(0, 5, 9)]})
    out = tmp_path / "frames"
    with pytest.raises(FrameExtractionError, match=rf"^{re.escape(str(notes))}: no annotated dives") as err:
        extract_frames([good, notes], dataset="finediving", annotations_dir=ann, frames_root=out, cfg=CFG)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_videos_to_extract_matches_the_folder_to_the_annotations(video, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("vidA", "vidB"):
        (raw / f"{name}.mp4").write_bytes(video.read_bytes())
    ann = write_annotations(tmp_path / "ann", {"vidA": [(0, 5, 9)], "vidB": [(4, 1, 3), (5, 20, 30)]})
    assert videos_to_extract(raw, ann, "finediving") == ["vidA", "vidB"]

    (raw / "notes.mp4").write_text("my notes")
    with pytest.raises(FrameExtractionError, match=rf"^{re.escape(str(raw / 'notes.mp4'))}: no annotated dives"):
        videos_to_extract(raw, ann, "finediving")
    (raw / "notes.mp4").unlink()

    (raw / "vidB.mp4").unlink()
    with pytest.raises(FrameExtractionError,
                       match=rf"^{re.escape(str(raw / 'vidB.mp4'))}: video not found, but .* annotates 2 dive"):
        videos_to_extract(raw, ann, "finediving")


def end_before_start(folder, key, end_frame):
    """Set one dive's end_frame in the coarse annotation file (as a damaged release would have it)."""
    coarse = load_pickle(folder / COARSE)
    coarse[key]["end_frame"] = end_frame
    (folder / COARSE).write_bytes(pickle.dumps(coarse))


def test_a_dive_without_a_valid_frame_range_is_skipped_with_a_warning(video, tmp_path, caplog):
    # convert_annotations refuses such a dive (or drops it): the frames of the others are still cut.
    ann = write_annotations(tmp_path / "ann", {"vidA": [(0, 5, 9), (1, 30, 40)]})
    end_before_start(ann, ("vidA", 1), 20)
    out = tmp_path / "frames"
    with caplog.at_level(logging.WARNING):
        extract_frames([video], dataset="finediving", annotations_dir=ann, frames_root=out, cfg=CFG)
    assert sorted(os.listdir(out / "vidA")) == ["0"]
    assert "dive vidA/1 (frames 30-20) has no valid frame range" in caplog.text


def test_a_video_whose_dives_all_lack_a_frame_range_still_gets_its_folder(video, tmp_path):
    ann = write_annotations(tmp_path / "ann", {"vidA": [(1, 30, 40)]})
    end_before_start(ann, ("vidA", 1), 20)
    out = tmp_path / "frames"
    extract_frames([video], dataset="finediving", annotations_dir=ann, frames_root=out, cfg=CFG)
    assert os.listdir(out / "vidA") == []  # the Snakemake job's output exists
