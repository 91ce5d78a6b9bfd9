"""`aqa train` then `aqa evaluate` on tiny generated data, as the pipeline runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import small_train_params, sqlite_store, tiny_dataset, write_params

AQA = Path(sys.executable).with_name("aqa")


def _aqa(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(AQA), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_train_then_evaluate_cli(tmp_path, tiny_params):
    dives, cache, rows = tiny_dataset(tmp_path, 24)
    params = write_params(tmp_path / "params.yaml", small_train_params(tiny_params, epochs=2))
    uri = sqlite_store(tmp_path)
    models = tmp_path / "models" / "tsa-dn"
    _aqa("train", "--params", params, "--log", tmp_path / "logs/train.log", "--variant", "tsa-dn",
         "--features", cache, "--annotations", dives, "--out", models, "--tracking-uri", uri, cwd=tmp_path)
    assert {p.name for p in (models / "seed0").iterdir()} >= {"checkpoint.pt", "best_val.pt", "history.json"}
    _aqa("evaluate", "--params", params, "--variant", "tsa-dn", "--models", models, "--features", cache,
         "--annotations", dives, "--metrics", tmp_path / "metrics/tsa-dn.json",
         "--predictions", tmp_path / "pred/tsa-dn", "--tracking-uri", uri, cwd=tmp_path)
    metrics = json.loads((tmp_path / "metrics/tsa-dn.json").read_text())
    assert metrics["variant"] == "tsa-dn" and set(metrics["honest"]) >= {"rho", "rl2_x100", "l2"}
    assert (tmp_path / "pred/tsa-dn/seed0.parquet").is_file()
    assert "epoch 1" in (tmp_path / "logs/train.log").read_text()
    # a rerun of train finds the finished seed and skips it
    _aqa("train", "--params", params, "--variant", "tsa-dn", "--features", cache, "--annotations", dives,
         "--out", models, "--tracking-uri", uri, cwd=tmp_path)
    assert not (tmp_path / "mlflow.db").with_name("mlruns").exists()


def _train_and_evaluate(folder: Path, tiny_params) -> Path:
    """`aqa train` + `aqa evaluate` of fr-dn in `folder`, with its own data and MLflow store."""
    folder.mkdir()
    dives, cache, _ = tiny_dataset(folder, 24)
    params = write_params(folder / "params.yaml", small_train_params(tiny_params, epochs=2, seeds=[0, 1]))
    uri = sqlite_store(folder)
    _aqa("train", "--params", params, "--variant", "fr-dn", "--features", cache, "--annotations", dives,
         "--out", folder / "models/fr-dn", "--tracking-uri", uri, cwd=folder)
    _aqa("evaluate", "--params", params, "--variant", "fr-dn", "--models", folder / "models/fr-dn",
         "--features", cache, "--annotations", dives, "--metrics", folder / "metrics/fr-dn.json",
         "--predictions", folder / "pred/fr-dn", "--tracking-uri", uri, cwd=folder)
    return folder


def _hashed_files(folder: Path) -> dict[str, bytes]:
    """Every file DVC hashes among the train and evaluate outputs (run.json is .dvcignore'd)."""
    files = [*(folder / "models").rglob("*"), *(folder / "metrics").rglob("*"), *(folder / "pred").rglob("*")]
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(files)
            if p.is_file() and p.name != "run.json"}


def test_two_folders_give_byte_identical_models_and_metrics(tmp_path, tiny_params):
    """Same inputs in two folders, two processes each, two MLflow stores: every hashed output is equal."""
    a = _hashed_files(_train_and_evaluate(tmp_path / "a", tiny_params))
    b = _hashed_files(_train_and_evaluate(tmp_path / "b", tiny_params))
    assert {"models/fr-dn/seed0/checkpoint.pt", "models/fr-dn/seed1/best_val.pt",
            "models/fr-dn/seed0/history.json", "metrics/fr-dn.json", "pred/fr-dn/seed1.parquet"} <= set(a)
    assert sorted(a) == sorted(b)
    differ = [name for name in a if a[name] != b[name]]
    assert differ == []
    # the machine- and run-dependent facts live in the side file (and MLflow)
    run = json.loads((tmp_path / "a/models/fr-dn/seed0/run.json").read_text())
    assert {"mlflow_run_id", "git_commit", "seconds"} <= set(run)
    assert str(tmp_path) not in "".join(v.decode("latin-1") for v in a.values())
