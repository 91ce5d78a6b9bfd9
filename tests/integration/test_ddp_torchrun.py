"""Several processes: `torchrun --nproc_per_node 2 -m aqa.cli train` (DDP, gloo, CPU) on tiny data.

Two processes with batch_size / 2 pairs each train what one process trains with the same global
batch, up to float rounding; process 0 alone writes and tracks; a run killed mid-way (every
process, SIGKILL) and launched again ends as the uninterrupted run, bit for bit.

Tolerance. The processes' gradients are averaged by an all-reduce, so each gradient is summed in
another order than one process's backward over the whole batch, and the synchronised BatchNorm
statistics come from per-process sums: float32 rounding (~1e-7 relative) that Adam carries into
the weights. After 3 epochs (15 steps) the weights agree to ~1e-5 (measured: see
docs/TRAINING.md "Several GPUs"); the test allows 2e-4 absolute. Metrics are compared to 1e-3.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from aqa.train.checkpoint import load_checkpoint
from aqa.train.run import train_variant
from train_helpers import small_train_params, sqlite_store, tiny_dataset, write_params

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
VARIANT = "tsa-dn"       # PSNet's BatchNorm in the model: the mode matters
EPOCHS = 3
WEIGHT_ATOL = 2e-4
METRIC_ATOL = 1e-3


def _command(params: Path, cache: Path, dives: Path, out: Path, uri: str, log: Path) -> list[str]:
    return [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "aqa.cli", "train", "--params", str(params),
            "--log", str(log), "--variant", VARIANT, "--features", str(cache), "--annotations", str(dives),
            "--out", str(out), "--tracking-uri", uri]


def _env() -> dict[str, str]:
    # one thread per process (torchrun's default too): two processes share the test's cores
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process in this process, and two processes under torchrun, on the same tiny data."""
    from aqa.params import load_params
    from tiny_params import shrink

    tmp = tmp_path_factory.mktemp("ddp")
    dives, cache, _ = tiny_dataset(tmp, 24)
    repo = Path(__file__).resolve().parents[2]
    # split BatchNorm: the halves' statistics are synchronised over the processes, so two
    # processes normalise the rows one process does (sync would do the same for joint)
    params = small_train_params(shrink(load_params(repo / "params.yaml")), epochs=EPOCHS, batch_size=4,
                                batchnorm="split")
    params_path = write_params(tmp / "params.yaml", params)
    uri = sqlite_store(tmp)
    single = train_variant(VARIANT, features_dir=cache, dives_parquet=dives, out_dir=tmp / "single",
                           params=params, tracking_uri=uri)
    t0 = time.perf_counter()
    done = subprocess.run(_command(params_path, cache, dives, tmp / "ddp", uri, tmp / "ddp.log"), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"tmp": tmp, "single": single, "params": params_path, "cache": cache, "dives": dives, "uri": uri,
            "seconds": time.perf_counter() - t0}


def test_two_processes_train_what_one_process_trains(runs):
    tmp = runs["tmp"]
    one = load_checkpoint(tmp / "single/seed0/checkpoint.pt")
    two = load_checkpoint(tmp / "ddp/seed0/checkpoint.pt")
    assert two["finished"] and two["epoch"] == EPOCHS
    # the same config and provenance: evaluate accepts the model as it does one process's
    assert two["config"] == one["config"] and two["provenance"] == one["provenance"]
    worst = max(float((one["model"][k].float() - two["model"][k].float()).abs().max()) for k in one["model"])
    assert 0 < worst < WEIGHT_ATOL, worst   # not bit-identical (other summation order), but close
    for k in one["model"]:
        torch.testing.assert_close(two["model"][k], one["model"][k], rtol=0, atol=WEIGHT_ATOL, msg=k)
    h1 = json.loads((tmp / "single/seed0/history.json").read_text())
    h2 = json.loads((tmp / "ddp/seed0/history.json").read_text())
    assert len(h1) == len(h2) == EPOCHS
    for a, b in zip(h1, h2):
        for split in ("train", "val", "test", "test_gt"):
            assert a[split].keys() == b[split].keys()
            for k in a[split]:
                assert b[split][k] == pytest.approx(a[split][k], abs=METRIC_ATOL), (a["epoch"], split, k)


def test_process_zero_alone_writes_and_tracks(runs):
    tmp = runs["tmp"]
    assert sorted(p.name for p in (tmp / "ddp/seed0").iterdir()) == \
        sorted(p.name for p in (tmp / "single/seed0").iterdir())
    info = json.loads((tmp / "ddp/seed0/run.json").read_text())
    assert info["processes"] == 2 and len(info["seconds"]) == EPOCHS
    client = MlflowClient(runs["uri"])
    exp = client.get_experiment_by_name("finediving")
    ddp_runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("processes") == "2"]
    assert [r.info.run_id for r in ddp_runs] == [info["mlflow_run_id"]]   # one run, not one per process
    assert ddp_runs[0].info.status == "FINISHED"
    assert len(client.get_metric_history(info["mlflow_run_id"], "test_rho")) == EPOCHS
    # each process logs to its own file
    assert "training process 0 of 2" in (tmp / "ddp.log").read_text()
    assert "training process 1 of 2" in (tmp / "ddp.rank1.log").read_text()


def test_one_process_adopts_the_model_folder(runs, caplog):
    """`dvc repro` after a torchrun training into the stage's folder: the train stage (one
    process) finds the seed finished and skips it; evaluate accepts the model."""
    from aqa.evaluate.run import evaluate_variant
    from aqa.params import load_params

    tmp, params = runs["tmp"], load_params(runs["params"])
    before = {p.name: p.read_bytes() for p in (tmp / "ddp/seed0").iterdir()}
    with caplog.at_level(logging.INFO, logger="aqa"):
        train_variant(VARIANT, features_dir=runs["cache"], dives_parquet=runs["dives"], out_dir=tmp / "ddp",
                      params=params, tracking_uri=runs["uri"])
    assert f"finished ({EPOCHS} epochs), skipped" in caplog.text
    assert {p.name: p.read_bytes() for p in (tmp / "ddp/seed0").iterdir()} == before
    evaluate_variant(VARIANT, models_dir=tmp / "ddp", features_dir=runs["cache"], dives_parquet=runs["dives"],
                     metrics_path=tmp / "ddp-metrics.json", predictions_dir=tmp / "ddp-predictions", params=params,
                     tracking_uri=runs["uri"])
    assert json.loads((tmp / "ddp-metrics.json").read_text())["seeds"] == [0]


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts each worker in its own session)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_killed_two_process_run_resumes_to_the_uninterrupted_result(runs):
    tmp = runs["tmp"]
    out = tmp / "killed"
    cmd = _command(runs["params"], runs["cache"], runs["dives"], out, runs["uri"], tmp / "killed.log")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "seed0/checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victims = _descendants(proc.pid) + [proc.pid]
    for pid in victims:                      # every process at once, as a node failure or scancel
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)
    state = load_checkpoint(checkpoint)
    assert not state["finished"] and 1 <= state["epoch"] < EPOCHS, "the run was not stopped mid-way"
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming after epoch {state['epoch']}" in (tmp / "killed.log").read_text()
    for name in ("checkpoint.pt", "best_val.pt", "history.json"):
        assert (out / "seed0" / name).read_bytes() == (tmp / "ddp/seed0" / name).read_bytes(), name

