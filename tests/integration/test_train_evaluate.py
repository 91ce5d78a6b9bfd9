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
