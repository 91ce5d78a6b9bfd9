"""FinetunedI3D: the cache's tensors from frames, BatchNorm frozen, I3D trained by the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqa.features.cache import FeatureCache
from aqa.models.backbone import FinetunedI3D, frozen_bn_statistics
from aqa.models.i3d import InceptionI3d
from aqa.models.i3d_weights import load_verified_weights
from aqa.train.frames import load_frame_data
from aqa.train.loop import build, make_optimizer
from frame_helpers import frames_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, repo_params):
    return frames_dataset(tmp_path_factory.mktemp("frames"), repo_params["extract_features"], num_dives=4)


def _config(method: str, model_kwargs: dict, **train) -> dict:
    return {"method": method, "model_kwargs": model_kwargs,
            "train": {"backbone": "finetune", "channels_last": False, "compile": False, **train}}


def test_frames_through_the_backbone_give_the_cached_tensors(data_dir):
    """Eval mode, float32: the same pooled features and maps as extract_features stored."""
    data = load_frame_data(data_dir["dives"], data_dir["features"], data_dir["frames"], data_dir["weights"])
    backbone = data.backbone({}).eval()
    rows = np.array([0, 2])
    with torch.no_grad():
        pooled, maps = backbone(data.batch(rows))
    cache = FeatureCache(data_dir["features"])
    want_pooled, want_maps = cache.load_many([data.keys[r] for r in rows])   # (N, 1, 9, 1024), (N, 1, 9, 1024, 1, 1)
    assert pooled.shape == (2, 9, 1024) and maps.shape == (2, 9, 1024, 1, 1)
    np.testing.assert_allclose(pooled.numpy(), want_pooled[:, 0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(maps.numpy(), want_maps[:, 0], rtol=0, atol=1e-4)


def test_the_state_dict_is_the_kinetics_networks_with_trainable_bn_scales(data_dir):
    state, _ = load_verified_weights(data_dir["weights"])
    backbone = FinetunedI3D(snippet_starts=range(0, 90, 10), snippet_length=16, normalization="imagenet",
                            state_dict=state)
    assert set(backbone.i3d.state_dict()) == set(InceptionI3d().state_dict())
    names = {n for n, _ in backbone.i3d.named_parameters()}
    assert "conv3d_1a_7x7.batch3d.weight" in names and "conv3d_1a_7x7.batch3d.bias" in names
    assert all(torch.equal(backbone.i3d.state_dict()[k], v) for k, v in state.items())


def test_batchnorm_stays_in_eval_mode_when_the_model_trains(data_dir):
    data = load_frame_data(data_dir["dives"], data_dir["features"], data_dir["frames"], data_dir["weights"])
    model = build(_config("fr", {"hidden": (8,)}), torch.device("cpu"), data)
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(bns) == 57 and not any(m.training for m in bns)
    assert model.training and model.backbone.training and model.backbone.i3d.conv3d_1a_7x7.conv3d.training
    model.eval()
    model.train()
    assert not any(m.training for m in bns)


def test_one_step_trains_i3d_and_leaves_its_running_statistics(data_dir):
    """Gradients reach I3D through the 9 snippets of query and exemplar: its weights (and the BN
    affine parameters) change after one Adam step at lr_backbone, its running statistics do not."""
    data = load_frame_data(data_dir["dives"], data_dir["features"], data_dir["frames"], data_dir["weights"])
    torch.manual_seed(0)
    model = build(_config("fr", {"hidden": (8,)}), torch.device("cpu"), data)
    optimizer = make_optimizer(model, {"lr": 1e-3, "lr_backbone": 1e-4, "weight_decay": 0.0})
    lrs = sorted(g["lr"] for g in optimizer.param_groups)
    i3d_ids = {id(p) for p in model.backbone.parameters()}
    backbone_group = [g for g in optimizer.param_groups if g["lr"] == 1e-4][0]
    i3d_ids -= {id(p) for p in model.backbone.i3d.conv3d_0c_1x1.parameters()}   # the unused logits
    assert lrs == [1e-4, 1e-3] and {id(p) for p in backbone_group["params"]} == i3d_ids
    before = {k: v.clone() for k, v in model.backbone.i3d.state_dict().items()}
    stats = frozen_bn_statistics(model.backbone)
    model.train()
    query = data.fetch([(data.request(np.array([0, 1]), seed=0, epoch=0, role="query"),
                         data.request(np.array([2, 3]), seed=0, epoch=0, role="exemplar",
                                      items=np.array([0, 1])))])
    ((q, e),) = list(query)
    out = model(q, e)
    total, _ = model.loss(out, q, e)
    optimizer.zero_grad()
    total.backward()
    assert model.backbone.i3d.conv3d_1a_7x7.conv3d.weight.grad.abs().sum() > 0   # through the first layer
    optimizer.step()
    after = model.backbone.i3d.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "conv3d_1a_7x7.conv3d.weight" in changed and "mixed_5c.branch_0.conv3d.weight" in changed
    assert "mixed_4b.branch_1.1.batch3d.bias" in changed and "mixed_4b.branch_1.1.batch3d.weight" in changed
    assert all(torch.equal(v, frozen_bn_statistics(model.backbone)[k]) for k, v in stats.items())
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)


def test_finetune_without_frames_is_refused():
    with pytest.raises(TypeError, match="finetune needs the frames"):
        build(_config("fr", {}), torch.device("cpu"), None)
