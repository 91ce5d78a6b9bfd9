"""Real data first-class (issue 12, item 6), through the real DVC and Snakemake of a tiny project.

The "real" FineDiving here is a folder outside the project made from a built stand-in: its frames
(extract_frames' output, in the release layout `<video>/<idx>/<frame:05d>.jpg`) and its annotation
files in the release format. With both given in params, nothing is rendered, the frames are read
from there, and DVC notices a change of their content through the links `aqa check-params`
points at them (aqa.data.real_inputs): a changed frame rebuilds what depends on it, a touched
one (same bytes) nothing.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aqa.data.protocol import sample_frame_numbers
from harness import commit, read_params, run, write_params

pytestmark = pytest.mark.pipeline

FRAMES = Path("data/interim/frames/finediving")
FEATURES = Path("data/processed/features/finediving/i3d")
MODELS = ("train@fr-dn", "evaluate@fr-dn")
MTL_AQA_STAGES = {"synthesize_videos@mtl_aqa", "extract_frames@mtl_aqa", "convert_annotations@mtl_aqa",
                  "extract_features@mtl_aqa", "train_mtl_aqa@fr-dn", "evaluate_mtl_aqa@fr-dn"}


def stages_run(proc) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr)) - {"check_params"}


def files(root: Path, folder: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / folder).rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def make_real_release(root: Path) -> Path:
    """A FineDiving "release" beside the project: the built stand-in's frames and annotation files,
    and its masks as the FineDiving-HM release (FineParser's cache additions read them)."""
    real = root.parent / "FineDiving"
    shutil.copytree(root / FRAMES, real / "frames", ignore=shutil.ignore_patterns(".*"))
    shutil.copytree(root / "data/raw/finediving/annotations", real / "Annotations")
    shutil.copytree(root / "data/raw/finediving/masks", real / "FineDiving_HM", ignore=shutil.ignore_patterns(".*"))
    return real


@pytest.fixture()
def real_project(built_project) -> tuple[Path, Path]:
    root = built_project
    real = make_real_release(root)
    params = read_params(root)
    params["extract_frames"]["frames_root"]["finediving"] = str(real / "frames")
    params["synthesize_videos"]["finediving"]["source_annotations"] = str(real / "Annotations")
    params["extract_frames"]["masks_root"]["finediving"] = str(real / "FineDiving_HM")
    write_params(root, params)
    commit(root, "the real FineDiving")
    return root, real


def test_real_data_renders_nothing_and_changes_to_its_frames_are_noticed(real_project):
    root, real = real_project
    features_before = files(root, FEATURES)

    # Real frames and annotations: synthesize_videos renders nothing, extract_frames cuts nothing.
    proc = run(["dvc", "repro"], root)
    ran = stages_run(proc)
    assert {"synthesize_videos@finediving", "extract_frames@finediving", "extract_features@finediving"} <= ran
    assert not ran & MTL_AQA_STAGES, ran   # the other dataset's stages are not touched
    log = (root / "logs/synthesize_videos/finediving.log").read_text()
    assert "real frames given: wrote the real annotations of 12 dives; no footage rendered" in log
    for folder in ("videos", "masks"):   # (Snakemake's .snakemake_timestamp of a directory output aside)
        assert not [p for p in (root / "data/raw/finediving" / folder).iterdir() if not p.name.startswith(".")]
    assert not [p for p in (root / FRAMES).iterdir() if not p.name.startswith(".")]
    assert (root / ".aqa/inputs/finediving/frames").resolve() == real / "frames"
    assert (root / ".aqa/inputs/finediving/masks").resolve() == real / "FineDiving_HM"
    # The real frames (and masks) are the stand-in's own bytes: every dive's features are reused and no model
    # retrains; evaluate reruns, as its metrics name the footage ("real").
    assert files(root, FEATURES) == features_before
    assert "train@fr-dn" not in ran and "evaluate@fr-dn" in ran, ran
    assert json.loads((root / "reports/metrics/finediving/fr-dn.json").read_text())["footage"] == "real"

    # Nothing changed: nothing runs, and DVC says so.
    assert stages_run(run(["dvc", "repro"], root)) == set()
    assert "up to date" in run(["dvc", "status"], root).stdout

    # The Snakefile driver plans no frame cutting either: its extract_frames job asks for no video
    # (the annotations name videos that have no .mp4, which the stand-in path would refuse).
    dry = run(["snakemake", "-n", "-c1", "--forcerun", "extract_frames_dataset", "--",
               str(FRAMES / ".extract_frames.done")], root)
    planned = dry.stdout + dry.stderr
    assert "extract_frames_dataset" in planned and "extract_frames_video" not in planned, planned[-3000:]

    # A frame touched, its bytes the same: DVC re-hashes it and runs nothing.
    dive = sorted(p for p in (real / "frames").glob("*/*") if p.is_dir())[0]
    numbers = sorted(int(p.stem) for p in dive.glob("*.jpg"))
    frame = dive / f"{sample_frame_numbers(numbers[0], numbers[-1])[40]:05d}.jpg"
    frame.touch()
    assert "up to date" in run(["dvc", "status"], root).stdout
    assert stages_run(run(["dvc", "repro"], root)) == set()

    # One frame's content changed: DVC names the link, and reruns what reads the frames.
    Image.fromarray(255 - np.asarray(Image.open(frame))).save(frame, quality=90)
    status = run(["dvc", "status"], root).stdout
    assert re.search(r"extract_features@finediving:\s+changed deps:\s+modified:\s+\.aqa/inputs/finediving/frames",
                     status), status
    assert "synthesize_videos@finediving" not in status and "mtl_aqa" not in status, status
    proc = run(["dvc", "repro"], root)
    ran = stages_run(proc)
    assert {"extract_features@finediving", *MODELS} <= ran and not ran & MTL_AQA_STAGES, ran
    after = files(root, FEATURES)
    key = f"{FEATURES}/{dive.parent.name}/{dive.name}/pooled.npy"
    assert after[key] != features_before[key]   # that dive's features, from the new frame
    assert {k: v for k, v in after.items() if not k.startswith(str(FEATURES / dive.parent.name / dive.name))} == \
        {k: v for k, v in features_before.items() if not k.startswith(str(FEATURES / dive.parent.name / dive.name))}
    assert "up to date" in run(["dvc", "status"], root).stdout


def test_a_changed_real_annotation_file_is_noticed(real_project):
    root, real = real_project
    run(["dvc", "repro"], root)
    # the same dives written again in another pickle protocol: other bytes, so a change DVC must see
    coarse = real / "Annotations" / "FineDiving_coarse_annotation.pkl"
    data = pickle.loads(coarse.read_bytes())
    coarse.write_bytes(pickle.dumps(data, protocol=2))
    status = run(["dvc", "status"], root).stdout
    assert re.search(r"synthesize_videos@finediving:\s+changed deps:\s+modified:\s+"
                     r"\.aqa/inputs/finediving/annotations", status), status
    ran = stages_run(run(["dvc", "repro"], root))
    # the same dives: synthesize_videos reruns and writes the same files, so nothing after it reruns
    assert ran == {"synthesize_videos@finediving"}, ran
