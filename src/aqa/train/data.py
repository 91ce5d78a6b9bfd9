"""The in-memory dataset: every dive's cached I3D features as tensors on the training device.

Features stay fp16 on the device (the cache's dtype) and are cast to float32 one batch at a
time, so the whole FineDiving cache fits where a float32 copy would not.

FineParser's cache additions (`cache_keys`: mixed4f, sve, masks; aqa.features.additions) stay
memory-mapped on disk (mixed4f alone is 2.9 MB per dive and view) and are read per batch, in
the same view as `pooled`: mixed4f (B, 9, 832, 4, 7, 7) in the cache's dtype (fp16), sve
(B, 96, 512) float32, masks unpacked to bool (B, 96, 112, 112).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from aqa.errors import AqaError

log = logging.getLogger(__name__)


class DiveDataError(AqaError):
    """Annotations or features that cannot make a training set."""


@dataclass
class DiveData:
    """All dives of one dataset, row i of every tensor = row i of `dives`."""

    dives: pd.DataFrame          # one row per dive, index 0..N-1, ordered by key
    pooled: torch.Tensor         # (N, V, 9, 1024) fp16
    maps: torch.Tensor           # (N, V, 9, 1024, 4, 4) fp16
    score: torch.Tensor          # (N,) float32
    transitions: torch.Tensor    # (N, 2) long; -1 where the dataset has none (MTL-AQA)
    action: torch.Tensor         # (N,) long, index into action_names
    action_names: list[str]      # sorted action types of all splits
    fingerprint: str             # feature-cache fingerprint the tensors came from
    annotations_digest: str = ""  # content digest of dives.parquet (aqa.provenance)
    # The panel of each dive, for the methods that read it (USDL-DD, MUSDL, CoRe w/ DN, I3D+MLP
    # w/ DD); taken from `dives` (columns difficulty, judge_scores, num_judges) when not given.
    difficulty: torch.Tensor | None = None   # (N,) float32
    judges: torch.Tensor | None = None       # (N, J) float32, NaN-padded; J = max(7, largest panel)
    num_judges: torch.Tensor | None = None   # (N,) long
    additions: "CacheAdditions | None" = None  # FineParser's memory-mapped arrays (`cache_keys` of the load)

    def __post_init__(self):
        if self.difficulty is None or self.judges is None or self.num_judges is None:
            difficulty, judges, num_judges = panel_tensors(self.dives)
            device = self.pooled.device
            self.difficulty = difficulty.to(device) if self.difficulty is None else self.difficulty
            self.judges = judges.to(device) if self.judges is None else self.judges
            self.num_judges = num_judges.to(device) if self.num_judges is None else self.num_judges

    @property
    def keys(self) -> list[str]:
        return self.dives["key"].tolist()

    @property
    def views(self) -> int:
        return int(self.pooled.shape[1])

    @property
    def device(self) -> torch.device:
        return self.pooled.device

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.dives["split"].to_numpy() == split)

    def batch(self, idx: np.ndarray | torch.Tensor, views: np.ndarray | torch.Tensor | None = None, *,
              with_maps: bool = True) -> dict[str, torch.Tensor]:
        """The model's batch dict for rows `idx` (view 0, or the given view per row).

        with_maps=False leaves out the maps, 16x the pooled features, for methods that never read them.
        """
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long, device=self.device)
        v = (torch.zeros_like(idx) if views is None
             else torch.as_tensor(np.asarray(views), dtype=torch.long, device=self.device))
        out = {"pooled": self.pooled[idx, v].float(), **self.labels(idx)}   # pooled (B, 9, 1024)
        if with_maps:
            out["maps"] = self.maps[idx, v].float()       # (B, 9, 1024, 4, 4)
        if self.additions is not None:                    # mixed4f / sve / masks, the same view per row
            out.update(self.additions.batch(idx.cpu().numpy(), v.cpu().numpy(), self.device))
        return out

    def labels(self, idx: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything of rows `idx` a batch holds besides the features."""
        idx = (idx.to(self.device, torch.long) if torch.is_tensor(idx)
               else torch.as_tensor(np.asarray(idx), dtype=torch.long, device=self.device))
        return {
            "score": self.score[idx],                     # (B,)
            "transitions": self.transitions[idx],         # (B, 2)
            "action": self.action[idx],                   # (B,)
            "difficulty": self.difficulty[idx],           # (B,)
            "judges": self.judges[idx],                   # (B, J) NaN-padded
            "num_judges": self.num_judges[idx],           # (B,)
        }

    # A training or evaluation pass asks for its batches as `Load`s (`request`) and receives them
    # from `fetch`: here, cached features assembled when each batch is reached (what `batch`
    # gives); the frames path (aqa.train.frames.FrameData) decodes them ahead in worker processes
    # and augments training loads by draws from (seed, epoch, the item, role).

    def request(self, rows, views=None, *, with_maps: bool = True, seed: int | None = None,
                epoch: int | None = None, role: str = "query", items=None) -> "Load":
        """The load of rows `rows` (views as `batch`); seed, epoch, role and items only matter to
        the frames path's augmentation."""
        return Load(rows=np.array(rows, dtype=np.int64), views=None if views is None else np.asarray(views),
                    with_maps=with_maps)

    def fetch(self, batches: Iterable[tuple["Load", ...]]) -> Iterator[tuple[dict[str, torch.Tensor], ...]]:
        """For each tuple of loads (query[, exemplar]), their batch dicts, in order."""
        for loads in batches:
            yield tuple(self.batch(load.rows, load.views, with_maps=load.with_maps) for load in loads)


@dataclass(frozen=True)
class Load:
    """One batch dict to assemble: data rows, cached view per row (None: view 0), whether with
    maps, and the frames path's (flip, top, left) per row (None with cached features)."""

    rows: np.ndarray
    views: np.ndarray | None = None
    with_maps: bool = True
    augment: np.ndarray | None = None


@dataclass
class CacheAdditions:
    """FineParser's additions of every dive, memory-mapped: key -> one (V, ...) array per data row."""

    arrays: dict[str, list[np.ndarray]]
    num_frames: int   # the cache's protocol, to unpack the masks
    crop: int

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def batch(self, rows: np.ndarray, views: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """{key: (B, ...) tensor} of rows `rows` in views `views`: sve float32, mixed4f in the
        cache's dtype (fp16; SAP casts it once, after the query and exemplar halves are joined),
        the masks unpacked to bool (float copies of these were a quarter of a FineParser step)."""
        from aqa.features.additions import unpack_dive_masks

        out = {}
        for key, per_row in self.arrays.items():
            stacked = np.stack([per_row[r][v] for r, v in zip(rows.tolist(), views.tolist())])
            if key == "masks":   # (B, T * crop * crop / 8) uint8 -> (B, T, crop, crop) bool
                array = unpack_dive_masks(stacked, self.num_frames, self.crop)
            elif key == "mixed4f":
                array = stacked
            else:
                array = stacked.astype(np.float32)
            out[key] = torch.from_numpy(array).to(device)
        return out


def model_cache_keys(model: torch.nn.Module) -> tuple[str, ...]:
    """The feature cache's additions a model's batches need: its `cache_keys` (FineParser), else none."""
    return tuple(getattr(model, "cache_keys", ()) or ())


def load_cache_additions(cache, dives: pd.DataFrame, keys: Iterable[str]) -> CacheAdditions:
    """Every dive's `keys` from `cache` (aqa.features.cache.FeatureCache), memory-mapped; one line
    naming the cache and the param to set if it lacks one."""
    keys = tuple(keys)
    cache.require_additions(keys)
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for video, idx in zip(dives["video"], dives["idx"]):
        for key, array in cache.load_additions(video, int(idx), keys).items():
            arrays[key].append(array)
    protocol = cache.manifest["protocol"]
    return CacheAdditions(arrays, int(protocol["num_frames"]), int(protocol["crop"]))


JUDGE_SLOTS = 7  # the widest panel (FineDiving's and MTL-AQA's 7 judges)


def panel_tensors(dives: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(difficulty (N,) float32, judges (N, J) float32 NaN-padded, num_judges (N,) long) of `dives`.

    J = 7, or the largest panel if wider. A dive's judges stay in stored (panel) order; the
    values are passed as they are (impossible ones included: the method decides, docs/METHODS.md D4).
    """
    n = len(dives)
    # np.array copies: a column's own array may be read-only, which torch warns about
    difficulty = torch.from_numpy(np.array(dives["difficulty"], dtype=np.float32)) if "difficulty" in dives \
        else torch.full((n,), float("nan"))
    panels = [[] if p is None else list(p) for p in dives["judge_scores"]] if "judge_scores" in dives \
        else [[] for _ in range(n)]
    width = max([JUDGE_SLOTS, *map(len, panels)])
    judges = np.full((n, width), np.nan, dtype=np.float32)
    for i, p in enumerate(panels):
        judges[i, :len(p)] = p
    num = np.array(dives["num_judges"] if "num_judges" in dives else list(map(len, panels)), dtype=np.int64)
    return difficulty, torch.from_numpy(judges), torch.from_numpy(num)


def uses_maps(model: torch.nn.Module) -> bool:
    """Whether the model reads batch["maps"] (16x the pooled features): the registry says, by method."""
    from aqa.models.registry import METHODS

    method = getattr(model, "method", None)
    return method not in METHODS or METHODS[method].reads_maps


def _transitions(dives: pd.DataFrame, path: Path) -> np.ndarray:
    out = np.full((len(dives), 2), -1, dtype=np.int64)
    for i, t in enumerate(dives["transitions_96"]):
        if t is None or (isinstance(t, float) and np.isnan(t)):
            continue
        t = np.asarray(t)
        if t.shape != (2,):
            raise DiveDataError(f"{path}: dive {dives['key'].iloc[i]} has transitions_96 {t.tolist()}, "
                             "expected two frame indices")
        out[i] = t
    return out


def label_tensors(dives: pd.DataFrame, dives_parquet: Path, device: str | torch.device) -> dict:
    """DiveData's score, transitions, action and action_names of `dives` (ordered by key)."""
    action_names = sorted(dives["action_type"].astype(str).unique())
    lookup = {a: i for i, a in enumerate(action_names)}
    return {"score": torch.as_tensor(dives["dive_score"].to_numpy(np.float32), device=device),
            "transitions": torch.as_tensor(_transitions(dives, dives_parquet), device=device),
            "action": torch.as_tensor([lookup[a] for a in dives["action_type"].astype(str)], device=device),
            "action_names": action_names}


def load_dive_data(dives_parquet: str | Path, features_dir: str | Path, device: str | torch.device = "cpu",
                   cache_keys: Iterable[str] = ()) -> DiveData:
    """Read dives.parquet and every dive's features from the cache into tensors on `device`, and
    memory-map the cache additions `cache_keys` (mixed4f, sve, masks: `model_cache_keys(model)`)
    that every batch then carries."""
    from aqa.data.annotations import read_dives
    from aqa.features.cache import FeatureCache
    from aqa.provenance import annotations_digest

    dives_parquet, features_dir = Path(dives_parquet), Path(features_dir)
    dives = read_dives(dives_parquet).sort_values("key").reset_index(drop=True)
    if dives.empty:
        raise DiveDataError(f"{dives_parquet}: no dives")
    cache = FeatureCache(features_dir)
    cache_keys = tuple(cache_keys)
    if cache_keys:
        cache.require_additions(cache_keys)   # before the long load: one line naming the cache and the param
    missing = [k for k, v, i in zip(dives["key"], dives["video"], dives["idx"]) if not cache.has(v, int(i))]
    if missing:
        raise FileNotFoundError(f"{features_dir}: feature cache lacks {len(missing)} of {len(dives)} dives "
                                f"of {dives_parquet}, e.g. {missing[:3]}; run extract-features first")
    pooled, maps = [], []
    for video, idx in tqdm(zip(dives["video"], dives["idx"]), total=len(dives), desc="load features",
                           leave=False):
        p, m = cache.load(video, int(idx))
        pooled.append(torch.from_numpy(np.array(p, dtype=np.float16)))  # copy: mmaps are read-only
        maps.append(torch.from_numpy(np.array(m, dtype=np.float16)))
    shapes = {tuple(p.shape) for p in pooled}, {tuple(m.shape) for m in maps}
    if len(shapes[0]) != 1 or len(shapes[1]) != 1:
        raise DiveDataError(f"{features_dir}: dives have features of different shapes {shapes}")
    data = DiveData(
        dives=dives,
        pooled=torch.stack(pooled).to(device),
        maps=torch.stack(maps).to(device),
        **label_tensors(dives, dives_parquet, device),
        fingerprint=str(cache.fingerprint),
        annotations_digest=annotations_digest(dives_parquet),
        additions=load_cache_additions(cache, dives, cache_keys) if cache_keys else None,
    )
    log.info("loaded %d dives (%d views) from %s", len(dives), data.views, features_dir)
    return data


def split_validation(dives: pd.DataFrame, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of (training pool, validation) carved from the train split.

    Stratified by action type: each type gives round(fraction * n) dives to validation but keeps
    at least one in the pool, so dn exemplars exist for every trained type.
    """
    train = np.flatnonzero(dives["split"].to_numpy() == "train")
    if train.size == 0:
        raise DiveDataError("no dives in the train split")
    if fraction <= 0:
        return train, np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    actions = dives["action_type"].astype(str).to_numpy()[train]
    val = []
    for action in sorted(set(actions)):
        members = train[actions == action]
        n_val = min(int(round(fraction * members.size)), members.size - 1)
        if n_val > 0:
            val.extend(rng.choice(members, size=n_val, replace=False).tolist())
    val_arr = np.array(sorted(val), dtype=np.int64)
    return np.setdiff1d(train, val_arr), val_arr
