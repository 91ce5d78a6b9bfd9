"""Metrics file: paper vs honest selection, per-seed summaries, the floor, the file's structure."""

import json

import numpy as np
import pandas as pd
import pytest

from aqa.evaluate.floor import action_type_floor
from aqa.evaluate.run import evaluate_variant, paper_metrics, summarize
from aqa.train.run import train_variant
from train_helpers import small_train_params, sqlite_store, tiny_dataset


def _epoch(rho, rl2, l2, a50=None):
    m = {"rho": rho, "rl2": rl2, "l2": l2}
    if a50 is not None:
        m.update(aiou50=a50, aiou75=a50 / 2)
    return {"val": {}, "test": m}


def test_paper_takes_best_of_each_metric_independently():
    history = [_epoch(0.5, 0.010, 30.0, 0.9), _epoch(0.8, 0.020, 20.0, 0.1), _epoch(0.7, 0.005, 40.0, 0.5)]
    p = paper_metrics(history)
    assert p == {"rho": 0.8, "rl2_x100": 0.5, "l2": 20.0, "aiou50": 0.9, "aiou75": 0.45}
    assert "aiou50" not in paper_metrics([_epoch(0.5, 0.01, 3.0)])


def test_summarize_mean_and_sample_std():
    s = summarize([{"rho": 0.5, "rl2_x100": 1.0, "l2": 2.0}, {"rho": 0.7, "rl2_x100": 3.0, "l2": 2.0}])
    assert s["rho"]["mean"] == pytest.approx(0.6) and s["rho"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert summarize([{"rho": 0.5, "rl2_x100": 1.0, "l2": 2.0}])["rho"]["std"] == 0.0


def test_action_type_floor():
    dives = pd.DataFrame({"split": ["train"] * 4 + ["test"] * 3, "action_type": list("aabbabc"),
                          "dive_score": [10.0, 20.0, 50.0, 70.0, 14.0, 61.0, 1.0]})
    floor = action_type_floor(dives)
    pred = np.array([15.0, 60.0, 37.5])           # type means; unseen type -> overall mean
    true = np.array([14.0, 61.0, 1.0])
    assert floor["l2"] == pytest.approx(np.mean((pred - true) ** 2))
    assert floor["rl2_x100"] == pytest.approx(100 * np.mean(((pred - true) / 60.0) ** 2))


def test_difficulty_floor():
    from aqa.evaluate.floor import difficulty_floor

    dives = pd.DataFrame({"split": ["train"] * 3 + ["test"] * 3, "action_type": list("abcabc"),
                          "difficulty": [2.0, 2.5, 3.0, 2.0, 3.0, 3.5],
                          "dive_score": [40.0, 55.0, 75.0, 50.0, 60.0, 70.0]})
    floor = difficulty_floor(dives)
    pred = np.array([2.0, 3.0, 3.5]) * np.mean([20.0, 22.0, 25.0])     # DD x the mean score / DD
    true = np.array([50.0, 60.0, 70.0])
    assert floor["l2"] == pytest.approx(np.mean((pred - true) ** 2))
    assert floor["rho"] == pytest.approx(1.0)                           # ranks by DD


def test_metrics_file_structure(tmp_path, tiny_params):
    dives, cache, rows = tiny_dataset(tmp_path, 24)
    params = small_train_params(tiny_params, seeds=[0, 1], epochs=2)
    uri = sqlite_store(tmp_path)
    train_variant("tsa-nodn", features_dir=cache, dives_parquet=dives, out_dir=tmp_path / "m", params=params,
                  tracking_uri=uri)
    out = evaluate_variant("tsa-nodn", models_dir=tmp_path / "m", features_dir=cache, dives_parquet=dives,
                           metrics_path=tmp_path / "metrics.json", predictions_dir=tmp_path / "pred",
                           params=params, tracking_uri=uri)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == out
    assert on_disk["variant"] == "tsa-nodn" and on_disk["method"] == "tsa" and on_disk["exemplar_mode"] == "nodn"
    assert on_disk["footage"] == "stand-in" and on_disk["seeds"] == [0, 1] and on_disk["num_exemplars"] == 3
    keys = {"rho", "rl2_x100", "l2", "aiou50", "aiou75"}
    for protocol in ("honest", "paper"):
        assert set(on_disk[protocol]) == keys
        assert all(set(v) == {"mean", "std"} for v in on_disk[protocol].values())
    assert set(on_disk["by_num_exemplars"]) == {"1", "2", "3"}
    assert on_disk["by_num_exemplars"]["3"]["honest"] == on_disk["honest"]
    assert set(on_disk["gt_transitions"]) == {"honest", "paper", "per_seed"}
    assert set(on_disk["floor"]) == set(on_disk["floor_difficulty"]) == {"rho", "rl2_x100", "l2"}
    assert [s["seed"] for s in on_disk["per_seed"]] == [0, 1]
    # paper >= honest for rho on every seed: the best epoch on test includes the honest one's epoch
    for s in on_disk["per_seed"]:
        if s["honest"]["rho"] is not None:
            assert s["paper"]["rho"] >= s["honest"]["rho"] - 1e-4
    pred = pd.read_parquet(tmp_path / "pred" / "seed1.parquet")
    test_keys = sorted(r["key"] for r in rows if r["split"] == "test")
    assert pred["key"].tolist() == test_keys
    assert {"true", "predicted", "pred_t1", "pred_t2", "true_t1", "true_t2", "predicted_gt"} <= set(pred.columns)
    # the evaluation runs are nested under their training runs
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("finediving").experiment_id])
    evals = [r for r in runs if r.data.tags.get("dvc_stage") == "evaluate@tsa-nodn"]
    trains = {r.info.run_id for r in runs if r.data.tags.get("dvc_stage") == "train@tsa-nodn"}
    assert len(evals) == 2 and len(trains) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in evals} == trains
    assert "honest_rho" in evals[0].data.metrics


@pytest.fixture()
def trained(tmp_path, tiny_params):
    """fr-dn trained (1 seed, 2 epochs) on tiny data: (dives, cache, params, models dir, tracking URI)."""
    dives, cache, _ = tiny_dataset(tmp_path, 24)
    params = small_train_params(tiny_params, epochs=2)
    uri = sqlite_store(tmp_path)
    train_variant("fr-dn", features_dir=cache, dives_parquet=dives, out_dir=tmp_path / "m", params=params,
                  tracking_uri=uri)
    return dives, cache, params, tmp_path / "m", uri


def _evaluate(trained, tmp_path, **over):
    dives, cache, params, models, uri = trained
    kw = dict(models_dir=models, features_dir=cache, dives_parquet=dives, metrics_path=tmp_path / "metrics.json",
              predictions_dir=tmp_path / "pred", params=params, tracking_uri=uri)
    return evaluate_variant("fr-dn", **{**kw, **over})


def test_damaged_best_val_is_one_line_naming_the_file_and_the_fix(trained, tmp_path):
    from aqa.errors import AqaError

    best = trained[3] / "seed0" / "best_val.pt"
    best.write_bytes(best.read_bytes()[:500])
    with pytest.raises(AqaError) as err:
        _evaluate(trained, tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(best) in message
    assert "dvc repro train@fr-dn" in message and "weights_only" not in message
    assert not (tmp_path / "metrics.json").exists()


def test_model_trained_on_other_annotations_is_refused(trained, tmp_path):
    from aqa.errors import AqaError
    from train_helpers import make_dives, write_dives

    rows = make_dives(24)
    rows[0]["dive_score"] += 7.5
    write_dives(trained[0], rows)
    with pytest.raises(AqaError, match="annotations") as err:
        _evaluate(trained, tmp_path)
    assert "best_val.pt" in str(err.value) and "\n" not in str(err.value)


def test_metrics_record_their_provenance(trained, tmp_path):
    from aqa.provenance import annotations_digest

    out = _evaluate(trained, tmp_path)
    prov = out["provenance"]
    assert prov["inputs"]["annotations"] == annotations_digest(trained[0])
    assert len(prov["inputs"]["features"]) == len(prov["inputs"]["code"]) == len(prov["params_sha256"]) == 64
    params_read = dict(prov["params"])
    assert params_read["train.seeds"] == [0] and params_read["variant.method"] == "fr"
    assert params_read["exemplar_mode"] == "dn" and "make_report.exemplar_counts" in params_read
    assert dict(prov["models"]).keys() == {"seed0/best_val.pt", "seed0/history.json"}
    assert str(tmp_path) not in json.dumps(out)
