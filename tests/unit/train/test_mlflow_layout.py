"""MLflow as the user sees it: a parent run per variant over one child run per seed, the mean and
std over seeds on the parent, each seed's model logged (loads back and predicts as its
checkpoint), the best seed registered, MLflow's source tags, relative artefact paths, and a
re-evaluation that updates runs rather than adding them. All against a real sqlite store."""

import copy
import json
import os
import shutil
import subprocess

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from aqa.evaluate.run import best_seed, evaluate_variant
from aqa.train.checkpoint import load_checkpoint
from aqa.train.data import load_dive_data
from aqa.train.loop import build
from aqa.train.run import split_rows, train_variant
from aqa.train.tracking import ROLE
from tiny_params import shrink
from train_helpers import small_train_params, sqlite_store, tiny_dataset

SEEDS = [0, 1]


def _train_and_evaluate(root, repo_params, variants):
    dives, cache, _ = tiny_dataset(root, 24)
    params = small_train_params(shrink(copy.deepcopy(repo_params)), seeds=SEEDS, epochs=2)
    uri = sqlite_store(root)
    for variant in variants:
        train_variant(variant, features_dir=cache, dives_parquet=dives, out_dir=root / "m" / variant, params=params,
                      tracking_uri=uri)
        evaluate_variant(variant, models_dir=root / "m" / variant, features_dir=cache, dives_parquet=dives,
                         metrics_path=root / f"{variant}.json", predictions_dir=root / "pred" / variant,
                         params=params, tracking_uri=uri)
    return {"root": root, "dives": dives, "cache": cache, "params": params, "uri": uri}


@pytest.fixture(scope="module")
def store(tmp_path_factory, repo_params):
    """fr-dn (pairwise) and musdl-nodn (direct), 2 seeds x 2 epochs, trained and evaluated once."""
    return _train_and_evaluate(tmp_path_factory.mktemp("mlflow"), repo_params, ["fr-dn", "musdl-nodn"])


def _runs(uri, **tags):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("finediving")
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()) or ""
    return client.search_runs([exp.experiment_id], filter_string=query)


def test_one_parent_per_variant_with_one_child_per_seed(store):
    uri = store["uri"]
    for variant in ("fr-dn", "musdl-nodn"):
        parents = _runs(uri, **{ROLE: "variant", "variant": variant})
        assert len(parents) == 1 and parents[0].info.run_name == variant
        trains = _runs(uri, **{ROLE: "train", "variant": variant})
        assert sorted(r.data.tags["seed"] for r in trains) == ["0", "1"]
        assert {r.data.tags["mlflow.parentRunId"] for r in trains} == {parents[0].info.run_id}
        evals = _runs(uri, **{ROLE: "evaluation", "variant": variant})
        assert {r.data.tags["mlflow.parentRunId"] for r in evals} == {r.info.run_id for r in trains}
    assert len(_runs(uri)) == 2 * (1 + 2 + 2)


def test_parent_metrics_are_mean_and_std_of_the_seeds(store):
    parent = _runs(store["uri"], **{ROLE: "variant", "variant": "fr-dn"})[0].data.metrics
    evals = _runs(store["uri"], **{ROLE: "evaluation", "variant": "fr-dn"})
    for name in ("honest_rho", "paper_rho", "honest_rl2_x100", "paper_l2", "honest_M2_rho"):
        values = [r.data.metrics[name] for r in evals]
        assert parent[f"{name}_mean"] == pytest.approx(np.mean(values))
        assert parent[f"{name}_std"] == pytest.approx(np.std(values, ddof=1))
        assert np.std(values) > 0 or name.startswith("paper")   # the two seeds differ: not a trivial check


def _checkpoint_model(path):
    best = load_checkpoint(path, map_location="cpu")
    model = build(best["config"], torch.device("cpu"))
    model.load_state_dict(best["model"])
    return model.eval()


@pytest.mark.parametrize("variant", ["fr-dn", "musdl-nodn"])
def test_logged_model_loads_and_predicts_as_the_checkpoint(store, variant, monkeypatch):
    data = load_dive_data(store["dives"], store["cache"], torch.device("cpu"))
    _, _, test = split_rows(data, store["params"]["train"])
    monkeypatch.chdir(store["root"])   # artefact paths are relative to the store's folder (the project root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    for run in _runs(store["uri"], **{ROLE: "train", "variant": variant}):
        model_id = run.data.tags["aqa.model_id"]
        loaded = mlflow.pytorch.load_model(f"models:/{model_id}").eval()
        ours = _checkpoint_model(store["root"] / "m" / variant / f"seed{run.data.tags['seed']}" / "best_val.pt")
        info = mlflow.models.get_model_info(f"models:/{model_id}")
        names = {s.name for s in info.signature.inputs.inputs}
        with torch.no_grad():
            if variant == "fr-dn":
                q, e = data.batch(test[:4], with_maps=False), data.batch(test[4:8], with_maps=False)
                got, want = loaded(q, e)["delta"], ours(q, e)["delta"]
                assert {"query.pooled", "exemplar.pooled", "query.action"} <= names
            else:
                batch = data.batch(test[:4], with_maps=False)
                got, want = loaded.predict(loaded(batch)), ours.predict(ours(batch))
                assert {"pooled", "difficulty"} <= names
        torch.testing.assert_close(got, want)
        assert info.signature.outputs is not None


def test_best_seed_is_registered_under_the_dataset_qualified_name(store):
    client = MlflowClient(store["uri"], registry_uri=store["uri"])
    for variant in ("fr-dn", "musdl-nodn"):
        versions = client.search_model_versions(f"name = 'finediving.{variant}'")
        assert [int(v.version) for v in versions] == [1]
        trains = {r.data.tags["seed"]: r for r in _runs(store["uri"], **{ROLE: "train", "variant": variant})}
        val_rho = {int(s): r.data.metrics["final_val_rho"] for s, r in trains.items()}
        seed = max(SEEDS, key=lambda s: val_rho[s])
        assert versions[0].run_id == trains[str(seed)].info.run_id
        assert versions[0].tags["best_seed"] == str(seed)
        assert versions[0].source == f"models:/{trains[str(seed)].data.tags['aqa.model_id']}"


def test_best_seed_takes_the_highest_validation_rho():
    assert best_seed({0: {"val": {"rho": 0.2}}, 1: {"val": {"rho": 0.5}}, 2: {"val": {"rho": 0.5}}}) == 1
    assert best_seed({3: {"val": {}}, 4: {"val": {"rho": float("nan")}}}) == 3


def test_mlflow_source_tags_not_custom_ones(store):
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    for run in _runs(store["uri"]):
        tags = run.data.tags
        assert tags["mlflow.source.git.commit"] == head
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"].startswith("aqa ")
        assert "git_commit" not in tags and "checkpoint" not in tags and "best_val_checkpoint" not in tags
        assert not any(str(store["root"]) in v for v in tags.values())   # no absolute paths


def test_reevaluation_updates_the_runs_it_made(store):
    before = {r.info.run_id for r in _runs(store["uri"])}
    evals = _runs(store["uri"], **{ROLE: "evaluation", "variant": "fr-dn"})
    root = store["root"]
    evaluate_variant("fr-dn", models_dir=root / "m" / "fr-dn", features_dir=store["cache"],
                     dives_parquet=store["dives"], metrics_path=root / "again.json",
                     predictions_dir=root / "pred-again", params=store["params"], tracking_uri=store["uri"])
    assert {r.info.run_id for r in _runs(store["uri"])} == before
    client = MlflowClient(store["uri"], registry_uri=store["uri"])
    assert len(client.search_model_versions("name = 'finediving.fr-dn'")) == 1
    history = client.get_metric_history(evals[0].info.run_id, "honest_rho")
    assert len(history) == 2 and history[0].value == pytest.approx(history[1].value)
    # a retrained seed (a new training run) gets a new evaluation run in place of the old one:
    # the old one's parent is gone from the variant's current seeds (MLflow cannot move a run)
    shutil.rmtree(root / "m" / "fr-dn" / "seed0")
    train_variant("fr-dn", features_dir=store["cache"], dives_parquet=store["dives"], out_dir=root / "m" / "fr-dn",
                  params=store["params"], tracking_uri=store["uri"])
    evaluate_variant("fr-dn", models_dir=root / "m" / "fr-dn", features_dir=store["cache"],
                     dives_parquet=store["dives"], metrics_path=root / "again.json",
                     predictions_dir=root / "pred-again", params=store["params"], tracking_uri=store["uri"])
    after = _runs(store["uri"], **{ROLE: "evaluation", "variant": "fr-dn"})
    new_train = json.loads((root / "m" / "fr-dn" / "seed0" / "run.json").read_text())["mlflow_run_id"]
    assert len(after) == 2 and new_train in {r.data.tags["mlflow.parentRunId"] for r in after}


def test_artifacts_are_relative_to_the_store_and_survive_a_move(store, tmp_path, monkeypatch):
    client = MlflowClient(store["uri"])
    exp = client.get_experiment_by_name("finediving")
    assert exp.artifact_location == f"mlartifacts/{exp.experiment_id}"
    assert all(not r.info.artifact_uri.startswith("/") for r in _runs(store["uri"]))
    moved = tmp_path / "moved"
    shutil.copytree(store["root"], moved)
    uri = f"sqlite:///{moved}/mlflow.db"
    monkeypatch.chdir(moved)    # `mlflow ui` is started in the project's root
    run = _runs(uri, **{ROLE: "train", "variant": "musdl-nodn"})[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    try:
        shutil.rmtree(store["root"] / "mlartifacts")    # the original is gone: only the copy can serve
        model = mlflow.pytorch.load_model(f"models:/{run.data.tags['aqa.model_id']}")
        assert model.method == "musdl"
        registered = mlflow.pytorch.load_model("models:/finediving.musdl-nodn/latest")   # as the README says
        assert registered.method == "musdl"
        assert "history.json" in {f.path for f in MlflowClient(uri).list_artifacts(run.info.run_id)}
    finally:
        shutil.copytree(moved / "mlartifacts", store["root"] / "mlartifacts")


def test_fluent_calls_leave_the_global_uris_as_they_were(tmp_path, monkeypatch):
    from aqa.train.tracking import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    default = mlflow.get_tracking_uri()
    tracker = Tracker(sqlite_store(tmp_path), "finediving")
    with tracker.fluent():
        assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == tracker.uri
    assert mlflow.get_tracking_uri() == default
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
