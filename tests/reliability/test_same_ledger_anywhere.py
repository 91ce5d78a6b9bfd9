"""The ledger is machine- and folder-independent: the same inputs give the same dvc.lock in two
folders, and a moved checkout reuses everything it has (issue 11, defect 6)."""

from __future__ import annotations

import copy
import re
import shutil

import yaml

from harness import make_project, run
from tiny_params import shrink


def stages_run(output: str) -> list[str]:
    """Names of the DVC stages a `dvc repro` ran (its "Running stage '<name>'" lines)."""
    return re.findall(r"Running stage '([^']+)'", output)


def real_stages_run(output: str) -> list[str]:
    """As stages_run, without the params check that every `dvc repro` runs first."""
    return [s for s in stages_run(output) if s != "check_params"]


def test_two_folders_give_the_same_dvc_lock(_built_once, tmp_path, repo_params, random_weights):
    other = make_project(tmp_path / "elsewhere" / "clone", shrink(copy.deepcopy(repo_params)), random_weights)
    run(["dvc", "repro"], other)
    first = yaml.safe_load((_built_once / "dvc.lock").read_text())
    second = yaml.safe_load((other / "dvc.lock").read_text())
    assert second == first
    assert (other / "dvc.lock").read_text() == (_built_once / "dvc.lock").read_text()


def test_a_moved_checkout_reuses_its_cache_and_models(_built_once, tmp_path):
    moved = tmp_path / "moved" / "checkout"
    shutil.copytree(_built_once, moved, symlinks=True)
    lock_before = (moved / "dvc.lock").read_text()

    out = run(["dvc", "repro"], moved)
    assert real_stages_run(out.stdout + out.stderr) == [], out.stdout + out.stderr
    assert (moved / "dvc.lock").read_text() == lock_before
    status = run(["dvc", "status"], moved)
    assert "changed" not in status.stdout, status.stdout
