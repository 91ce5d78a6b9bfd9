"""Faults around the I3D weights and the feature cache (issue 11, defects 3, 4 and 6): a kill -9
during extraction, damaged weights, a damaged cache file, impossible params. Each asserts a clear
error, nothing lost, and the same result once the fault is gone."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from aqa.data.schema import DIVES_SCHEMA, table_from_rows, write_parquet_atomic
from aqa.models.fetch_i3d import WEIGHTS_NAME, import_state_dict
from aqa.models.i3d import InceptionI3d
from harness import kill_group, read_params, run, start, wait_for, write_params

FEATURES = Path("data/processed/features/finediving/i3d")
WEIGHTS = Path("data/external/i3d") / WEIGHTS_NAME


def cache_bytes(root: Path) -> dict[str, bytes]:
    """Every dive file and the manifest of a feature cache, by relative path (not Snakemake's flag)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def finished_dives(root: Path) -> list[str]:
    """Dive folders that a run has completed (temporaries start with a dot)."""
    return sorted(p.parent.relative_to(root).as_posix() for p in root.glob("*/*/frames.sha256")
                  if not p.parent.name.startswith("."))


def stages_run(output: str) -> list[str]:
    return [s for s in re.findall(r"Running stage '([^']+)'", output) if s != "check_params"]


def flip_bytes(path: Path, offset: int, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + n] = bytes(b ^ 0xFF for b in data[offset:offset + n])
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- kill -9 of aqa extract-features

@pytest.fixture()
def extraction_inputs(tmp_path, tiny_params) -> dict[str, Path]:
    """8 tiny dives (64x112 frames), random I3D weights imported as fetch_i3d does, tiny params."""
    dives = [(f"0{v}", i, 10 * i, 10 * i + 15) for v in (1, 2) for i in range(1, 5)]
    frames = tmp_path / "frames"
    rng = np.random.default_rng(0)
    rows = []
    for video, idx, start_frame, end_frame in dives:
        folder = frames / video / str(idx)
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, size=(64, 112, 3), dtype=np.uint8)
        for n in range(start_frame, end_frame + 1):
            Image.fromarray(np.roll(base, 3 * n, axis=1)).save(folder / f"{n:05d}.jpg", quality=90)
        rows.append(dict(key=f"{video}/{idx}", video=video, idx=idx, split="train", action_type="107B",
                         difficulty=3.0, dive_score=60.0, judge_scores=[7.0] * 7, num_judges=7,
                         start_frame=start_frame, end_frame=end_frame, num_frames=end_frame - start_frame + 1,
                         frame_labels=None, steps_transit_frames=None, transitions_96=None))
    parquet = tmp_path / "dives.parquet"
    write_parquet_atomic(table_from_rows(rows, DIVES_SCHEMA), parquet)
    torch.manual_seed(0)
    torch.save(InceptionI3d().state_dict(), tmp_path / "random_i3d.pt")
    import_state_dict(tmp_path / "random_i3d.pt", tmp_path / "i3d")
    # 3 snippets a dive keep it fast; one dive per forward pass in every run, so a resumed run
    # batches exactly as an uninterrupted one
    tiny_params["extract_features"].update(workers=0, num_snippets=3, batch_snippets=3, flip_view=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params, sort_keys=False))
    return {"frames": frames, "annotations": parquet, "weights": tmp_path / "i3d" / WEIGHTS_NAME,
            "params": params}


def extract_cmd(inputs: dict[str, Path], out: Path) -> list[str]:
    return ["aqa", "extract-features", "--params", str(inputs["params"]), "--frames", str(inputs["frames"]),
            "--annotations", str(inputs["annotations"]), "--weights", str(inputs["weights"]), "--out", str(out)]


def test_kill_9_during_extract_features_resumes_to_identical_bytes(tmp_path, extraction_inputs):
    reference = tmp_path / "reference"
    run(extract_cmd(extraction_inputs, reference), tmp_path)
    assert len(finished_dives(reference)) == 8

    out = tmp_path / "killed"
    proc = start(extract_cmd(extraction_inputs, out), tmp_path)
    wait_for(lambda: out.is_dir() and len(finished_dives(out)) >= 3, proc, timeout=240, poll=0.05)
    kill_group(proc)
    done_before = finished_dives(out)
    assert 3 <= len(done_before) < 8, "the kill came too late to test a resume"
    kept = {name: data for name, data in cache_bytes(out).items() if name.rsplit("/", 1)[0] in done_before}

    resumed = run(extract_cmd(extraction_inputs, out), tmp_path)
    n = len(done_before)
    assert f"{n} already cached, {8 - n} to compute" in resumed.stderr, resumed.stderr
    assert {k: v for k, v in cache_bytes(out).items() if k in kept} == kept  # finished dives untouched
    assert cache_bytes(out) == cache_bytes(reference)  # manifest and every array, byte for byte
    assert not list(out.glob("*/.*.tmp"))  # the interrupted dive's temporary is gone


# ----------------------------------------------------------------------------- faults in a built project

def test_damaged_weights_are_refused_and_repaired_by_dvc_repro(built_project):
    cache_before = cache_bytes(built_project / FEATURES)
    lock_before = (built_project / "dvc.lock").read_text()
    weights = built_project / WEIGHTS
    weights_before = weights.read_bytes()
    flip_bytes(weights, weights.stat().st_size // 2)  # inside a tensor: torch.load alone would not notice

    # the feature stage on its own (as `snakemake extract_features` or by hand) refuses the file
    failed = run(["snakemake", "-c2", "extract_features"], built_project, check=False)
    assert failed.returncode != 0
    # the first of the two datasets' jobs Snakemake starts (its order is its own) refuses it
    logs = [(built_project / f"logs/extract_features/{d}.log").read_text() for d in ("finediving", "mtl_aqa")]
    refusal = next((log for log in logs if f"{WEIGHTS}: sha256" in log), "")
    assert "manifest.json" in refusal and "fetch_i3d" in refusal, logs
    assert "weights_only" not in refusal
    assert cache_bytes(built_project / FEATURES) == cache_before  # no dive lost

    # `dvc repro` sees the changed output of fetch_i3d and restores it from its cache (or re-makes
    # it); the feature stage then finds every dive cached, and nothing downstream runs
    repaired = run(["dvc", "repro"], built_project)
    output = repaired.stdout + repaired.stderr
    assert set(stages_run(output)) <= {"fetch_i3d", "extract_features@finediving", "extract_features@mtl_aqa"}, output
    assert weights.read_bytes() == weights_before
    if "extract_features@finediving" in stages_run(output):   # DVC may also find it unchanged
        assert "0 to compute" in (built_project / "logs/extract_features/finediving.log").read_text()
    assert cache_bytes(built_project / FEATURES) == cache_before
    assert (built_project / "dvc.lock").read_text() == lock_before


def test_a_damaged_cache_file_is_recomputed_alone(built_project):
    cache = built_project / FEATURES
    work = built_project / ".aqa/work" / FEATURES   # where the stage resumes and extends (aqa.workdir)
    before = cache_bytes(cache)
    lock_before = (built_project / "dvc.lock").read_text()
    dives = finished_dives(cache)

    # the output damaged: DVC restores it from its cache (the run-cache entry of dvc.lock's run)
    damaged = cache / dives[0] / "maps.npy"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # truncated, as by a full disk or a killed copy
    out = run(["dvc", "repro"], built_project)
    output = out.stdout + out.stderr
    assert "Stage 'extract_features@finediving' is cached - skipping run" in output, output
    assert stages_run(output) == [], output
    assert cache_bytes(cache) == before

    # the state the stage resumes from damaged (a killed run's work folder), and the stage run:
    # that dive alone is recomputed
    shutil.copytree(cache, work)
    damaged = work / dives[0] / "maps.npy"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    out = run(["dvc", "repro", "--force", "--single-item", "extract_features@finediving"], built_project)
    output = out.stdout + out.stderr
    assert stages_run(output) == ["extract_features@finediving"], output
    log = (built_project / "logs/extract_features/finediving.log").read_text()
    assert f"{len(dives) - 1} already cached, 1 to compute" in log
    assert f"{dives[0]}: maps.npy: truncated" in log
    assert cache_bytes(cache) == before and not work.exists()
    assert (built_project / "dvc.lock").read_text() == lock_before
    assert stages_run(run(["dvc", "repro"], built_project).stdout) == []   # the models see the same features


def test_a_cache_made_before_the_work_folders_is_where_the_upgraded_stage_starts(built_project):
    """A project built when the feature cache was a `persist: true` output extended in place (main
    before issue 12 item 3), then updated to the work folders: the first run starts from the old
    cache (DVC deletes the output, Snakemake re-creates its empty folder; aqa.workdir takes dvc.lock's
    version from DVC's cache) and computes no dive."""
    root = built_project
    stage = "extract_features@finediving"
    out = "      - data/processed/features/${item.dataset}/i3d\n"
    current = {name: (root / name).read_text() for name in ("dvc.yaml", "workflow/rules/features.smk")}
    assert out in current["dvc.yaml"] and " --work {params.work}" in current["workflow/rules/features.smk"]
    (root / "dvc.yaml").write_text(current["dvc.yaml"].replace(out, out[:-1] + ":\n          persist: true\n"))
    (root / "workflow/rules/features.smk").write_text(
        current["workflow/rules/features.smk"].replace(" --work {params.work}", ""))
    log = root / "logs/extract_features/finediving.log"
    shutil.rmtree(root / ".dvc/cache/runs")   # a project of that time has no run-cache record of the stage

    older = run(["dvc", "repro", "--single-item", stage], root)   # the old stage: the cache extended in place
    assert stages_run(older.stdout) == [stage], older.stdout
    dives = finished_dives(root / FEATURES)
    assert f"{len(dives)} already cached, 0 to compute" in log.read_text() and "started from" not in log.read_text()
    assert not (root / ".aqa/work" / FEATURES).exists()
    before, lock = cache_bytes(root / FEATURES), yaml.safe_load((root / "dvc.lock").read_text())

    for name, text in current.items():   # the update
        (root / name).write_text(text)
    upgraded = run(["dvc", "repro", "--single-item", stage], root)
    assert stages_run(upgraded.stdout) == [stage], upgraded.stdout
    text = log.read_text()
    assert f"started from {FEATURES} as dvc.lock records it (DVC's cache)" in text, text
    assert f"{len(dives)} already cached, 0 to compute" in text, text
    assert cache_bytes(root / FEATURES) == before and not (root / ".aqa/work" / FEATURES).exists()
    assert yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]["outs"] == lock["stages"][stage]["outs"]


def test_an_impossible_crop_leaves_the_cache_whole(built_project):
    before = cache_bytes(built_project / FEATURES)
    params = read_params(built_project)
    good = params["extract_features"]["crop"]
    params["extract_features"]["crop"] = 300
    write_params(built_project, params)

    failed = run(["dvc", "repro"], built_project, check=False)
    assert failed.returncode != 0
    assert "extract_features.crop" in failed.stdout + failed.stderr
    assert cache_bytes(built_project / FEATURES) == before

    params["extract_features"]["crop"] = good
    write_params(built_project, params)
    again = run(["dvc", "repro"], built_project)
    assert stages_run(again.stdout + again.stderr) == [], again.stdout + again.stderr
    assert cache_bytes(built_project / FEATURES) == before
