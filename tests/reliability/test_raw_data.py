"""Bad raw data (issue 11): damaged, empty, stray and missing videos, damaged frames, impossible
annotations. Each fault is injected into a copy of a built tiny project; each gives one clear
line naming the file, leaves every later output as it was, and once repaired `dvc repro` gives
the same bytes as before.

Raw videos and frames are outputs of DVC stages, so under `dvc repro` DVC itself restores a
damaged one from its cache before anything reads it; the faults in them are therefore run
through the other driver, Snakemake, the way `snakemake -c2 <stage>` (README) reads them.
Annotations come into the pipeline through `synthesize_videos.source_annotations`, so the
impossible ones are run through `dvc repro`.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import time
from pathlib import Path

import pytest

from aqa.data import finediving as fd
from aqa.data.pickles import load_pickle
from aqa.data.protocol import sample_frame_numbers
from harness import commit, read_params, run, write_params

VIDEOS = Path("data/raw/finediving/videos")
ANNOTATIONS = Path("data/raw/finediving/annotations")
FRAMES = Path("data/interim/frames/finediving")
LATER_OUTPUTS = ("data/processed/features/**/*", "models/**/*", "reports/metrics/**/*",
                 "reports/predictions/**/*", "reports/tables/*")
# The DVC stage's own command, so the Snakemake driver re-reads the frames as `dvc repro` would.
EXTRACT_FEATURES = ["snakemake", "--cores", "2", "--forcerun", "extract_features_dataset",
                    "--allowed-rules", "extract_features_dataset", "--",
                    "data/processed/features/finediving/i3d/.extract_features.done"]


def files(root: Path, patterns) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for pattern in patterns
            for p in sorted(root.glob(pattern)) if p.is_file() and not p.name.startswith(".")}


def error_lines(proc) -> list[str]:
    """The `aqa <stage>: error: ...` lines a run printed."""
    return re.findall(r"^aqa [\w-]+: error: .*$", proc.stdout + proc.stderr, flags=re.M)


def stages_run(output: str) -> list[str]:
    return [s for s in re.findall(r"Running stage '([^']+)'", output) if s != "check_params"]


def assert_repaired(root: Path, later_before: dict[str, bytes], frames_before: dict[str, bytes],
                    may_run: tuple[str, ...] = ()) -> None:
    """`dvc repro` brings back the state before the fault; no stage after the frames recomputes
    (but those in `may_run`, which must then give the same bytes)."""
    out = run(["dvc", "repro"], root)
    ran = set(stages_run(out.stdout + out.stderr)) - set(may_run)
    assert not {"extract_features@finediving", "extract_features@mtl_aqa", "train@fr-dn", "evaluate@fr-dn",
                "train_mtl_aqa@fr-dn", "evaluate_mtl_aqa@fr-dn", "make_report"} & ran, ran
    assert files(root, LATER_OUTPUTS) == later_before
    assert files(root, [f"{FRAMES}/**/*"]) == frames_before
    assert "up to date" in run(["dvc", "status"], root).stdout


# ----------------------------------------------------------------------------- videos


def damage_video(path: Path, fault: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                      "text": b"Notes for the next shoot: camera 2 on the 10 m board.\n"}[fault])


@pytest.mark.parametrize("fault", ["truncated", "empty", "text"])
def test_a_damaged_video_is_named_and_nothing_after_it_is_touched(built_project, fault):
    root = built_project
    video = sorted((root / VIDEOS).glob("*.mp4"))[0]
    later, frames = files(root, LATER_OUTPUTS), files(root, [f"{FRAMES}/**/*"])
    other = {k: v for k, v in frames.items() if not k.startswith(f"{FRAMES}/{video.stem}/")}
    damage_video(video, fault)

    proc = run(["snakemake", "-c2", "extract_frames"], root, check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith(f"aqa extract-frames: error: {VIDEOS / video.name}: "), \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "cannot open video" in lines[0] or "decoding failed" in lines[0], lines[0]
    assert files(root, LATER_OUTPUTS) == later
    assert {k: v for k, v in files(root, [f"{FRAMES}/**/*"]).items() if k in other} == other

    # Repair: the video comes back from DVC's cache (as `dvc repro` itself would do).
    run(["dvc", "checkout", "--force", str(VIDEOS)], root)
    assert_repaired(root, later, frames)


def test_a_stray_video_stops_the_run_at_once_naming_it(built_project):
    root = built_project
    later, frames = files(root, LATER_OUTPUTS), files(root, [f"{FRAMES}/**/*"])
    notes = root / VIDEOS / "notes.mp4"
    notes.write_text("Notes for the next shoot: camera 2 on the 10 m board.\n")

    began = time.monotonic()
    proc = run(["snakemake", "-c2", "extract_frames"], root, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and time.monotonic() - began < 60
    assert (f"{VIDEOS / 'notes.mp4'}: no annotated dives (no dive of video 'notes' in {ANNOTATIONS}); "
            "remove the file or annotate its dives") in output, output[-3000:]
    assert "MissingOutputException" not in output and "latency" not in output
    assert files(root, LATER_OUTPUTS) == later and files(root, [f"{FRAMES}/**/*"]) == frames

    notes.unlink()
    assert_repaired(root, later, frames)


def test_a_missing_video_stops_the_run_at_once_naming_it(built_project):
    root = built_project
    later, frames = files(root, LATER_OUTPUTS), files(root, [f"{FRAMES}/**/*"])
    video = sorted((root / VIDEOS).glob("*.mp4"))[-1]
    video.unlink()

    proc = run(["snakemake", "-c2", "extract_frames"], root, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(rf"{re.escape(str(VIDEOS / video.name))}: video not found, but {ANNOTATIONS} "
                     r"annotates 6 dive\(s\) of it", output), output[-3000:]
    assert files(root, LATER_OUTPUTS) == later and files(root, [f"{FRAMES}/**/*"]) == frames

    run(["dvc", "checkout", "--force", str(VIDEOS)], root)
    assert_repaired(root, later, frames)


# ----------------------------------------------------------------------------- frames


def protocol_frame(root: Path) -> Path:
    """A frame of the first dive that extract_features reads (one of its 96 protocol frames)."""
    dive = sorted(p for p in (root / FRAMES).glob("*/*") if p.is_dir())[0]
    numbers = sorted(int(p.stem) for p in dive.glob("*.jpg"))
    return dive / f"{sample_frame_numbers(numbers[0], numbers[-1])[40]:05d}.jpg"


@pytest.mark.parametrize("fault", ["corrupt_jpeg", "missing_frame"])
def test_a_damaged_frame_is_named_by_extract_features_and_the_cache_kept(built_project, fault):
    root = built_project
    later, frames = files(root, LATER_OUTPUTS), files(root, [f"{FRAMES}/**/*"])
    frame = protocol_frame(root)
    if fault == "corrupt_jpeg":
        frame.write_bytes(frame.read_bytes()[:200])
    else:
        frame.unlink()

    proc = run(EXTRACT_FEATURES, root, check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("aqa extract-features: error: "), proc.stderr[-3000:]
    relative = frame.relative_to(root)
    if fault == "corrupt_jpeg":
        assert f"{relative}: cannot decode frame" in lines[0], lines[0]
    else:
        assert f"missing in {relative.parent} " in lines[0] and str(int(frame.stem)) in lines[0], lines[0]
    assert files(root, LATER_OUTPUTS) == later

    # The failed job took Snakemake's flag with it, so DVC reruns the stage: it reuses every dive.
    run(["dvc", "checkout", "--force", str(FRAMES)], root)
    assert_repaired(root, later, frames, may_run=("extract_features@finediving",))


# ----------------------------------------------------------------------------- annotations


def spoiled_source(root: Path, fault: str) -> tuple[Path, str]:
    """A copy of the project's annotations, outside it, with one dive made impossible; its key."""
    source = root.parent / "my_annotations"
    shutil.copytree(root / ANNOTATIONS, source)
    coarse = load_pickle(source / fd.COARSE)
    key = sorted(coarse)[2]
    record = coarse[key]
    if fault == "end_before_start":
        record["end_frame"] = record["start_frame"] - 10
    elif fault == "negative_score":
        record["dive_score"] = -record["dive_score"]
    else:  # two judges
        record["judge_scores"] = record["judge_scores"][:2]
    (source / fd.COARSE).write_bytes(pickle.dumps(coarse))
    return source, f"{key[0]}/{key[1]}"


def use_source(root: Path, source: Path | None, invalid_dives: str = "error") -> None:
    params = read_params(root)
    params["synthesize_videos"]["finediving"]["source_annotations"] = None if source is None else str(source)
    params["convert_annotations"]["invalid_dives"] = invalid_dives
    write_params(root, params)
    commit(root, "annotations from elsewhere")


@pytest.mark.parametrize("fault,stage,says", [
    ("end_before_start", "synthesize-videos", r"ends before it starts"),
    ("negative_score", "convert-annotations", r"dive_score -[\d.]+ \(negative_score\)"),
    ("two_judges", "convert-annotations", r"2 judges \(expected 3, 5 or 7\) \(unexpected_judge_count\)"),
])
def test_impossible_annotations_are_refused_naming_the_dive(built_project, fault, stage, says):
    root = built_project
    later, frames = files(root, LATER_OUTPUTS), files(root, [f"{FRAMES}/**/*"])
    source, key = spoiled_source(root, fault)
    use_source(root, source)

    proc = run(["dvc", "repro"], root, check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    # synthesize_videos names the file it was given; convert_annotations the copy it reads.
    named = source if stage == "synthesize-videos" else ANNOTATIONS
    assert len(lines) == 1 and lines[0].startswith(f"aqa {stage}: error: {named / fd.COARSE}: dive {key}"), \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(says, lines[0]), lines[0]
    assert files(root, LATER_OUTPUTS) == later

    # Repair: back to the built-in annotations; DVC restores every stage from its cache.
    use_source(root, None)
    assert_repaired(root, later, frames)


def test_impossible_annotations_are_dropped_when_params_say_so(built_project):
    root = built_project
    source, key = spoiled_source(root, "negative_score")
    use_source(root, source, invalid_dives="drop")

    run(["dvc", "repro", "convert_annotations@finediving"], root)
    report = json.loads((root / "data/processed/annotations/finediving/validation.json").read_text())
    assert [d["key"] for d in report["dropped_dives"]] == [key]
    assert report["num_dives"] == 11 and report["invalid_dives"] == "drop"
