"""`aqa extract-frames` end to end: the CLI, the tiny params, real mp4s, run twice."""

from __future__ import annotations

import os

import yaml
from click.testing import CliRunner
from PIL import Image

from aqa.cli import main
from video_helpers import read_code, write_annotations, write_coded_video

RANGES = {"comp1": [(0, 10, 40), (1, 60, 95)], "comp2": [(0, 0, 29), (3, 50, 79)]}


def test_cli_extracts_and_resumes(tiny_params, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params))
    raw = tmp_path / "raw"
    raw.mkdir()
    # 128 high -> tiny params' 64: exercises the scaling path.
    videos = [write_coded_video(raw / f"{v}.mp4", 100, height=128, width=240) for v in RANGES]
    ann = write_annotations(tmp_path / "ann", RANGES)
    out = tmp_path / "frames"
    args = ["extract-frames", "--params", str(params), "--dataset", "finediving", "--annotations", str(ann),
            "--out", str(out),
            "--log", str(tmp_path / "logs" / "extract.log")]
    for v in videos:
        args += ["--video", str(v)]

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    for video, dives in RANGES.items():
        assert sorted(os.listdir(out / video)) == sorted(str(i) for i, _, _ in dives)
        for idx, start, end in dives:
            names = sorted(os.listdir(out / video / str(idx)))
            assert names == [f"{n:05d}.jpg" for n in range(start, end + 1)]
            for n in (start, (start + end) // 2, end):
                with Image.open(out / video / str(idx) / f"{n:05d}.jpg") as img:
                    assert img.size == (120, 64) and read_code(img) == n

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "0 dives written (0 frames), 2 already complete" in (tmp_path / "logs" / "extract.log").read_text()


def test_cli_refuses_a_video_without_annotated_dives(tiny_params, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params))
    raw = tmp_path / "raw"
    raw.mkdir()
    video = write_coded_video(raw / "comp1.mp4", 100)
    notes = raw / "notes.mp4"
    notes.write_text("what to film next week\n")
    ann = write_annotations(tmp_path / "ann", {"comp1": RANGES["comp1"]})
    out = tmp_path / "frames"

    result = CliRunner().invoke(main, ["extract-frames", "--params", str(params), "--dataset", "finediving",
                                       "--annotations", str(ann), "--out", str(out), "--video", str(video),
                                       "--video", str(notes)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [f"aqa extract-frames: error: {notes}: no annotated dives (no dive of video 'notes' in "
                     f"{ann}); remove the file or annotate its dives"], result.stderr
    assert not out.exists()


def test_cli_reads_mtl_aqa_ranges(tiny_params, tmp_path):
    """The dives of an MTL-AQA video come from the release's dive dictionary (video 1 -> "01")."""
    from aqa.data.mtl_aqa import write_mtl_aqa

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params))
    raw = tmp_path / "raw"
    raw.mkdir()
    video = write_coded_video(raw / "01.mp4", 100)
    records = {(1, 1): {"start_frame": 10, "end_frame": 30}, (1, 2): {"start_frame": 55, "end_frame": 70}}
    for rec in records.values():
        rec.update(difficulty=3.2, final_score=80.0, judge_scores=[8.5] * 7, dive_number="407C")
    write_mtl_aqa(records, [(1, 1)], [(1, 2)], tmp_path / "info")
    out = tmp_path / "frames"
    result = CliRunner().invoke(main, ["extract-frames", "--params", str(params), "--dataset", "mtl_aqa",
                                       "--annotations", str(tmp_path / "info"), "--out", str(out),
                                       "--video", str(video)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    for (_, idx), rec in records.items():
        names = sorted(os.listdir(out / "01" / str(idx)))
        assert names == [f"{n:05d}.jpg" for n in range(rec["start_frame"], rec["end_frame"] + 1)]
        with Image.open(out / "01" / str(idx) / names[0]) as img:
            assert read_code(img) == rec["start_frame"]
