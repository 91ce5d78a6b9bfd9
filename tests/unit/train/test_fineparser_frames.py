"""FineParser with train.backbone: finetune (tier T1, paper mode): the frames path's batches carry
the masks of each load through exactly its frames' flip and crop (then binarised), checked to be
the masks the cache was made from, and the cache's SVE features; a tiny `aqa train` + `aqa
evaluate` of fineparser at T1 runs end to end and gives mask metrics.

Real inputs: JPEG frames and masks (a frame's mask = its pixels brighter than the frame's median,
tests/fineparser_cache.py), I3D weights imported as fetch_i3d does, the cache by extract_features.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aqa.train.checkpoint import load_checkpoint
from aqa.train.frames import FrameDataError, load_frame_data
from fineparser_cache import fineparser_dataset, load_with_additions
from train_helpers import sqlite_store, write_params

AQA = Path(sys.executable).with_name("aqa")
TINY_T1 = {"method": "fineparser", "psnet": {"head_hidden": [8]}, "decoder": {"dim": 64, "heads": 2, "depth": 1},
           "regressor_hidden": [8], "sap": {"tier": "T1"}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, repo_params):
    folder = tmp_path_factory.mktemp("fpt1")
    return fineparser_dataset(folder, repo_params["extract_features"], num_dives=8)


def _frame_data(d, masks_root=None, keys=("sve", "masks")):
    return load_frame_data(d["dives"], d["features"], d["frames"], d["weights"], "cpu", cache_keys=keys,
                           masks_root=d["masks"] if masks_root is None else masks_root)


def _agreement(frames: torch.Tensor, masks: torch.Tensor) -> float:
    """Fraction of pixels where the mask says what the transformed frame shows: foreground iff
    the pixel is brighter than its frame's median (the rule the fixture's masks were drawn by)."""
    gray = frames.float().mean(dim=1)                                    # (B, T, H, W)
    bright = gray > gray.flatten(2).median(dim=2).values[..., None, None]
    return float((bright == masks).float().mean())


def test_the_centre_crop_batch_carries_the_caches_masks_and_sve(data_dir):
    frames = _frame_data(data_dir)
    cached = load_with_additions(data_dir["dives"], data_dir["features"])
    rows = np.arange(4)
    ours, theirs = frames.batch(rows), cached.batch(rows)
    assert ours["masks"].dtype == torch.bool and ours["masks"].shape == theirs["masks"].shape == (4, 96, 32, 32)
    assert torch.equal(ours["masks"], theirs["masks"])                   # bit for bit, from the mask files
    assert torch.equal(ours["sve"], theirs["sve"]) and "mixed4f" not in ours
    (fetched,) = next(iter(frames.fetch([(frames.request(rows),)])))    # the loader's path: the same
    assert torch.equal(fetched["masks"], ours["masks"]) and torch.equal(fetched["frames"], ours["frames"])


def test_a_training_loads_masks_follow_its_flip_and_crop(data_dir):
    frames = _frame_data(data_dir)
    rows = np.arange(8)
    load = next(frames.request(rows, seed=s, epoch=0) for s in range(50)
                if frames.request(rows, seed=s, epoch=0).augment[:, 0].any()
                and len(set(frames.request(rows, seed=s, epoch=0).augment[:, 1])) > 1)
    (batch,) = next(iter(frames.fetch([(load,)])))
    flipped = load.augment[:, 0].astype(bool)
    assert batch["masks"].shape == (8, 96, 32, 32)
    # as well aligned as the cache's centre crop (the squeeze's blur keeps both below 1: 0.78 here)
    centre = frames.batch(rows)
    aligned, reference = _agreement(batch["frames"], batch["masks"]), _agreement(centre["frames"], centre["masks"])
    assert aligned > 0.75 and abs(aligned - reference) < 0.02
    # the same masks with the flip undone, or the centre crop's, no longer lie on the frames (~0.5)
    undone = batch["masks"].clone()
    undone[flipped] = undone[flipped].flip(-1)
    assert _agreement(batch["frames"][flipped], undone[flipped]) < 0.6
    assert _agreement(batch["frames"], centre["masks"]) < 0.65


def test_masks_that_are_not_the_caches_are_refused_naming_the_dive(data_dir, tmp_path):
    masks = shutil.copytree(data_dir["masks"], tmp_path / "masks")
    first = data_dir["rows"][0]
    path = sorted((masks / first["video"] / str(first["idx"])).glob("*.jpg"))[0]
    Image.fromarray(np.zeros_like(np.asarray(Image.open(path))), mode="L").save(path)
    with pytest.raises(FrameDataError, match=rf"dive {first['video']}/{first['idx']}: its masks in .* are not "
                                             "those the feature cache"):
        _frame_data(data_dir, masks)
    with pytest.raises(FrameDataError, match="give the masks folder"):
        load_frame_data(data_dir["dives"], data_dir["features"], data_dir["frames"], None, cache_keys=("masks",))
    with pytest.raises(FrameDataError, match="sap.tier: T1"):
        _frame_data(data_dir, keys=("mixed4f", "sve", "masks"))


def _aqa(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(AQA), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_fineparser_at_t1_trains_and_evaluates_end_to_end(data_dir, tiny_params, tmp_path):
    """`aqa train` + `aqa evaluate` of fineparser-dn at T1, 1 epoch: SAP's whole I3D (from the
    Kinetics weights) and TAP's fine-tuned I3D (at lr_backbone) both train; the metrics have the
    mask metrics and the trivial references."""
    from aqa.models.registry import build_model
    from aqa.train.loop import make_optimizer

    p = copy.deepcopy(tiny_params)
    p["train"].update({"backbone": "finetune", "epochs": 1, "batch_size": 2, "seeds": [0], "device": "cpu",
                       "validation_fraction": 0.25, "variants": {"fineparser": copy.deepcopy(TINY_T1)}})
    p["evaluate"].update({"num_exemplars": 2, "batch_size": 4})
    p["make_report"].update(exemplar_counts=[1, 2], table4_variant="fineparser")
    p["datasets"]["variants"] = {"finediving": [], "mtl_aqa": []}
    p["datasets"]["dn_only"] = {"finediving": ["fineparser"], "mtl_aqa": []}
    p["extract_features"].update(data_dir["cfg"])
    params = write_params(tmp_path / "params.yaml", p)
    _aqa("check-params", "--params", params, cwd=tmp_path)
    d, uri, models = data_dir, sqlite_store(tmp_path), tmp_path / "models"
    common = ["--params", params, "--variant", "fineparser-dn", "--features", d["features"],
              "--annotations", d["dives"], "--frames", d["frames"], "--masks", d["masks"], "--tracking-uri", uri]
    _aqa("train", *common, "--out", models, "--weights", d["weights"], cwd=tmp_path)
    ckpt = load_checkpoint(models / "seed0" / "best_val.pt")
    kinetics = torch.load(d["weights"], weights_only=True)
    weights = ckpt["model"]
    assert ckpt["config"]["train"]["backbone"] == "finetune" and ckpt["config"]["model_kwargs"]["sap"]["tier"] == "T1"
    for part in ("backbone.i3d.", "sap."):      # TAP's I3D and SAP's whole trunk: from Kinetics, trained
        layer = f"{part}conv3d_1a_7x7.conv3d.weight"
        assert layer in weights and not torch.equal(weights[layer], kinetics["conv3d_1a_7x7.conv3d.weight"])
    assert int(weights["sap.kinetics_loaded"]) == 1 and "sap.side.1.side_prep.weight" in weights
    history = json.loads((models / "seed0" / "history.json").read_text())
    assert history[0]["train"]["loss_focal_mask"] > 0 and "mask_mae" in history[0]["test"]
    model = build_model("fineparser", **ckpt["config"]["model_kwargs"])
    model.backbone = torch.nn.Module()
    model.backbone.i3d = torch.nn.Linear(1, 1)  # stands for TAP's I3D: only its group is looked at
    groups = {g["name"]: g["lr"] for g in make_optimizer(model, p["train"]).param_groups}
    assert groups["backbone"] == p["train"]["lr_backbone"] and groups["sap"] == p["train"]["lr"]

    metrics = tmp_path / "metrics.json"
    _aqa("evaluate", *common, "--models", models, "--metrics", metrics, "--predictions", tmp_path / "pred",
         cwd=tmp_path)
    result = json.loads(metrics.read_text())
    assert {"mask_mae", "mask_fbeta", "mask_smeasure"} <= set(result["honest"])
    assert 0 <= result["honest"]["mask_mae"]["mean"] <= 1
    assert set(result["mask_references"]) == {"all_background", "motion"}
