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


def _can_mount_read_only() -> bool:
    """A private mount namespace in which this user may remount a folder read-only (root, usually)."""
    import shutil
    import tempfile

    if shutil.which("unshare") is None:
        return False
    folder = tempfile.mkdtemp(prefix="aqa-ro-probe-")
    try:
        probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{_read_only(Path(folder))} && ! touch {folder}/x"],
                               capture_output=True)
        return probe.returncode == 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stale_model_and_retrain_command(tmp_path: Path, tiny_params) -> tuple[Path, str]:
    """fr-dn trained with one lr, and the `aqa train` command line that asks for another lr."""
    dives, cache, _ = tiny_dataset(tmp_path, 24)
    params = small_train_params(tiny_params, epochs=2)
    old = write_params(tmp_path / "old.yaml", params)
    new = write_params(tmp_path / "new.yaml", {**params, "train": {**params["train"], "lr": 0.5}})
    uri = sqlite_store(tmp_path)
    models = tmp_path / "models" / "fr-dn"
    _aqa("train", "--params", old, "--variant", "fr-dn", "--features", cache, "--annotations", dives,
         "--out", models, "--tracking-uri", uri, cwd=tmp_path)
    return models, " ".join(map(str, [AQA, "train", "--params", new, "--variant", "fr-dn", "--features", cache,
                                      "--annotations", dives, "--out", models, "--tracking-uri", uri]))


def _in_mount_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def _read_only(folder: Path) -> str:
    return f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"


def test_read_only_model_folder_fails_in_one_line_and_keeps_the_checkpoint(tmp_path, tiny_params):
    """Read-only by a read-only bind mount (chmod does not stop root), in a private mount namespace."""
    if not _can_mount_read_only():
        pytest.skip("cannot create a mount namespace here (unshare -m refused)")
    models, retrain = _stale_model_and_retrain_command(tmp_path, tiny_params)
    kept = {p.name: p.read_bytes() for p in (models / "seed0").iterdir()}
    proc = _in_mount_namespace(f"{_read_only(models)} && {retrain}", tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("aqa train: error: ")
    assert f"{models / 'seed0'}: cannot write the model folder (Read-only file system)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in (models / "seed0").iterdir()} == kept


def test_read_only_variant_folder_does_not_empty_the_seed_folder(tmp_path, tiny_params):
    """The issue's case: models/<variant> read-only, its seed0 writable. Training used to delete the
    stale seed0 (emptying it) and then fail to remove the folder itself; now it replaces the files
    in place, since it can write them."""
    from aqa.train.checkpoint import load_checkpoint

    if not _can_mount_read_only():
        pytest.skip("cannot create a mount namespace here (unshare -m refused)")
    models, retrain = _stale_model_and_retrain_command(tmp_path, tiny_params)
    seed0 = models / "seed0"
    writable_seed0 = f"mount --bind {seed0} {seed0} && mount -o remount,bind,rw {seed0}"
    proc = _in_mount_namespace(f"{_read_only(models)} && {writable_seed0} && {retrain}", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(seed0 / "checkpoint.pt")
    assert ckpt["finished"] and ckpt["config"]["train"]["lr"] == 0.5
    assert {"checkpoint.pt", "best_val.pt", "history.json", "run.json"} <= {p.name for p in seed0.iterdir()}


def test_baselines_train_evaluate_and_fill_table2(tmp_path, tiny_params):
    """USDL, MUSDL (direct) and CoRe (pairwise) through `aqa train`, `aqa evaluate` and
    `aqa make-report` on a tiny cache with panels of 7, 5 and 3 judges (w/ DN; both modes of each
    method run in tests/unit/train/test_baselines.py)."""
    import copy
    import csv

    dives, cache, _ = tiny_dataset(tmp_path, 30, panels=(7, 5, 3))
    p = small_train_params(tiny_params, epochs=2)
    p["train"]["variants"] = {k: copy.deepcopy(p["train"]["variants"][k]) for k in ("usdl", "musdl", "core")}
    p["datasets"]["variants"] = {"finediving": ["usdl", "musdl", "core"], "mtl_aqa": []}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["train"]["variants"]["musdl"]["train"] = {"lr": 1e-4, "batch_size": 4}
    p["train"]["exemplar_modes"] = ["dn"]
    p["make_report"]["table4_variant"] = "core"
    params = write_params(tmp_path / "params.yaml", p)
    uri = sqlite_store(tmp_path)
    for variant in ("usdl-dn", "musdl-dn", "core-dn"):
        models = tmp_path / "models" / variant
        _aqa("train", "--params", params, "--variant", variant, "--features", cache, "--annotations", dives,
             "--out", models, "--tracking-uri", uri, cwd=tmp_path)
        _aqa("evaluate", "--params", params, "--variant", variant, "--models", models, "--features", cache,
             "--annotations", dives, "--metrics", tmp_path / f"metrics/finediving/{variant}.json",
             "--predictions", tmp_path / f"pred/{variant}", "--tracking-uri", uri, cwd=tmp_path)
        metrics = json.loads((tmp_path / f"metrics/finediving/{variant}.json").read_text())
        assert metrics["scoring"] == ("voting" if variant.startswith("core") else "direct")
        assert set(metrics["honest"]) == {"rho", "rl2_x100", "l2"}
    _aqa("make-report", "--params", params, "--metrics", tmp_path / "metrics", "--out", tmp_path / "tables",
         cwd=tmp_path)
    with open(tmp_path / "tables/finediving_table2.csv", newline="") as f:
        rows = {(r[0], r[1]): r[2:] for r in csv.reader(f)}
    for method in ("USDL", "MUSDL", "CoRe"):
        for protocol in ("ours, honest", "ours, paper protocol"):
            w_o, w = rows[(method, protocol)][:2], rows[(method, protocol)][2:]
            assert w_o == ["not run"] * 2 and all(" ± " in cell for cell in w), rows[(method, protocol)]
    assert rows[("TSA", "ours, honest")] == ["not run"] * 4
    assert rows[("MUSDL", "published")] == ["0.8427", "0.5733", "0.8978", "0.3704"]
