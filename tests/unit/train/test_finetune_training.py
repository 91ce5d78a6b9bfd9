"""Training with train.backbone: finetune: every method through the same classes, the I3D in the
checkpoint, and a killed run resuming to the identical result."""

from __future__ import annotations

import pytest
import torch

from aqa.train.checkpoint import load_checkpoint
from aqa.train.run import train_variant
from frame_helpers import finetune_train_params, frames_dataset
from train_helpers import sqlite_store


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, repo_params):
    folder = tmp_path_factory.mktemp("frames")
    return {**frames_dataset(folder, repo_params["extract_features"], num_dives=8), "mlflow": sqlite_store(folder)}


def _train(data_dir, params, variant, out, **kw):
    return train_variant(variant, features_dir=data_dir["features"], dives_parquet=data_dir["dives"], out_dir=out,
                         params=params, frames_root=data_dir["frames"], weights_path=data_dir["weights"],
                         tracking_uri=data_dir["mlflow"], **kw)


def _check_trained(out, history, weights_before):
    ckpt = load_checkpoint(out / "seed0" / "checkpoint.pt")
    assert ckpt["config"]["train"]["backbone"] == "finetune" and ckpt["finished"]
    i3d = {k.removeprefix("backbone.i3d."): v for k, v in ckpt["model"].items() if k.startswith("backbone.i3d.")}
    assert set(i3d) == set(weights_before)                    # the whole I3D is part of the model
    assert not torch.equal(i3d["conv3d_1a_7x7.conv3d.weight"], weights_before["conv3d_1a_7x7.conv3d.weight"])
    assert torch.equal(i3d["mixed_3b.branch_0.batch3d.running_mean"],
                       weights_before["mixed_3b.branch_0.batch3d.running_mean"])
    assert history[-1]["test"].get("rho") is not None or history[-1]["test"]["l2"] >= 0


@pytest.mark.parametrize("variant", ["tsa-dn", "usdl-dn"])
def test_a_pairwise_and_a_direct_method_fine_tune(variant, data_dir, tiny_params, tmp_path):
    params = finetune_train_params(tiny_params)
    before = torch.load(data_dir["weights"], weights_only=True)
    history = _train(data_dir, params, variant, tmp_path / variant)[0]
    assert len(history) == 1 and set(history[0]["train"]) >= {"loss"}
    _check_trained(tmp_path / variant, history, before)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fr-nodn", "fr_asym-dn", "fr_dn-dn", "fsr-dn", "core-dn", "i3d_mlp-nodn",
                                     "musdl-dn"])
def test_every_other_method_fine_tunes(variant, data_dir, tiny_params, tmp_path):
    params = finetune_train_params(tiny_params)
    before = torch.load(data_dir["weights"], weights_only=True)
    history = _train(data_dir, params, variant, tmp_path / variant)[0]
    _check_trained(tmp_path / variant, history, before)


def test_killed_fine_tuning_resumes_to_the_identical_result(data_dir, tiny_params, tmp_path):
    """Two epochs through, against one epoch, a "kill", and a resume (with decoding in worker
    processes this time): the same history and the same checkpoint bytes, I3D included."""
    params = finetune_train_params(tiny_params, epochs=2)
    full = _train(data_dir, params, "fr-dn", tmp_path / "full")[0]
    part = _train(data_dir, params, "fr-dn", tmp_path / "killed", max_epochs=1)[0]
    assert len(part) == 1 and not load_checkpoint(tmp_path / "killed/seed0/checkpoint.pt")["finished"]
    workers = finetune_train_params(tiny_params, epochs=2, num_workers=2)
    resumed = _train(data_dir, workers, "fr-dn", tmp_path / "killed")[0]
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed) == strip(full)
    for name in ("checkpoint.pt", "best_val.pt", "history.json"):
        assert (tmp_path / "killed/seed0" / name).read_bytes() == (tmp_path / "full/seed0" / name).read_bytes()
    assert any(k.startswith("backbone.i3d.") for k in load_checkpoint(tmp_path / "full/seed0/best_val.pt")["model"])


def test_autocast_dtype_and_loss_scaling_per_device(monkeypatch):
    """bfloat16 where the GPU has it (no GradScaler), float16 otherwise (with one), none on CPU.
    (No GPU here: the CUDA capability query is answered by the test.)"""
    from aqa.evaluate.voting import amp_dtype

    cuda = torch.device("cuda")
    assert amp_dtype(torch.device("cpu"), True) is None and amp_dtype(cuda, False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(cuda, True) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_dtype(cuda, True) == torch.float16
