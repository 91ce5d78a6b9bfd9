"""Several processes: `torchrun --nproc_per_node 2 -m aqa.cli -- train` (DDP, gloo, CPU) on tiny data.

N processes with batch_size / N pairs each train what one process trains with the same global
batch, up to float rounding; process 0 alone writes and tracks; a run killed mid-way (every
process, SIGKILL) and launched again ends as the uninterrupted run, bit for bit.

Tolerances. The processes' gradients are averaged by an all-reduce, in another order than one
backward over the whole batch, and the synchronised BatchNorm statistics come from per-process
sums: float32 rounding, ~1e-7 relative per step.
- F+R (no BatchNorm), 3 epochs of 3 steps, the last batch shared 2 + 1: weights within 1e-6
  (measured 1.5e-8), every history value within 1e-5.
- TSA with `batchnorm: split` (slow), one step over the whole pool shared 6 + 5: the step's
  gradients (Adam's first moment in the checkpoint) within 1e-3 of each tensor's largest
  (measured <= 3e-4: the tiny model's BatchNorms see a few values per channel and amplify
  rounding), running statistics within 1e-5, losses within 1e-6. Not the weights: Adam's first
  step is lr x sign(gradient) wherever |gradient| >> its eps, so a component whose gradient is
  near 0 moves by +-lr on a rounding difference; the biases of PSNet's convolutions are exactly
  such (each feeds a BatchNorm that removes it: gradient 0 up to rounding, checked). Over several
  steps these flips and the badly conditioned BatchNorms grow into visible differences even
  between two one-process runs (a 1e-3 change of those biases changes the next step's gradients
  by ~20%), so several TSA steps are compared between DDP runs only (the kill test, bit-identical).
"""

from __future__ import annotations

import json
import logging
import os
import re
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
CONV_BIAS = re.compile(r"^psnet\.encoder\..*\.[03]\.bias$")   # the convolutions of _double_conv


def _command(variant: str, params: Path, tiny: dict, out: Path, log: Path) -> list[str]:
    return [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "aqa.cli", "--", "train", "--params",
            str(params), "--log", str(log), "--variant", variant, "--features", str(tiny["cache"]),
            "--annotations", str(tiny["dives"]), "--out", str(out), "--tracking-uri", tiny["uri"]]


def _env() -> dict[str, str]:
    # one thread per process (torchrun's default too): two processes share the test's cores
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from aqa.params import load_params
    from tiny_params import shrink

    tmp = tmp_path_factory.mktemp("ddp")
    dives, cache, _ = tiny_dataset(tmp, 24)
    repo = Path(__file__).resolve().parents[2]
    # validation 0.2: a pool of 11 dives, so batches of 4 end with 3 pairs (2 + 1 per process)
    params = small_train_params(shrink(load_params(repo / "params.yaml")), validation_fraction=0.2)
    return {"tmp": tmp, "dives": dives, "cache": cache, "params": params, "uri": sqlite_store(tmp)}


def _both(tiny: dict, name: str, variant: str, **train) -> dict:
    """Train `variant` in this process and in two torchrun processes with the same params."""
    tmp = tiny["tmp"]
    params = {**tiny["params"], "train": {**tiny["params"]["train"], **train}}
    path = write_params(tmp / f"{name}.yaml", params)
    train_variant(variant, features_dir=tiny["cache"], dives_parquet=tiny["dives"], out_dir=tmp / f"{name}-one",
                  params=params, tracking_uri=tiny["uri"])
    done = subprocess.run(_command(variant, path, tiny, tmp / f"{name}-two", tmp / f"{name}.log"), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = {"params": path, "params_dict": params, "variant": variant}
    for k in ("one", "two"):
        out[k] = load_checkpoint(tmp / f"{name}-{k}/seed0/checkpoint.pt")
        out[f"{k}_history"] = json.loads((tmp / f"{name}-{k}/seed0/history.json").read_text())
        out[f"{k}_dir"] = tmp / f"{name}-{k}"
    assert out["one"]["finished"] and out["two"]["finished"]
    # the same config and provenance: evaluate and `dvc repro` take the model as one process's
    assert out["two"]["config"] == out["one"]["config"] and out["two"]["provenance"] == out["one"]["provenance"]
    return out


@pytest.fixture(scope="module")
def fr(tiny):
    return _both(tiny, "fr", "fr-dn", epochs=3, batch_size=4)


@pytest.fixture(scope="module")
def tsa(tiny):
    # one step per epoch: the whole pool of 11 in one batch, 6 + 5 pairs
    return _both(tiny, "tsa", "tsa-dn", epochs=1, batch_size=12, batchnorm="split")


def _history_close(h1: list, h2: list, rel: float, abs_: float = 0.0) -> None:
    assert len(h1) == len(h2)
    for a, b in zip(h1, h2):
        assert a.keys() == b.keys()
        for split in a:
            if split == "epoch":
                continue
            assert a[split].keys() == b[split].keys()
            for k in a[split]:
                assert b[split][k] == pytest.approx(a[split][k], rel=rel, abs=abs_), (a["epoch"], split, k)


def test_two_processes_train_what_one_process_trains(fr):
    """F+R, 3 epochs: the epochs' draws, the shares (2 + 2, 2 + 2, 2 + 1) and their weights."""
    one, two = fr["one"]["model"], fr["two"]["model"]
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-6, msg=k)
    assert any(not torch.equal(one[k], two[k]) for k in one)   # another summation order: not the same bits
    _history_close(fr["one_history"], fr["two_history"], rel=1e-5, abs_=1e-6)


@pytest.mark.slow
def test_two_processes_take_the_split_batchnorm_statistics_of_the_global_batch(tsa):
    """TSA, batchnorm split, one step over the pool shared 6 + 5: PSNet's halves normalised over
    both processes give one process's gradients (Adam's first moment, 0.1 x the step's gradient),
    running statistics and losses."""
    one, two = tsa["one"], tsa["two"]
    from aqa.train.loop import build

    names = [n for n, p in build(one["config"], torch.device("cpu")).named_parameters() if p.requires_grad]
    g1 = {n: one["optimizer"]["state"][i]["exp_avg"] for i, n in enumerate(names)}
    g2 = {n: two["optimizer"]["state"][i]["exp_avg"] for i, n in enumerate(names)}
    scale = max(float(g.abs().max()) for g in g1.values())
    biases = [n for n in names if CONV_BIAS.match(n)]
    assert len(biases) == 10
    for n in names:
        if n in biases:   # removed by the BatchNorm after it: a zero gradient, up to rounding, in both
            assert float(g1[n].abs().max()) < 1e-5 * scale and float(g2[n].abs().max()) < 1e-5 * scale, n
        else:
            torch.testing.assert_close(g2[n], g1[n], rtol=0, atol=1e-3 * float(g1[n].abs().max()), msg=n)
    for k in one["model"]:
        if "running_" in k:   # the query half's statistics, over both processes' query rows
            torch.testing.assert_close(two["model"][k], one["model"][k], rtol=0, atol=1e-5, msg=k)
    _history_close([{"epoch": 0, "train": tsa["one_history"][0]["train"]}],
                   [{"epoch": 0, "train": tsa["two_history"][0]["train"]}], rel=1e-6)


def test_process_zero_alone_writes_and_tracks(fr, tiny):
    two = fr["two_dir"] / "seed0"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (fr["one_dir"] / "seed0").iterdir())
    info = json.loads((two / "run.json").read_text())
    assert info["processes"] == 2 and len(info["seconds"]) == 3
    client = MlflowClient(tiny["uri"])
    exp = client.get_experiment_by_name("finediving")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.variant = 'fr-dn'")
    tagged = [r.info.run_id for r in runs if r.data.tags.get("processes") == "2"]
    assert tagged == [info["mlflow_run_id"]]          # one run, not one per process
    assert client.get_run(tagged[0]).info.status == "FINISHED"
    # each process logs to its own file
    assert "training process 0 of 2" in (tiny["tmp"] / "fr.log").read_text()
    assert "training process 1 of 2" in (tiny["tmp"] / "fr.rank1.log").read_text()


def test_one_process_adopts_the_model_folder(fr, tiny, caplog):
    """`dvc repro` after a torchrun training into the stage's folder: the train stage (one
    process) finds the seed finished and skips it; evaluate accepts the model."""
    from aqa.evaluate.run import evaluate_variant

    folder, params, tmp = fr["two_dir"], fr["params_dict"], tiny["tmp"]
    before = {p.name: p.read_bytes() for p in (folder / "seed0").iterdir()}
    with caplog.at_level(logging.INFO, logger="aqa"):
        train_variant("fr-dn", features_dir=tiny["cache"], dives_parquet=tiny["dives"], out_dir=folder,
                      params=params, tracking_uri=tiny["uri"])
    assert "finished (3 epochs), skipped" in caplog.text
    assert {p.name: p.read_bytes() for p in (folder / "seed0").iterdir()} == before
    evaluate_variant("fr-dn", models_dir=folder, features_dir=tiny["cache"], dives_parquet=tiny["dives"],
                     metrics_path=tmp / "fr-metrics.json", predictions_dir=tmp / "fr-predictions", params=params,
                     tracking_uri=tiny["uri"])
    assert json.loads((tmp / "fr-metrics.json").read_text())["seeds"] == [0]


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


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_uninterrupted_result(tiny):
    """TSA (split BatchNorm), 3 epochs: killed with SIGKILL after its first checkpoint, every
    process at once, then the same command again; the files equal an uninterrupted run's."""
    tmp, epochs = tiny["tmp"], 3
    params = write_params(tmp / "kill.yaml", {**tiny["params"], "train": {
        **tiny["params"]["train"], "epochs": epochs, "batch_size": 4, "batchnorm": "split"}})
    whole = subprocess.run(_command("tsa-dn", params, tiny, tmp / "whole", tmp / "whole.log"), env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp / "killed"
    cmd = _command("tsa-dn", params, tiny, out, tmp / "killed.log")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "seed0/checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in _descendants(proc.pid) + [proc.pid]:   # every process at once, as a node failure or scancel
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)
    state = load_checkpoint(checkpoint)
    assert not state["finished"] and 1 <= state["epoch"] < epochs, "the run was not stopped mid-way"
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming after epoch {state['epoch']}" in (tmp / "killed.log").read_text()
    for name in ("checkpoint.pt", "best_val.pt", "history.json"):
        assert (out / "seed0" / name).read_bytes() == (tmp / "whole/seed0" / name).read_bytes(), name
