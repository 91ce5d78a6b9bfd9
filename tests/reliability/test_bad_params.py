"""Bad params stop `dvc repro` at its first stage, check_params, in one line naming the key, even
when no stage that reads the key would run (issue 11, defect 6); nothing built is touched, and
once the file is fixed the next `dvc repro` re-runs no real stage. check_params runs whenever
params.yaml changes, and only then: a repro with nothing changed runs nothing."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml

from harness import run


def _stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def _real_stages_run(output: str) -> list[str]:
    return [s for s in _stages_run(output) if s != "check_params"]


def _lock_of_real_stages(root: Path) -> dict:
    """dvc.lock without check_params, whose entry holds params.yaml's hash (any edit changes it)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    lock["stages"].pop("check_params")
    return lock


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _edit_params(root: Path, old: str, new: str) -> None:
    path = root / "params.yaml"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def _refused(root: Path, *expected: str) -> str:
    """Run `dvc repro`, which must stop at check_params with one error line holding `expected`."""
    proc = run(["dvc", "repro"], root, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert _stages_run(output) == ["check_params"], output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("aqa check-params: error: ")]
    assert len(errors) == 1, output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def test_a_misspelled_key_stops_a_fresh_dvc_repro_before_any_stage(tiny_project):
    _edit_params(tiny_project, "  epochs: 2\n", "  epoch: 2\n")
    line = _refused(tiny_project, "params.yaml: train.epoch: unknown key (did you mean train.epochs?)")
    assert line.endswith("train.epochs: missing")
    assert not (tiny_project / "data").exists()


def test_a_stray_key_stops_a_built_project_and_nothing_is_touched(built_project):
    lock = (built_project / "dvc.lock").read_text()
    before = {d: _digests(built_project / d) for d in ("data", "models", "reports")}

    # a key no stage tracks: before the check, `dvc repro` ran nothing and exited 0
    _edit_params(built_project, "  epochs: 2\n", "  epochs: 2\n  epoch: 200\n")
    _refused(built_project, "train.epoch: unknown key")
    # out of range in a tracked section: refused before extract_features clears its cache
    _edit_params(built_project, "  epoch: 200\n", "")
    _edit_params(built_project, "  crop: 112\n", "  crop: 300\n")
    _refused(built_project, "params.yaml: extract_features.crop = 300 exceeds extract_features.resize [200, 112]")

    assert {d: _digests(built_project / d) for d in before} == before
    assert (built_project / "dvc.lock").read_text() == lock

    # fixed: no real stage runs, the ledger is as it was; then nothing at all runs
    _edit_params(built_project, "  crop: 300\n", "  crop: 112\n")
    proc = run(["dvc", "repro"], built_project)
    assert _real_stages_run(proc.stdout + proc.stderr) == [], proc.stdout
    assert (built_project / "dvc.lock").read_text() == lock
    proc = run(["dvc", "repro"], built_project)
    assert _stages_run(proc.stdout + proc.stderr) == [] and "up to date" in proc.stdout, proc.stdout


def test_exponent_numbers_mean_the_same_to_dvc_and_to_the_stages(built_project):
    lock = _lock_of_real_stages(built_project)
    _edit_params(built_project, "  lr: 0.001\n", "  lr: 1e-3\n")
    # DVC reads YAML 1.2: the same float, so no stage is out of date (the check passes)
    proc = run(["dvc", "repro"], built_project)
    assert _real_stages_run(proc.stdout + proc.stderr) == [], proc.stdout
    # and a stage that runs reads it as that float too (Snakemake's config and `aqa train`)
    run(["dvc", "repro", "--force", "--single-item", "train@fr-dn"], built_project)
    assert _lock_of_real_stages(built_project) == lock
