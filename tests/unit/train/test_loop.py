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
    first_run_id = json.loads((tmp_path / "killed/seed0/run.json").read_text())["mlflow_run_id"]
    resumed = _train(tiny, tmp_path / "killed", uri)[0]
    assert _strip(resumed) == _strip(full)
    a = load_checkpoint(tmp_path / "full/seed0/checkpoint.pt")
    b = load_checkpoint(tmp_path / "killed/seed0/checkpoint.pt")
    assert a["finished"] and b["finished"] and a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    # the resumed job continued the same MLflow run, named in the side file run.json
    run_id = json.loads((tmp_path / "killed/seed0/run.json").read_text())["mlflow_run_id"]
    assert run_id == first_run_id
    client = MlflowClient(uri)
    assert len(client.get_metric_history(run_id, "test_rho")) == 3
    assert client.get_run(run_id).info.status == "FINISHED"
    assert (tmp_path / "killed/seed0/checkpoint.pt").read_bytes() == (tmp_path / "full/seed0/checkpoint.pt").read_bytes()


def test_resume_without_the_side_file_starts_a_new_mlflow_run(tiny, tmp_path):
    uri = sqlite_store(tmp_path)
    _train(tiny, tmp_path / "m", uri, max_epochs=1)
    side = tmp_path / "m/seed0/run.json"
    first_run_id = json.loads(side.read_text())["mlflow_run_id"]
    side.unlink()
    _train(tiny, tmp_path / "m", uri)
    run_id = json.loads(side.read_text())["mlflow_run_id"]
    assert run_id != first_run_id
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "test_rho")] == [1, 2]


def test_checkpoint_describes_itself_and_finished_seed_skipped(tiny, tmp_path):
    uri = sqlite_store(tmp_path)
    _train(tiny, tmp_path / "m", uri)
    seed_dir = tmp_path / "m/seed0"
    ck = load_checkpoint(seed_dir / "checkpoint.pt")
    assert {"model", "optimizer", "scaler", "rng", "epoch", "history", "config", "provenance", "finished"} == set(ck)
    assert set(ck["provenance"]) == {"annotations", "features", "code", "params"}
    # nothing that depends on the run, the machine or the time: those are in the side file
    run = json.loads((seed_dir / "run.json").read_text())
    assert {"mlflow_run_id", "git_commit", "seconds", "made_from"} <= set(run)
    assert [s["epoch"] for s in run["seconds"]] == [0, 1, 2]
    assert set(ck["rng"]) >= {"torch", "numpy", "python"}
    assert ck["config"]["method"] == "tsa" and ck["config"]["train"]["epochs"] == 3
    assert ck["config"]["evaluate"]["num_exemplars"] == 3
    best = load_checkpoint(seed_dir / "best_val.pt")
    history = json.loads((seed_dir / "history.json").read_text())
    assert "seconds" not in history[0]
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


def test_mlflow_runs_read_back(tiny, tmp_path, monkeypatch):
    uri = sqlite_store(tmp_path)
    _train(tiny, tmp_path / "m", uri)
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["finediving"])
    finally:
        mlflow.set_tracking_uri(None)
    assert sorted(runs["tags.aqa.role"]) == ["train", "variant"]   # the seed's run and its variant's parent
    run = runs[runs["tags.aqa.role"] == "train"].iloc[0]
    assert run["params.train.epochs"] == "3" and run["params.evaluate.num_exemplars"] == "3"
    assert run["params.method"] == "tsa" and "params.model.decoder.depth" in runs.columns
    assert run["tags.dvc_stage"] == "train@tsa-dn" and run["tags.seed"] == "0"
    assert run["tags.variant"] == "tsa-dn" and len(run["tags.mlflow.source.git.commit"]) == 40
    assert len(run["tags.feature_fingerprint"]) == 64
    client = MlflowClient(uri)
    monkeypatch.chdir(tmp_path)   # artefact paths are relative to the store's folder, as sqlite:///mlflow.db is
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


# --------------------------------------------------------------------------- provenance and faults


def _weights(path):
    return load_checkpoint(path)["model"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _fr(tiny, out, uri, **kw):
    dives, cache, params = tiny
    return train_variant("fr-dn", features_dir=cache, dives_parquet=dives, out_dir=out, params=params,
                         tracking_uri=uri, **kw)


def test_changed_annotations_retrain(tiny, tmp_path, caplog):
    """One dive's score changes in dives.parquet: the finished model is retrained, not skipped."""
    from train_helpers import make_dives, write_dives

    dives, cache, params = tiny
    uri = sqlite_store(tmp_path)
    _fr(tiny, tmp_path / "m", uri)
    before = _weights(tmp_path / "m/seed0/checkpoint.pt")
    rows = make_dives(24)
    rows[0]["dive_score"] += 7.5                  # a training dive (make_dives keeps rows[0] in train)
    write_dives(dives, rows)
    with caplog.at_level("INFO"):
        _fr(tiny, tmp_path / "m", uri)
    assert "annotations" in caplog.text and "skipped" not in caplog.text
    after = _weights(tmp_path / "m/seed0/checkpoint.pt")
    assert not _same_weights(before, after)
    # the same as a training from scratch on the new annotations
    _fr(tiny, tmp_path / "fresh", uri)
    assert _same_weights(after, _weights(tmp_path / "fresh/seed0/checkpoint.pt"))


def test_truncated_checkpoint_retrains_the_seed(tiny, tmp_path, caplog):
    uri = sqlite_store(tmp_path)
    _fr(tiny, tmp_path / "m", uri)
    good = _weights(tmp_path / "m/seed0/checkpoint.pt")
    ckpt = tmp_path / "m/seed0/checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        _fr(tiny, tmp_path / "m", uri)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(ckpt) in w and "damaged" in w for w in warnings), warnings
    assert all("\n" not in w for w in warnings)
    assert _same_weights(good, _weights(ckpt))


def test_damaged_best_val_of_a_finished_seed_retrains_it(tiny, tmp_path, caplog):
    """A finished checkpoint beside a damaged best_val.pt is not skipped: evaluate would fail."""
    uri = sqlite_store(tmp_path)
    _fr(tiny, tmp_path / "m", uri)
    best = tmp_path / "m/seed0/best_val.pt"
    good = best.read_bytes()
    best.write_bytes(b"\0" * 100)
    with caplog.at_level("WARNING"):
        _fr(tiny, tmp_path / "m", uri)
    assert str(best) in caplog.text
    assert best.read_bytes() == good


def test_unwritable_seed_folder_refused_before_anything_is_removed(tiny, tmp_path):
    """seed1's folder is a file: the stage fails at once, seed0's (stale) checkpoint is untouched."""
    from aqa.errors import AqaError

    dives, cache, params = tiny
    uri = sqlite_store(tmp_path)
    _fr(tiny, tmp_path / "m", uri, max_epochs=1)
    seed0 = {p.name: p.read_bytes() for p in (tmp_path / "m/seed0").iterdir()}
    (tmp_path / "m/seed1").write_text("not a folder")
    two_seeds = (dives, cache, {**params, "train": {**params["train"], "seeds": [0, 1], "lr": 0.5}})
    with pytest.raises(AqaError) as err:
        _fr(two_seeds, tmp_path / "m", uri)
    assert "seed1" in str(err.value) and "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "m/seed0").iterdir()} == seed0


def test_read_only_model_folder_keeps_the_stale_checkpoint(tiny, tmp_path):
    import os

    from aqa.errors import AqaError

    if os.geteuid() == 0:
        pytest.skip("running as root: chmod does not stop root from writing (covered by the file-for-folder "
                    "test and tests/integration/test_train_evaluate.py's read-only mounts)")
    dives, cache, params = tiny
    uri = sqlite_store(tmp_path)
    _fr(tiny, tmp_path / "m", uri, max_epochs=1)
    seed0 = tmp_path / "m/seed0"
    kept = {p.name: p.read_bytes() for p in seed0.iterdir()}
    changed = (dives, cache, {**params, "train": {**params["train"], "lr": 0.5}})
    for folder in (seed0, tmp_path / "m"):
        folder.chmod(0o555)
    try:
        with pytest.raises(AqaError, match="seed0"):
            _fr(changed, tmp_path / "m", uri)
    finally:
        for folder in (tmp_path / "m", seed0):
            folder.chmod(0o755)
    assert {p.name: p.read_bytes() for p in seed0.iterdir()} == kept


def test_seeds_dropped_from_params_leave_the_model_folder(tiny, tmp_path):
    """Going from seeds [0, 1] to [0] removes seed1 once seed0 is trained: the persisted folder (and
    so dvc.lock) depends on the current params, not on the folder's history."""
    dives, cache, params = tiny
    uri = sqlite_store(tmp_path)
    params["train"]["seeds"] = [0, 1]
    _fr(tiny, tmp_path / "m", uri)
    assert {p.name for p in (tmp_path / "m").iterdir() if p.is_dir()} == {"seed0", "seed1"}
    seed0 = (tmp_path / "m/seed0/checkpoint.pt").read_bytes()
    params["train"]["seeds"] = [0]
    _fr(tiny, tmp_path / "m", uri)
    assert {p.name for p in (tmp_path / "m").iterdir() if p.is_dir()} == {"seed0"}
    assert (tmp_path / "m/seed0/checkpoint.pt").read_bytes() == seed0      # skipped, not retrained


def test_a_method_that_learns_steps_is_refused_on_dives_without_step_labels(tmp_path, tiny_params):
    """MTL-AQA has no step labels: TSA would learn from the -1 placeholders; F+R trains."""
    from aqa.errors import AqaError
    from train_helpers import make_dives, write_cache, write_dives

    rows = make_dives(24)
    for r in rows:
        r.update(frame_labels=None, steps_transit_frames=None, transitions_96=None)
    dives = write_dives(tmp_path / "annotations" / "mtl_aqa" / "dives.parquet", rows)
    cache = write_cache(tmp_path / "features", rows)
    params = small_train_params(tiny_params)
    with pytest.raises(AqaError, match=r"variant 'tsa-dn': method tsa learns the step transitions, and .*"
                                       r"dives.parquet has none \(no step labels, e.g. MTL-AQA\)"):
        train_variant("tsa-dn", features_dir=cache, dives_parquet=dives, out_dir=tmp_path / "m", params=params,
                      tracking_uri=sqlite_store(tmp_path))
    assert not any((tmp_path / "m").glob("seed*/checkpoint.pt"))
    train_variant("fr-dn", features_dir=cache, dives_parquet=dives, out_dir=tmp_path / "fr", params=params,
                  tracking_uri=sqlite_store(tmp_path))
    assert (tmp_path / "fr/seed0/best_val.pt").is_file()
