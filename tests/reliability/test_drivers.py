"""The drivers survive kills and concurrent runs (issue 11, defect 5).

A `dvc repro` killed with SIGKILL (its whole process group: DVC, Snakemake and the `aqa` job)
while a long stage runs leaves Snakemake's lock files behind; the next `dvc repro` must carry on
with no manual step and end with the results of an uninterrupted run. Two `dvc repro` at once:
DVC's locks (the repository lock, then one per stage's files) let one run and stop the other.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import torch

from harness import commit, kill_group, read_params, run, start, wait_for, write_params

FEATURES = "data/processed/features/finediving/i3d"
MODEL = "models/finediving/fr-dn"
WORK = ".aqa/work"   # where the long stages keep their resumable state (aqa.workdir)


def results(root: Path, *, features: bool = False) -> dict[str, bytes]:
    """The bytes of the metrics and predictions (and, if asked, the feature cache), by path."""
    patterns = ["reports/metrics/**/*.json", "reports/predictions/**/*.parquet"]
    if features:  # every dataset's cache
        patterns += ["data/processed/features/**/*.npy", "data/processed/features/**/frames.sha256"]
    found = {str(p.relative_to(root)): p.read_bytes() for pattern in patterns for p in root.glob(pattern)}
    assert found, f"no results under {root}"
    return found


def stale_snakemake_locks(root: Path) -> list[Path]:
    return sorted((root / ".snakemake" / "locks").glob("*.lock"))


def kill_when(root: Path, predicate) -> None:
    """Start `dvc repro`, SIGKILL its process group as soon as `predicate()` holds."""
    proc = start(["dvc", "repro"], root)
    wait_for(predicate, proc, timeout=600, poll=0.05)
    kill_group(proc)


def test_kill_during_extract_features_then_repro_resumes(tiny_project, _built_once):
    root = tiny_project
    features = root / FEATURES
    kill_when(root, lambda: any((root / WORK / FEATURES).rglob("pooled.npy")))
    assert not (features / ".extract_features.done").exists(), "the kill came after extract_features"
    assert stale_snakemake_locks(root), "the killed Snakemake left no lock (nothing to test)"

    out = run(["dvc", "repro"], root)  # no `snakemake --unlock`, no --rerun-incomplete by hand
    assert "removed .snakemake/locks/" in out.stdout + out.stderr
    assert not stale_snakemake_locks(root)
    assert results(root, features=True) == results(_built_once, features=True)


def _more_epochs(root: Path, epochs: int) -> None:
    params = read_params(root)
    params["train"]["epochs"] = epochs
    write_params(root, params)
    commit(root, f"{epochs} epochs")


def test_kill_during_training_then_repro_resumes(built_project, tmp_path):
    # Four epochs (the built project trained two): the kill lands after a checkpoint was written
    # and before training ends, so the next run resumes from it.
    reference = tmp_path / "reference"
    shutil.copytree(built_project, reference, symlinks=True)
    for root in (built_project, reference):
        _more_epochs(root, 4)
    run(["dvc", "repro"], reference)

    root = built_project
    seed_dir = root / WORK / MODEL / "seed0"   # where training keeps its state (aqa.workdir)

    def resumable_checkpoint_written() -> bool:
        """A checkpoint of the 4-epoch training, not finished (the work folder first holds the
        2-epoch model, copied from DVC's cache, which trains afresh)."""
        try:
            state = torch.load(seed_dir / "checkpoint.pt", weights_only=True, map_location="cpu")
        except Exception:   # not there yet (or replaced while read: atomic writes, so read again)
            return False
        return state["config"]["train"]["epochs"] == 4 and not state["finished"]

    kill_when(root, resumable_checkpoint_written)
    assert not (root / MODEL / ".train.done").exists(), "the kill came after training"
    assert stale_snakemake_locks(root), "the killed Snakemake left no lock (nothing to test)"

    run(["dvc", "repro"], root)
    assert results(root) == results(reference)
    assert "up to date" in run(["dvc", "status"], root).stdout


def stages_run(output: str) -> list[str]:
    """The DVC stages a `dvc repro` ran, without the params check that every run starts with."""
    return [s for s in re.findall(r"Running stage '([^']+)'", output) if s != "check_params"]


def test_two_repro_at_once_one_runs_the_other_stops(built_project):
    root = built_project
    _more_epochs(root, 3)  # work for train, evaluate and make_report
    procs = [start(["dvc", "repro"], root), start(["dvc", "repro"], root)]
    began = time.monotonic()
    while all(p.poll() is None for p in procs):
        assert time.monotonic() - began < 600, "neither dvc repro ended"
        time.sleep(0.1)
    refused = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not refused)
    refused_after = time.monotonic() - began
    refused_out = refused.stdout.read()
    winner_out, _ = winner.communicate(timeout=600)

    assert refused.returncode != 0, f"the first to end should be the refused one:\n{refused_out}"
    assert refused_after < 30, f"refused only after {refused_after:.0f} s"
    # DVC's repository lock, or (once the winner runs a stage and has let the repository lock go)
    # its lock on that stage's files, which names the process holding it.
    assert "Unable to acquire lock" in refused_out or re.search(
        r"is busy, it is being blocked by:\s+\(PID \d+\): \S*dvc repro", refused_out), refused_out
    assert winner.returncode == 0, winner_out
    assert "train@fr-dn" in stages_run(winner_out)
    assert not stale_snakemake_locks(root)

    before = results(root)
    third = run(["dvc", "repro"], root)
    assert stages_run(third.stdout + third.stderr) == [], third.stdout
    assert results(root) == before
