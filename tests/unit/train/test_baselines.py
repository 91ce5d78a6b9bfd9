"""The baselines through training and evaluation: direct methods (I3D+MLP, USDL, MUSDL) without
exemplars, CoRe with the group edges of its training pool, per-variant training settings."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from aqa.evaluate.run import evaluate_variant
from aqa.metrics import regression_metrics
from aqa.models.core import core_pool_settings
from aqa.models.registry import build_model
from aqa.train.checkpoint import load_checkpoint
from aqa.train.data import load_dive_data, split_validation
from aqa.train.run import train_variant
from train_helpers import small_train_params, sqlite_store, tiny_dataset

PANELS = (7, 5, 3)   # FineDiving's panel sizes, cycled over the dives


@pytest.fixture()
def tiny(tmp_path, tiny_params):
    dives, cache, rows = tiny_dataset(tmp_path, 30, panels=PANELS)
    return dives, cache, small_train_params(tiny_params, seeds=[0, 1]), rows


def _train(tiny, variant, out, uri, **kw):
    dives, cache, params, _ = tiny
    return train_variant(variant, features_dir=cache, dives_parquet=dives, out_dir=out, params=params,
                         tracking_uri=uri, **kw)


def _evaluate(tiny, variant, models, folder, uri):
    dives, cache, params, _ = tiny
    return evaluate_variant(variant, models_dir=models, features_dir=cache, dives_parquet=dives,
                            metrics_path=folder / f"{variant}.json", predictions_dir=folder / "pred" / variant,
                            params=params, tracking_uri=uri)


def _no_exemplars(monkeypatch):
    """Make any exemplar draw (training or evaluation) fail the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a direct method drew exemplars")

    monkeypatch.setattr("aqa.train.loop.sample_train_exemplars", refuse)
    monkeypatch.setattr("aqa.evaluate.voting.eval_exemplars", refuse)


def test_dive_batch_carries_the_panel(tiny):
    dives, cache, _, rows = tiny
    data = load_dive_data(dives, cache)
    by_key = {r["key"]: r for r in rows}
    batch = data.batch(np.arange(6))
    assert batch["judges"].shape == (6, 7) and batch["num_judges"].dtype == torch.long
    for i, key in enumerate(data.keys[:6]):
        panel = by_key[key]["judge_scores"]
        assert batch["num_judges"][i] == len(panel)
        np.testing.assert_array_equal(batch["judges"][i, :len(panel)].numpy(), np.float32(panel))
        assert torch.isnan(batch["judges"][i, len(panel):]).all()
        assert batch["difficulty"][i] == pytest.approx(by_key[key]["difficulty"])
    assert {len(r["judge_scores"]) for r in rows} == set(PANELS)


@pytest.mark.parametrize("variant", ["usdl-dn", "musdl-nodn", "i3d_mlp-nodn"])
def test_direct_evaluation_equals_the_models_own_prediction(tiny, tmp_path, monkeypatch, variant):
    """No exemplar is drawn, and evaluate's predictions are model.predict(model(batch)) of each test dive."""
    _no_exemplars(monkeypatch)
    uri = sqlite_store(tmp_path)
    _train(tiny, variant, tmp_path / "m", uri)
    metrics = _evaluate(tiny, variant, tmp_path / "m", tmp_path / "metrics", uri)
    dives, cache, params, _ = tiny
    data = load_dive_data(dives, cache)
    test = data.indices("test")
    for seed in (0, 1):
        best = load_checkpoint(tmp_path / f"m/seed{seed}/best_val.pt")
        model = build_model(best["config"]["method"], **best["config"]["model_kwargs"])
        model.load_state_dict(best["model"])
        model.eval()
        size = params["evaluate"]["batch_size"]
        with torch.no_grad():   # a direct prediction of each test dive, in evaluate's batches
            by_hand = np.concatenate([model.predict(model(data.batch(test[i:i + size], with_maps=False))).numpy()
                                      for i in range(0, test.size, size)]).astype(np.float64)
            whole = model.predict(model(data.batch(test, with_maps=False))).numpy()
        pred = pd.read_parquet(tmp_path / f"metrics/pred/{variant}/seed{seed}.parquet")
        assert pred["key"].tolist() == [data.keys[i] for i in test]
        np.testing.assert_array_equal(pred["predicted"].to_numpy(), by_hand)
        # the batch does not matter beyond float rounding (no BatchNorm, no exemplar)
        np.testing.assert_allclose(by_hand, whole, rtol=1e-5, atol=1e-6)
        assert (pred["num_exemplars"] == 0).all()
        honest = metrics["per_seed"][seed]["honest"]
        expected = regression_metrics(by_hand, data.score.numpy()[test].astype(np.float64))
        assert honest["rho"] == pytest.approx(expected["rho"], abs=1e-12)
        assert honest["rl2_x100"] == pytest.approx(100 * expected["rl2"], abs=1e-12)
        # the best-validation epoch's test metrics in the history are the same prediction
        history = json.loads((tmp_path / f"m/seed{seed}/history.json").read_text())
        assert history[best["epoch"] - 1]["test"]["rho"] == pytest.approx(honest["rho"], abs=1e-12)
    assert metrics["scoring"] == "direct" and metrics["num_exemplars"] is None
    # MLflow: a run per seed with its per-epoch metrics, each evaluation nested under its training
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("finediving").experiment_id])
    trains = {r.info.run_id: r for r in runs if r.data.tags.get("dvc_stage") == f"train@{variant}"}
    evals = [r for r in runs if r.data.tags.get("dvc_stage") == f"evaluate@{variant}"]
    assert len(trains) == len(evals) == 2 and {r.data.tags["mlflow.parentRunId"] for r in evals} == set(trains)
    assert all(len(client.get_metric_history(i, "train_loss")) == params["train"]["epochs"] for i in trains)
    assert "by_num_exemplars" not in metrics and "by_num_exemplars" not in metrics["per_seed"][0]
    assert set(metrics["honest"]) == set(metrics["paper"]) == {"rho", "rl2_x100", "l2"}
    assert set(metrics["floor"]) == {"rho", "rl2_x100", "l2"}


def test_modes_of_the_direct_methods(tiny, tmp_path):
    """USDL / I3D+MLP: dn = the with-DD reading; MUSDL: the same model in both modes (D2)."""
    uri = sqlite_store(tmp_path)
    for variant, use_dd in (("usdl-dn", True), ("usdl-nodn", False), ("i3d_mlp-dn", True)):
        _train(tiny, variant, tmp_path / variant, uri)
        assert load_checkpoint(tmp_path / f"{variant}/seed0/best_val.pt")["config"]["model_kwargs"]["use_dd"] is use_dd
    for mode in ("dn", "nodn"):
        _train(tiny, f"musdl-{mode}", tmp_path / f"musdl-{mode}", uri)
    a, b = (load_checkpoint(tmp_path / f"musdl-{m}/seed0/checkpoint.pt") for m in ("dn", "nodn"))
    assert a["config"]["model_kwargs"] == b["config"]["model_kwargs"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.parametrize("variant", ["musdl-dn", "core-dn"])
def test_resume_after_kill_matches_uninterrupted(tiny, tmp_path, variant):
    uri = sqlite_store(tmp_path)
    full = _train(tiny, variant, tmp_path / "full", uri)
    _train(tiny, variant, tmp_path / "killed", uri, max_epochs=1)
    assert not load_checkpoint(tmp_path / "killed/seed0/checkpoint.pt")["finished"]
    resumed = _train(tiny, variant, tmp_path / "killed", uri)
    assert resumed == full
    for seed in (0, 1):
        for name in ("checkpoint.pt", "best_val.pt", "history.json"):
            assert (tmp_path / f"killed/seed{seed}/{name}").read_bytes() == \
                (tmp_path / f"full/seed{seed}/{name}").read_bytes()


@pytest.mark.parametrize("mode", ["dn", "nodn"])
def test_core_groups_come_from_the_training_pool(tiny, tmp_path, mode):
    """The edges in the checkpoint are core_pool_settings of the pool (train minus validation),
    computed by hand here; evaluate rebuilds the same config and records it."""
    dives, cache, params, rows = tiny
    uri = sqlite_store(tmp_path)
    _train(tiny, f"core-{mode}", tmp_path / "m", uri)
    frame = pd.DataFrame(rows).sort_values("key").reset_index(drop=True)
    pool, val = split_validation(frame, params["train"]["validation_fraction"], params["train"]["validation_seed"])
    assert val.size > 0
    expected = core_pool_settings(frame["dive_score"].to_numpy()[pool], frame["difficulty"].to_numpy()[pool],
                                  frame["action_type"].to_numpy()[pool], mode)
    whole_train = core_pool_settings(*(frame[c].to_numpy()[frame["split"] == "train"]
                                       for c in ("dive_score", "difficulty", "action_type")), mode)
    config = load_checkpoint(tmp_path / "m/seed0/best_val.pt")["config"]
    kwargs = config["model_kwargs"]
    assert {k: kwargs[k] for k in expected} == expected
    assert kwargs["use_dd"] is (mode == "dn") and kwargs["theta"] == (30.0 if mode == "dn" else 100.0)
    assert expected["edges"] != whole_train["edges"]            # the pool, not the whole train split
    metrics = _evaluate(tiny, f"core-{mode}", tmp_path / "m", tmp_path / "metrics", uri)
    assert metrics["scoring"] == "voting" and dict(metrics["model_settings"])["edges"] == expected["edges"]
    assert set(metrics["by_num_exemplars"]) == {"1", "2", "3"}


def test_a_variants_own_training_settings(tiny, tmp_path):
    dives, cache, params, _ = tiny
    params = copy.deepcopy(params)
    params["train"]["variants"]["usdl"]["train"] = {"epochs": 2, "lr": 1e-4, "weight_decay": 1e-5, "batch_size": 3}
    uri = sqlite_store(tmp_path)
    history = _train((dives, cache, params, None), "usdl-nodn", tmp_path / "m", uri)
    assert len(history[0]) == 2 and params["train"]["epochs"] == 3
    ckpt = load_checkpoint(tmp_path / "m/seed0/checkpoint.pt")
    assert {k: ckpt["config"]["train"][k] for k in ("epochs", "lr", "weight_decay", "batch_size")} == \
        {"epochs": 2, "lr": 1e-4, "weight_decay": 1e-5, "batch_size": 3}
    group = ckpt["optimizer"]["param_groups"][0]
    assert group["lr"] == 1e-4 and group["weight_decay"] == 1e-5
    assert "train" not in ckpt["config"]["model_kwargs"]
    # evaluate checks the model against the same overridden config; without it the model is stale
    _evaluate((dives, cache, params, None), "usdl-nodn", tmp_path / "m", tmp_path / "metrics", uri)
    from aqa.errors import AqaError

    plain = copy.deepcopy(params)
    del plain["train"]["variants"]["usdl"]["train"]
    with pytest.raises(AqaError, match="another config"):
        _evaluate((dives, cache, plain, None), "usdl-nodn", tmp_path / "m", tmp_path / "metrics2", uri)


def test_impossible_judge_values_are_named_and_left_out(tmp_path, tiny_params, caplog):
    """D4: a 55.5 among a training dive's judges is logged with the dive's key; MUSDL still trains."""
    from train_helpers import make_dives, write_cache, write_dives

    rows = make_dives(30, panels=PANELS)
    rows[0]["judge_scores"][2] = 55.5               # rows[0] stays in the train split
    dives = write_dives(tmp_path / "annotations/finediving/dives.parquet", rows)
    cache = write_cache(tmp_path / "features", rows)
    params = small_train_params(tiny_params)
    params["train"]["validation_fraction"] = 0.0    # every train dive in the pool
    with caplog.at_level("WARNING"):
        history = train_variant("musdl-dn", features_dir=cache, dives_parquet=dives, out_dir=tmp_path / "m",
                                params=params, tracking_uri=sqlite_store(tmp_path))
    assert f"judge 3 of {rows[0]['key']} is 55.5" in caplog.text
    assert all(np.isfinite(h["train"]["loss"]) for h in history[0])
