"""Training loop: resume after a kill gives the same result, finished seeds are skipped, MLflow."""

import json

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from aqa.train.checkpoint import load_checkpoint
from aqa.train.run import parse_variant, train_variant
from train_helpers import small_train_params, sqlite_store, tiny_dataset


@pytest.fixture()
def tiny(tmp_path, tiny_params):
    dives, cache, _ = tiny_dataset(tmp_path, 24)
    return dives, cache, small_train_params(tiny_params)


def _train(tiny, out, uri, **kw):
    dives, cache, params = tiny
    return train_variant("tsa-dn", features_dir=cache, dives_parquet=dives, out_dir=out, params=params,
                         tracking_uri=uri, **kw)


def _strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_resume_after_kill_matches_uninterrupted(tiny, tmp_path):
    uri = sqlite_store(tmp_path)
    full = _train(tiny, tmp_path / "full", uri)[0]
    part = _train(tiny, tmp_path / "killed", uri, max_epochs=1)[0]   # "killed" after epoch 0
    assert len(part) == 1
    first = load_checkpoint(tmp_path / "killed/seed0/checkpoint.pt")
    assert first["epoch"] == 1 and not first["finished"]
    resumed = _train(tiny, tmp_path / "killed", uri)[0]
    assert _strip(resumed) == _strip(full)
    a = load_checkpoint(tmp_path / "full/seed0/checkpoint.pt")
    b = load_checkpoint(tmp_path / "killed/seed0/checkpoint.pt")
    assert a["finished"] and b["finished"] and a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    # the resumed job continued the same MLflow run
    assert b["mlflow_run_id"] == first["mlflow_run_id"]
    client = MlflowClient(uri)
    assert len(client.get_metric_history(b["mlflow_run_id"], "test_rho")) == 3
    assert client.get_run(b["mlflow_run_id"]).info.status == "FINISHED"


def test_checkpoint_describes_itself_and_finished_seed_skipped(tiny, tmp_path):
    uri = sqlite_store(tmp_path)
    _train(tiny, tmp_path / "m", uri)
    seed_dir = tmp_path / "m/seed0"
    ck = load_checkpoint(seed_dir / "checkpoint.pt")
    assert {"model", "optimizer", "rng", "epoch", "history", "config", "git_commit", "fingerprint",
            "mlflow_run_id"} <= set(ck)
    assert set(ck["rng"]) >= {"torch", "numpy", "python"}
    assert ck["config"]["method"] == "tsa" and ck["config"]["train"]["epochs"] == 3
    assert ck["config"]["evaluate"]["num_exemplars"] == 3
    best = load_checkpoint(seed_dir / "best_val.pt")
    history = json.loads((seed_dir / "history.json").read_text())
    rhos = [h["val"]["rho"] for h in history]
    assert best["epoch"] - 1 == max(range(3), key=lambda i: (rhos[i] is not None, rhos[i] or 0, -i))
    assert {"val", "test", "test_gt", "train"} <= set(history[0])       # TSA predicts transitions
    assert {"rho", "rl2", "l2", "aiou50", "aiou75"} <= set(history[0]["test"])
    mtime = (seed_dir / "checkpoint.pt").stat().st_mtime_ns
    _train(tiny, tmp_path / "m", uri)
    assert (seed_dir / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_changed_config_trains_afresh(tiny, tmp_path, caplog):
    dives, cache, params = tiny
    uri = sqlite_store(tmp_path)
    _train(tiny, tmp_path / "m", uri, max_epochs=1)
    params = {**params, "train": {**params["train"], "lr": 0.5}}
    fresh = _train((dives, cache, params), tmp_path / "other", uri)
    with caplog.at_level("WARNING"):
        redone = _train((dives, cache, params), tmp_path / "m", uri)
    assert "another config" in caplog.text and "train" in caplog.text
    # the stale epoch was discarded: the same result as training with the new config from scratch
    assert _strip(redone[0]) == _strip(fresh[0])


def test_mlflow_runs_read_back(tiny, tmp_path):
    uri = sqlite_store(tmp_path)
    _train(tiny, tmp_path / "m", uri)
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["finediving"])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["params.train.epochs"] == "3" and run["params.evaluate.num_exemplars"] == "3"
    assert run["params.method"] == "tsa" and "params.model.decoder.depth" in runs.columns
    assert run["tags.dvc_stage"] == "train@tsa-dn" and run["tags.seed"] == "0"
    assert run["tags.variant"] == "tsa-dn" and len(run["tags.git_commit"]) > 0
    assert len(run["tags.feature_fingerprint"]) == 64
    client = MlflowClient(uri)
    assert len(client.get_metric_history(run["run_id"], "val_rho")) == 3
    assert len(client.get_metric_history(run["run_id"], "train_loss")) == 3
    artifacts = {a.path for a in client.list_artifacts(run["run_id"])}
    assert {"config.json", "history.json"} <= artifacts
    assert (tmp_path / "mlartifacts").is_dir()      # beside the store, not in the working directory


def test_parse_variant(tiny_params):
    spec = parse_variant("fr_dn-nodn", tiny_params)
    assert (spec.base, spec.mode, spec.method) == ("fr_dn", "nodn", "fr_dn")
    with pytest.raises(ValueError, match="mode"):
        parse_variant("tsa-xx", tiny_params)
    with pytest.raises(ValueError, match="not in params train.variants"):
        parse_variant("nope-dn", tiny_params)
