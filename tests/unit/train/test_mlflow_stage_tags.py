"""The MLflow runs' `dvc_stage` tag names the DVC stage that really ran them (aqa.trained.stage_name):
a dataset's own group (train_mtl_aqa@...) and a dn-only variant's (train_dn_mtl_aqa@...), so a run
found in the MLflow UI says which `dvc repro <stage>` re-makes it. A real sqlite store, real models."""

import copy

from mlflow import MlflowClient

from aqa.evaluate.run import evaluate_variant
from aqa.train.run import train_variant
from aqa.train.tracking import ROLE
from aqa.trained import stage_name
from tiny_params import shrink
from train_helpers import make_dives, small_train_params, sqlite_store, write_cache, write_dives


def test_stage_tags_name_the_dvc_stage_of_the_dataset_and_the_dn_only_group(tmp_path, repo_params):
    rows = make_dives(24)
    dives = write_dives(tmp_path / "annotations" / "mtl_aqa" / "dives.parquet", rows)   # dataset by folder
    cache = write_cache(tmp_path / "features", rows)
    params = small_train_params(shrink(copy.deepcopy(repo_params)), seeds=[0], epochs=1)
    params["datasets"]["variants"] = {"finediving": [], "mtl_aqa": ["usdl"]}
    params["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": ["musdl"]}
    uri = sqlite_store(tmp_path)
    for variant in ("musdl-dn", "usdl-nodn"):
        train_variant(variant, features_dir=cache, dives_parquet=dives, out_dir=tmp_path / "m" / variant,
                      params=params, tracking_uri=uri)
        evaluate_variant(variant, models_dir=tmp_path / "m" / variant, features_dir=cache, dives_parquet=dives,
                         metrics_path=tmp_path / f"{variant}.json", predictions_dir=tmp_path / "pred" / variant,
                         params=params, tracking_uri=uri)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mtl_aqa").experiment_id])
    tags = {(r.data.tags["variant"], r.data.tags[ROLE]): r.data.tags.get("dvc_stage") for r in runs
            if r.data.tags.get(ROLE) in ("train", "evaluation")}
    assert tags == {("musdl-dn", "train"): "train_dn_mtl_aqa@musdl-dn",
                    ("musdl-dn", "evaluation"): "evaluate_dn_mtl_aqa@musdl-dn",
                    ("usdl-nodn", "train"): "train_mtl_aqa@usdl-nodn",
                    ("usdl-nodn", "evaluation"): "evaluate_mtl_aqa@usdl-nodn"}


def test_stage_name_follows_dvc_yaml_groups(repo_params):
    p = copy.deepcopy(repo_params)
    p["datasets"]["dn_only"]["finediving"] = ["fineparser"]
    assert stage_name(p, "train", "finediving", "fineparser-dn") == "train_dn@fineparser-dn"
    assert stage_name(p, "evaluate", "finediving", "tsa-nodn") == "evaluate@tsa-nodn"
    assert stage_name(p, "evaluate", "mtl_aqa", "core-dn") == "evaluate_mtl_aqa@core-dn"
    assert stage_name(p, "train", "elsewhere", "core-dn") == "train@core-dn"   # not a pipeline dataset
