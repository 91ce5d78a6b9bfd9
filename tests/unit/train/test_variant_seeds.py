"""A variant's own seeds (train.variants.<v>.train.seeds): train, evaluate and MLflow read exactly
those, whatever train.seeds says (FineParser's two seeds in the built-in default)."""

from __future__ import annotations

import json

import pandas as pd
from mlflow import MlflowClient

from aqa.evaluate.run import evaluate_variant
from aqa.train.run import train_variant
from train_helpers import small_train_params, sqlite_store, tiny_dataset


def test_train_and_evaluate_read_the_variants_own_seeds(tmp_path, tiny_params):
    dives, cache, _ = tiny_dataset(tmp_path, 24)
    params = small_train_params(tiny_params, epochs=1, seeds=[0, 1, 2])
    params["train"]["variants"]["fr"]["train"] = {"seeds": [2, 0]}
    uri = sqlite_store(tmp_path)
    models = tmp_path / "m"
    (models / "seed1").mkdir(parents=True)   # a seed of train.seeds the variant does not train: not published
    histories = train_variant("fr-dn", features_dir=cache, dives_parquet=dives, out_dir=models, params=params,
                              tracking_uri=uri)
    assert list(histories) == [2, 0]
    assert sorted(p.name for p in models.iterdir() if p.name.startswith("seed")) == ["seed0", "seed2"]
    out = evaluate_variant("fr-dn", models_dir=models, features_dir=cache, dives_parquet=dives,
                           metrics_path=tmp_path / "metrics.json", predictions_dir=tmp_path / "pred",
                           params=params, tracking_uri=uri)
    assert out["seeds"] == [2, 0] and [s["seed"] for s in out["per_seed"]] == [2, 0]
    assert json.loads((tmp_path / "metrics.json").read_text())["seeds"] == [2, 0]
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["seed0.parquet", "seed2.parquet"]
    assert len(pd.read_parquet(tmp_path / "pred" / "seed2.parquet")) > 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("finediving").experiment_id])
    by_role = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("aqa.role"), []).append(r)
    assert sorted(r.data.tags["seed"] for r in by_role["train"]) == ["0", "2"]
    assert sorted(r.data.tags["seed"] for r in by_role["evaluation"]) == ["0", "2"]
    (parent,) = by_role["variant"]
    assert parent.data.tags["aqa.best_seed"] in {"0", "2"}


def test_without_its_own_seeds_a_variant_trains_train_seeds(tmp_path, tiny_params):
    dives, cache, _ = tiny_dataset(tmp_path, 24)
    params = small_train_params(tiny_params, epochs=1, seeds=[1])
    out = train_variant("fr-dn", features_dir=cache, dives_parquet=dives, out_dir=tmp_path / "m", params=params)
    assert list(out) == [1]
