"""`aqa train` + `aqa evaluate` with train.backbone: finetune on rendered frames, every stage
before them run by its own command: synthesize-videos (the stand-in renderer), extract-frames,
convert-annotations, extract-features (its manifest and frame digests anchor the fine-tuning)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aqa.train.checkpoint import load_checkpoint
from frame_helpers import SMALL_PROTOCOL, finetune_train_params, write_weights
from train_helpers import sqlite_store, write_params

AQA = Path(sys.executable).with_name("aqa")


def _aqa(*args, cwd, ok=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(AQA), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_finetune_train_then_evaluate_on_rendered_frames(tmp_path, tiny_params):
    p = finetune_train_params(tiny_params)
    p["synthesize_videos"]["finediving"].update(num_videos=2, dives_per_video=4)
    p["extract_features"].update(SMALL_PROTOCOL)
    params = write_params(tmp_path / "params.yaml", p)
    raw, frames = tmp_path / "raw", tmp_path / "frames"
    ann, features, uri = tmp_path / "annotations/finediving", tmp_path / "features", sqlite_store(tmp_path)
    _aqa("synthesize-videos", "--params", params, "--dataset", "finediving", "--videos", raw / "videos",
         "--annotations", raw / "annotations", "--masks", raw / "masks", cwd=tmp_path)
    _aqa("extract-frames", "--params", params, "--dataset", "finediving", "--annotations", raw / "annotations",
         "--out", frames, *[a for v in sorted((raw / "videos").glob("*.mp4")) for a in ("--video", v)], cwd=tmp_path)
    _aqa("convert-annotations", "--params", params, "--dataset", "finediving", "--annotations", raw / "annotations",
         "--out", ann, cwd=tmp_path)
    weights = write_weights(tmp_path / "weights")
    _aqa("extract-features", "--params", params, "--frames", frames, "--annotations", ann / "dives.parquet",
         "--weights", weights, "--out", features, cwd=tmp_path)

    models = tmp_path / "models" / "tsa-dn"
    common = ["--params", params, "--variant", "tsa-dn", "--features", features, "--annotations",
              ann / "dives.parquet", "--tracking-uri", uri]
    # without the frames or the weights: one line naming what is missing, nothing written
    refused = _aqa("train", *common, "--out", models, cwd=tmp_path, ok=False)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == (
        "aqa train: error: train.backbone is finetune: training needs the I3D weights (aqa train --weights)")
    assert not (models / "seed0" / "checkpoint.pt").exists()
    _aqa("train", *common, "--out", models, "--frames", frames, "--weights", weights, cwd=tmp_path)
    ckpt = load_checkpoint(models / "seed0" / "best_val.pt")
    assert ckpt["config"]["train"]["backbone"] == "finetune"
    start = torch.load(weights, weights_only=True)["conv3d_1a_7x7.conv3d.weight"]
    assert not torch.equal(ckpt["model"]["backbone.i3d.conv3d_1a_7x7.conv3d.weight"], start)

    metrics_path = tmp_path / "metrics" / "tsa-dn.json"
    evaluate = ["evaluate", *common, "--models", models, "--metrics", metrics_path,
                "--predictions", tmp_path / "pred" / "tsa-dn"]
    no_frames = _aqa(*evaluate, cwd=tmp_path, ok=False)
    assert no_frames.returncode == 1 and "the frames folder is needed" in no_frames.stderr.strip().splitlines()[-1]
    _aqa(*evaluate, "--frames", frames, cwd=tmp_path)
    metrics = json.loads(metrics_path.read_text())
    assert metrics["scoring"] == "voting" and set(metrics["honest"]) >= {"rho", "rl2_x100", "l2", "aiou50"}
    assert ["train.backbone", "finetune"] in metrics["provenance"]["params"]
    # the evaluation's honest metrics are the training's own vote on test at the best epoch
    history = json.loads((models / "seed0" / "history.json").read_text())
    assert metrics["per_seed"][0]["honest"]["l2"] == pytest.approx(history[0]["test"]["l2"], rel=1e-4)
