"""What every Snakemake start (one per DVC stage) imports while it reads the Snakefile: not PyAV."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def test_reading_the_snakefile_does_not_import_pyav(tmp_path, repo_params):
    root = tmp_path / "project"
    for name in ("workflow", "profiles"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params, sort_keys=False))
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run([str(snakemake), "--list-rules"], cwd=root, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPROFILEIMPORTTIME="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    imported = set(re.findall(r"^import time:.*\|\s*([\w.]+)\s*$", proc.stderr, re.M))
    assert "aqa.params" in imported and "extract_frames_video" in proc.stdout   # the Snakefile was read
    assert not {m for m in imported if m == "av" or m.startswith("av.")}, "PyAV imported at start-up"
