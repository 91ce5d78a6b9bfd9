"""profiles/default is where Snakemake looks for a root Snakefile's profile, and it is used."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def _dry_run(root: Path, *extra: str) -> str:
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run([str(snakemake), "-n", "-c1", *extra, "synthesize_videos"], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_snakemake_picks_up_the_default_profile(tmp_path, repo_params):
    root = tmp_path / "project"
    for name in ("workflow", "profiles"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params, sort_keys=False))
    profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert profile["printshellcmds"] is True

    out = _dry_run(root)
    assert "workflow specific profile profiles/default" in out, out[-2000:]
    assert "aqa synthesize-videos --params params.yaml" in out, out[-2000:]   # printshellcmds: set by it
    # without it (the check above could fail): no command printed
    assert "aqa synthesize-videos" not in _dry_run(root, "--workflow-profile", "none")
