"""FineParser through the host's train and evaluate stages (issue 9): its optimiser groups, the
SAP trunk from the Kinetics weights (and the refusal without them), resume after a kill, the mask
metrics and references in the metrics JSON, the overlays in MLflow.

Real inputs: JPEG frames (and masks), I3D weights imported as fetch_i3d does, a cache made by
extract_features at a small protocol (32 x 32 crop) with FineParser's additions
(tests/fineparser_cache.py), a real MLflow sqlite store.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from aqa.evaluate import mask_metrics as M
from aqa.evaluate.run import evaluate_variant
from aqa.evaluate.sap_masks import MaskFramesError
from aqa.models.i3d_weights import load_verified_weights
from aqa.models.registry import build_model
from aqa.train.checkpoint import load_checkpoint
from aqa.train.loop import make_optimizer
from aqa.train.run import dataset_masks, model_kwargs, parse_variant, split_rows, train_variant
from aqa.train.sap_init import SAPWeightsError, init_sap
from fineparser_cache import fineparser_dataset, load_with_additions
from train_helpers import sqlite_store

# The model at full width (it reads I3D's 1024 and SVE's 512 channels), its heads small.
TINY_FP = {"method": "fineparser", "psnet": {"head_hidden": [8]}, "decoder": {"dim": 64, "heads": 2, "depth": 1},
           "regressor_hidden": [8]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, repo_params):
    folder = tmp_path_factory.mktemp("fp")
    return {**fineparser_dataset(folder, repo_params["extract_features"], num_dives=8),
            "mlflow": sqlite_store(folder)}


def _params(tiny_params, **train):
    p = copy.deepcopy(tiny_params)
    p["train"].update({"epochs": 1, "batch_size": 2, "seeds": [0], "device": "cpu", "validation_fraction": 0.25,
                       "variants": {"fineparser": dict(TINY_FP),
                                    "fp_table3_c": {**TINY_FP, "ablation": "table3_C"}}, **train})
    p["evaluate"].update({"num_exemplars": 2, "batch_size": 4})
    p["make_report"]["exemplar_counts"] = [1, 2]
    p["datasets"]["variants"] = {"finediving": ["fineparser"], "mtl_aqa": []}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["extract_features"]["fineparser"]["finediving"] = True
    return p


def _train(data_dir, params, out, variant="fineparser-dn", **kw):
    kw.setdefault("weights_path", data_dir["weights"])
    return train_variant(variant, features_dir=data_dir["features"], dives_parquet=data_dir["dives"], out_dir=out,
                         params=params, tracking_uri=data_dir["mlflow"], **kw)


def test_optimiser_groups_are_fineparsers_parts_at_the_codes_lr():
    model = build_model("fineparser", **{k: v for k, v in TINY_FP.items() if k != "method"})
    opt = make_optimizer(model, {"lr": 1e-3, "lr_backbone": 1e-4, "weight_decay": 0.0})
    names = [g["name"] for g in opt.param_groups]
    assert names == ["sap", "psnet", "sve", "finereg"]
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)) and set(ids) == set(trainable)   # each trainable tensor exactly once
    sap_ids = {id(p) for p in opt.param_groups[0]["params"]}
    assert id(model.sap.state_dict(keep_vars=True)["mixed_5c.branch_0.conv3d.weight"]) in sap_ids   # SAP's trunk top trains (tier T2)
    assert not any(id(p) in ids for p in model.backbone.parameters())  # TAP's I3D is frozen on the cached path
    # an ablation without SAP has no SAP group
    no_sap = build_model("fineparser", ablation="table3_C")
    assert [g["name"] for g in make_optimizer(no_sap, {"lr": 1e-3, "lr_backbone": 1e-4,
                                                       "weight_decay": 0}).param_groups] == ["psnet", "finereg"]


def test_sap_starts_from_the_kinetics_weights_and_refuses_without_them(data_dir, tiny_params, tmp_path):
    model = build_model("fineparser", **{k: v for k, v in TINY_FP.items() if k != "method"})
    with pytest.raises(Exception, match="never initialised from the Kinetics"):
        model.encode(load_with_additions(data_dir["dives"], data_dir["features"]).batch([0, 1]), "pred")
    init_sap(model, data_dir["weights"], "test")
    state, _ = load_verified_weights(data_dir["weights"])
    for key in ("mixed_5b.branch_0.conv3d.weight", "mixed_5c.branch_3.1.batch3d.running_var"):
        assert torch.equal(model.sap.state_dict()[key], state[key])
    # the training stage refuses, in one line, before any output is written
    with pytest.raises(SAPWeightsError, match="--weights"):
        _train(data_dir, _params(tiny_params), tmp_path / "m", weights_path=None)
    assert not (tmp_path / "m" / "seed0" / "checkpoint.pt").exists()
    # an ablation without SAP needs no weights
    _train(data_dir, _params(tiny_params), tmp_path / "c", variant="fp_table3_c-dn", weights_path=None)
    assert (tmp_path / "c" / "seed0" / "best_val.pt").is_file()
    # ... and, without masks to predict, its evaluation reads no frames and writes no mask metrics
    result = evaluate_variant("fp_table3_c-dn", models_dir=tmp_path / "c", features_dir=data_dir["features"],
                              dives_parquet=data_dir["dives"], metrics_path=tmp_path / "c.json",
                              predictions_dir=tmp_path / "pc", params=_params(tiny_params),
                              tracking_uri=data_dir["mlflow"], frames_root=None)
    assert "mask_references" not in result and not any(k.startswith("mask") for k in result["honest"])
    assert dict(result["model_settings"])["ablation"] == "table3_C" and "aiou50" in result["honest"]


def test_killed_training_resumes_to_the_uninterrupted_result(data_dir, tiny_params, tmp_path):
    params = _params(tiny_params, epochs=2)
    whole = _train(data_dir, params, tmp_path / "whole")[0]
    _train(data_dir, params, tmp_path / "killed", max_epochs=1)
    part = load_checkpoint(tmp_path / "killed" / "seed0" / "checkpoint.pt")
    assert part["epoch"] == 1 and not part["finished"] and int(part["model"]["sap.kinetics_loaded"]) == 1
    resumed = _train(data_dir, params, tmp_path / "killed", weights_path=None)[0]   # the checkpoint brings SAP back
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed) == strip(whole)
    a = load_checkpoint(tmp_path / "whole" / "seed0" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "killed" / "seed0" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {"loss_focal_mask", "loss_bce_seg", "loss_mse"} <= set(whole[0]["train"])
    assert {"mask_mae", "mask_fbeta", "mask_smeasure"} <= set(whole[0]["test"])   # per epoch: the paper protocol


def test_evaluate_writes_mask_metrics_references_and_overlays(data_dir, tiny_params, tmp_path,
                                                              monkeypatch):
    params = _params(tiny_params)
    _train(data_dir, params, tmp_path / "m")
    metrics_path = tmp_path / "metrics.json"
    where = dict(models_dir=tmp_path / "m", features_dir=data_dir["features"], dives_parquet=data_dir["dives"],
                 metrics_path=metrics_path, predictions_dir=tmp_path / "pred", params=params,
                 tracking_uri=data_dir["mlflow"])
    with pytest.raises(MaskFramesError, match="--frames"):   # refused before anything is written
        evaluate_variant("fineparser-dn", **where, frames_root=None)
    assert not metrics_path.exists() and not (tmp_path / "pred").exists()
    evaluate_variant("fineparser-dn", models_dir=tmp_path / "m", features_dir=data_dir["features"],
                     dives_parquet=data_dir["dives"], metrics_path=metrics_path,
                     predictions_dir=tmp_path / "pred", params=params, tracking_uri=data_dir["mlflow"],
                     frames_root=data_dir["frames"])
    result = json.loads(metrics_path.read_text())
    keys = {"mask_mae", "mask_fbeta", "mask_fbeta_max", "mask_smeasure"}
    for block in ("honest", "paper"):
        assert keys <= set(result[block]) and all(set(result[block][k]) == {"mean", "std"} for k in keys)
        assert keys <= set(result["per_seed"][0][block])
    assert set(result["mask_references"]) == {"all_background", "motion"}
    assert all(set(v) == {"mae", "fbeta", "fbeta_max", "smeasure"} for v in result["mask_references"].values())

    # the honest numbers are the best-validation model's masks of the test queries against their
    # ground truth, recomputed here directly
    data = load_with_additions(data_dir["dives"], data_dir["features"])
    data.dataset = "finediving"
    best = load_checkpoint(tmp_path / "m" / "seed0" / "best_val.pt")
    model = build_model("fineparser", **best["config"]["model_kwargs"])
    model.load_state_dict(best["model"])
    model.eval()
    _, _, test = split_rows(data, params["train"])
    batch = data.batch(test)
    pred, gt = model.predict_masks(batch).numpy(), batch["masks"].numpy() >= 0.5
    direct = M.summarise([M.dive_scores(p, g) for p, g in zip(pred, gt)])
    seed0 = result["per_seed"][0]["honest"]
    assert seed0["mask_mae"] == pytest.approx(direct["mae"], abs=1e-6)
    assert seed0["mask_fbeta"] == pytest.approx(direct["fbeta_adaptive"], abs=1e-6)
    assert seed0["mask_smeasure"] == pytest.approx(direct["smeasure"], abs=1e-6)
    # all background's MAE is the ground truth's foreground fraction
    assert result["mask_references"]["all_background"]["mae"] == pytest.approx(gt.mean(), abs=1e-6)

    client = MlflowClient(data_dir["mlflow"])
    monkeypatch.chdir(data_dir["mlflow"].removeprefix("sqlite:///").rsplit("/", 1)[0])  # artefacts beside the store
    run = client.search_runs(client.get_experiment_by_name("finediving").experiment_id,
                             "tags.`aqa.role` = 'evaluation' and tags.variant = 'fineparser-dn'")[0]
    overlays = [a.path for a in client.list_artifacts(run.info.run_id, "mask_overlays")]
    assert len(overlays) == 8 and all(p.endswith(".png") for p in overlays)
    assert "honest_mask_fbeta" in run.data.metrics


def test_mask_loss_follows_the_datasets_masks(data_dir, tiny_params):
    data = load_with_additions(data_dir["dives"], data_dir["features"])
    params = _params(tiny_params)
    spec = parse_variant("fineparser-dn", params)
    pool = split_rows(data, params["train"])[0]
    for dataset, expected in (("finediving", True), ("mtl_aqa", False)):
        data.dataset = dataset
        assert dataset_masks(data) is expected
        assert model_kwargs(spec, data, pool)["mask_loss"] is expected
    # without the mask loss the model trains on the score and transitions alone
    torch.manual_seed(0)
    model = build_model("fineparser", mask_loss=False, **{k: v for k, v in TINY_FP.items() if k != "method"})
    init_sap(model, data_dir["weights"], "test")
    q, e = data.batch([0, 1]), data.batch([2, 3])
    total, parts = model.loss(model(q, e), q, e)
    assert "focal_mask" not in parts and torch.isfinite(total)


def test_a_variants_own_cached_backbone_wins_over_params_finetune(data_dir, tiny_params, tmp_path):
    """A FineParser variant kept at T2 under params.train.backbone finetune (paper mode with one
    variant on the cache): its own train.backbone cached. It trains and evaluates on the cache (no
    I3D in the model), with its own backbone in the checkpoint's config; the frames only feed
    evaluate's mask references."""
    params = _params(tiny_params, backbone="finetune")
    params["train"]["variants"]["fineparser"]["train"] = {"backbone": "cached"}
    _train(data_dir, params, tmp_path / "m")       # no frames: params' finetune would refuse without them
    ckpt = load_checkpoint(tmp_path / "m" / "seed0" / "best_val.pt")
    assert ckpt["config"]["train"]["backbone"] == "cached"
    assert not any(k.startswith("backbone.") for k in ckpt["model"])
    metrics_path = tmp_path / "metrics.json"
    evaluate_variant("fineparser-dn", models_dir=tmp_path / "m", features_dir=data_dir["features"],
                     dives_parquet=data_dir["dives"], metrics_path=metrics_path, predictions_dir=tmp_path / "pred",
                     params=params, tracking_uri=data_dir["mlflow"], frames_root=data_dir["frames"])
    assert "mask_mae" in json.loads(metrics_path.read_text())["honest"]
