"""Tiny in-memory dive data for the baseline models' tests, through the host's own DiveData.batch.

`make_data(views)` builds a DiveData as load_dive_data would (features as the cache stores them:
pooled (N, V, 9, 1024) and maps (N, V, 9, 1024, 4, 4) fp16, V = 1 or 2 with the flipped view)
with FineDiving-like panels of 3, 5 and 7 judges. `host_batch` is DiveData.batch plus the keys
the baselines read that the host does not carry yet (`difficulty`, `judges`, `num_judges`):
what issue 10 part B adds to DiveData.batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from aqa.train.data import DiveData

DIM = 1024


def _panel(rng: np.random.Generator, n: int) -> list[float]:
    return (np.round(rng.uniform(5.0, 9.5, size=n) * 2) / 2).tolist()


def make_data(n: int = 12, views: int = 1, seed: int = 0, dim: int = DIM) -> DiveData:
    """`n` dives, 3 action types, panels cycling 7, 5, 3 judges; score by the panel rule x DD."""
    rng = np.random.default_rng(seed)
    actions = [f"10{i % 3}b" for i in range(n)]
    dd = np.array([2.0, 2.8, 3.4])[np.arange(n) % 3]
    panels = [_panel(rng, (7, 5, 3)[i % 3]) for i in range(n)]
    scores = []
    for p, d in zip(panels, dd):
        s = sum(sorted(p)[2:5]) if len(p) == 7 else (0.6 * sum(p) if len(p) == 5 else sum(p))
        scores.append(round(s * d, 2))
    dives = pd.DataFrame({
        "key": [f"v/{i}" for i in range(n)], "video": "v", "idx": np.arange(n),
        "split": ["train" if i < n - 4 else "test" for i in range(n)], "action_type": actions,
        "difficulty": dd, "dive_score": scores, "judge_scores": panels,
        "num_judges": [len(p) for p in panels],
    })
    g = torch.Generator().manual_seed(seed)
    names = sorted(set(actions))
    return DiveData(
        dives=dives,
        pooled=torch.randn(n, views, 9, dim, generator=g).half(),
        maps=torch.randn(n, views, 9, dim, 4, 4, generator=g).half(),
        score=torch.tensor(scores, dtype=torch.float32),
        transitions=torch.full((n, 2), -1, dtype=torch.long),
        action=torch.tensor([names.index(a) for a in actions]),
        action_names=names,
        fingerprint="test",
    )


def judges_tensor(panels: list[list[float]], width: int = 7) -> torch.Tensor:
    """(B, width) float32, NaN-padded."""
    out = torch.full((len(panels), width), float("nan"))
    for i, p in enumerate(panels):
        out[i, :len(p)] = torch.tensor(p)
    return out


def host_batch(data: DiveData, idx, views=None, *, with_maps: bool = True) -> dict[str, torch.Tensor]:
    """DiveData.batch + difficulty (B,), judges (B, 7) NaN-padded, num_judges (B,) long."""
    idx = np.asarray(idx)
    batch = data.batch(idx, views, with_maps=with_maps)
    rows = data.dives.iloc[idx]
    batch["difficulty"] = torch.as_tensor(np.array(rows["difficulty"], dtype=np.float32))
    batch["judges"] = judges_tensor(list(rows["judge_scores"]))
    batch["num_judges"] = torch.as_tensor(np.array(rows["num_judges"], dtype=np.int64))
    return batch


LAYOUTS = [  # (views in the cache, batch with maps): the cache with and without the flipped view,
    (1, True), (1, False), (2, True), (2, False)]  # batches with maps (TSA) and without (mapless)


def layout_batch(views: int, with_maps: bool, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    data = make_data(12, views, seed)
    idx = np.arange(batch)
    v = np.arange(batch) % views  # both views used when the cache has two
    return host_batch(data, idx, v, with_maps=with_maps)
