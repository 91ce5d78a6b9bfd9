"""FineParser through the real stages on tiny rendered data, as the built-in default trains it
(datasets.dn_only: w/ DN alone, its own seeds): `dvc repro evaluate_dn@fineparser-dn` runs synthesize_videos (frames and masks), extract_frames, convert_annotations, fetch_i3d,
extract_features (with FineParser's additions), train (one epoch) and evaluate, each stage its
Snakemake target; the metrics hold the mask metrics and references, MLflow the overlays; a second
`dvc repro` of the stage does nothing."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow import MlflowClient

from test_pipeline import BIN, _run, commit_project, pipeline_copy


def _fp_params(tiny_params, weights):
    p = tiny_params
    p["synthesize_videos"]["finediving"]["dives_per_video"] = 6
    p["extract_features"]["flip_view"] = False
    p["extract_features"]["fineparser"]["finediving"] = True   # off in the tiny params (tests/tiny_params.py)
    p["fetch_i3d"]["weights_path"] = str(weights)
    p["train"]["epochs"] = 1
    p["train"]["exemplar_modes"] = ["dn", "nodn"]              # w/ DN alone all the same: dn_only
    # its own seed (train.seeds is [0]): the stage trains and evaluates seed 1 alone
    p["train"]["variants"]["fineparser"] = {"method": "fineparser", "psnet": {"head_hidden": [8]},
                                            "decoder": {"dim": 64, "heads": 2, "depth": 1}, "regressor_hidden": [8],
                                            "train": {"seeds": [1]}}
    p["datasets"] = {"run": ["finediving"], "variants": {"finediving": [], "mtl_aqa": []},
                     "dn_only": {"finediving": ["fineparser"], "mtl_aqa": []}}
    return p


@pytest.fixture()
def fp_project(tmp_path, tiny_params):
    root, weights = pipeline_copy(tmp_path)
    return commit_project(root, _fp_params(tiny_params, weights), "tiny fineparser pipeline")


@pytest.fixture()
def fp_t1_project(tmp_path, tiny_params):
    """Paper mode's FineParser: train.backbone finetune, SAP at T1, at the small frame protocol."""
    from frame_helpers import SMALL_PROTOCOL

    root, weights = pipeline_copy(tmp_path)
    p = _fp_params(tiny_params, weights)
    p["extract_features"].update(SMALL_PROTOCOL)
    p["train"]["backbone"] = "finetune"
    p["train"]["variants"]["fineparser"]["sap"] = {"tier": "T1"}
    return commit_project(root, p, "tiny fineparser pipeline at T1")


def test_fineparser_trains_and_is_evaluated_by_the_stages(fp_project, monkeypatch):
    dvc = str(BIN / "dvc")
    stages = _run([dvc, "stage", "list", "--name-only"], fp_project).split()
    assert [s for s in stages if "fineparser" in s] == ["train_dn@fineparser-dn", "evaluate_dn@fineparser-dn"]
    _run([dvc, "repro", "evaluate_dn@fineparser-dn"], fp_project)
    metrics = json.loads((fp_project / "reports/metrics/finediving/fineparser-dn.json").read_text())
    assert metrics["method"] == "fineparser" and metrics["scoring"] == "voting"
    assert metrics["seeds"] == [1] and [e["seed"] for e in metrics["per_seed"]] == [1]
    assert sorted(p.name for p in (fp_project / "models/finediving/fineparser-dn").glob("seed*")) == ["seed1"]
    for block in ("honest", "paper"):
        assert {"rho", "aiou50", "mask_mae", "mask_fbeta", "mask_fbeta_max", "mask_smeasure"} <= set(metrics[block])
    assert set(metrics["mask_references"]) == {"all_background", "motion"}
    ckpt = torch.load(fp_project / "models/finediving/fineparser-dn/seed1/checkpoint.pt", weights_only=False)
    assert int(ckpt["model"]["sap.kinetics_loaded"]) == 1 and ckpt["finished"]

    client = MlflowClient(f"sqlite:///{fp_project / 'mlflow.db'}")
    monkeypatch.chdir(fp_project)
    run = client.search_runs(client.get_experiment_by_name("finediving").experiment_id,
                             "tags.`aqa.role` = 'evaluation'")[0]
    assert len(client.list_artifacts(run.info.run_id, "mask_overlays")) == 8

    again = _run([dvc, "repro", "evaluate_dn@fineparser-dn"], fp_project)
    assert "Running stage" not in again, again


def test_fineparser_at_t1_fine_tunes_through_the_stages(fp_t1_project):
    """The rules hand train and evaluate the frames, the weights and the masks: SAP's whole I3D and
    TAP's I3D train from the frames, the masks of each load follow its augmentation, and the
    metrics hold the mask metrics."""
    dvc = str(BIN / "dvc")
    _run([dvc, "repro", "evaluate_dn@fineparser-dn"], fp_t1_project)
    metrics = json.loads((fp_t1_project / "reports/metrics/finediving/fineparser-dn.json").read_text())
    assert {"mask_mae", "mask_fbeta", "mask_smeasure"} <= set(metrics["honest"])
    ckpt = torch.load(fp_t1_project / "models/finediving/fineparser-dn/seed1/checkpoint.pt", weights_only=False)
    assert ckpt["config"]["train"]["backbone"] == "finetune" and ckpt["config"]["model_kwargs"]["sap"]["tier"] == "T1"
    assert "backbone.i3d.conv3d_1a_7x7.conv3d.weight" in ckpt["model"] and "sap.side.1.side_prep.weight" in ckpt["model"]
