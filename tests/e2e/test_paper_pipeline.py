"""Paper mode end to end: `aqa paper` (what `make paper` runs) on a tiny stand-in project, through
the real `dvc exp run`: params.yaml + params/paper.yaml + a few --set items for a tiny setting.

The tiny setting overrides only the overlay's epochs (2 for F+R, 1 for MUSDL): the backbone is
fine-tuned from the frames as the overlay says (random I3D weights, 12 dives, so it is slow on a
CPU but small)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from aqa.params import load_params

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, stdout_only: bool = False) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


@pytest.fixture()
def project(tmp_path, tiny_params) -> Path:
    """The pipeline, its overlay and tiny params (FineDiving only; F+R and MUSDL) in a fresh git +
    DVC repository."""
    from aqa.models.i3d import InceptionI3d

    root = tmp_path / "project"
    root.mkdir()
    for name in ("Snakefile", "dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    for name in ("workflow", "src", "params"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    weights = tmp_path / "random_i3d.pt"
    torch.manual_seed(0)
    torch.save(InceptionI3d().state_dict(), weights)
    p = tiny_params
    p["synthesize_videos"]["finediving"]["dives_per_video"] = 6
    p["extract_features"]["flip_view"] = False
    p["fetch_i3d"]["weights_path"] = str(weights)
    p["train"]["variants"] = {"fr": {"method": "fr"}, "musdl": {"method": "musdl", "train": {"lr": 1e-4}}}
    p["train"]["exemplar_modes"] = ["dn"]
    p["datasets"] = {"run": ["finediving"], "variants": {"finediving": ["fr", "musdl"], "mtl_aqa": []}}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["make_report"]["table4_variant"] = "fr"
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\n")
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    _run([str(BIN / "dvc"), "config", "core.analytics", "false"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "tiny pipeline"], root)
    return root


def test_paper_mode_runs_the_pipeline_as_a_dvc_experiment(project):
    before = load_params(project / "params.yaml")
    tiny = ["-S", "train.epochs=2", "-S", "train.variants.musdl.train.epochs=1"]
    _run([str(BIN / "aqa"), "paper", "--name", "tiny-paper", *tiny], project)

    # DVC wrote the overlay's values (and the tiny ones on top) into params.yaml; the rest is as it was.
    after = load_params(project / "params.yaml")
    expected = json.loads(json.dumps(before))
    expected["train"].update(backbone="finetune", batchnorm="split", seeds=[0], epochs=2, batch_size=8, lr=0.001, lr_backbone=0.0001,
                             weight_decay=0.0, prob_tas_threshold=0.25, validation_fraction=0.0)
    expected["train"]["variants"]["musdl"]["train"]["epochs"] = 1
    expected["evaluate"]["num_exemplars"] = 10
    assert after == expected

    # Every training dive is in the pool (and none is held out for validation).
    dives = pd.read_parquet(project / "data/processed/annotations/finediving/dives.parquet")
    n_train, n_test = int((dives["split"] == "train").sum()), int((dives["split"] == "test").sum())
    log = (project / "logs/train/finediving/fr-dn.log").read_text()
    assert f"fr-dn: {n_train} training, 0 validation, {n_test} test dives" in log

    for variant, epochs in (("fr-dn", 2), ("musdl-dn", 1)):
        history = json.loads((project / f"models/finediving/{variant}/seed0/history.json").read_text())
        assert len(history) == epochs and all(h["val"] == {} for h in history)
        metrics = json.loads((project / f"reports/metrics/finediving/{variant}.json").read_text())
        assert metrics["seeds"] == [0]
        # honest = the last epoch's model tested once; paper = the best of each metric over epochs
        seed = metrics["per_seed"][0]
        assert seed["best_epoch"] == epochs - 1
        assert seed["honest"]["rho"] == pytest.approx(history[-1]["test"]["rho"])
        assert seed["paper"]["rho"] == pytest.approx(max(h["test"]["rho"] for h in history))
    table = (project / "reports/tables/finediving_table3.md").read_text()
    assert "honest = last epoch's model (no validation split" in table

    # DVC's experiment ledger has the run, its params and its metrics.
    shown = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], project, stdout_only=True))
    exps = [rev for entry in shown for group in (entry.get("experiments") or []) for rev in group["revs"]]
    ours = [e for e in exps if e.get("name") == "tiny-paper"]
    assert len(ours) == 1, [e.get("name") for e in exps]
    data = ours[0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["validation_fraction"] == 0.0
    assert "reports/summary/finediving/fr-dn.json" in data["metrics"]   # the compact summary is the DVC metrics
