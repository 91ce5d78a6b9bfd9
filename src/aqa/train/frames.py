"""The frames path of training (train.backbone: finetune): dives decoded from their JPEG frames.

`FrameData` is a `DiveData` whose batches carry `frames` (B, 3, T, crop, crop) uint8 instead of
cached features; the model's `FinetunedI3D` backbone turns them into the tensors the cache would
hold. The protocol (96 sampled frames, the 200 x 112 squeeze, the 112 crop, the 9 x 16 snippets,
the normalisation) and the I3D weights are those of the dataset's feature cache, read from its
manifest, and every dive's protocol frames must be the ones the cache was computed from
(frames.sha256): the cache's fingerprint then identifies the training input on both paths.

Training loads are augmented as the reference's training transform, independently for the query
and the exemplar and anew every epoch: a horizontal flip with p = 0.5 (of the decoded frame, as
RandomHorizontalFlip comes first), the squeeze (PIL bilinear, as `aqa.features.transforms`), a
crop of crop x crop at a random offset (vertical 0..88, horizontal 0..0 for 200 x 112), the same
for the 96 frames of a load. The draw of a load depends only on (run seed, epoch, the training
item's dive, role), so a resumed run draws the same. Evaluation loads take the centre crop.

FineParser (its `cache_keys`, `load_frame_data(cache_keys=...)`): SAP at T1 reads the same
frames; the masks of each load are decoded from the dive's mask files through exactly the
frames' flip, squeeze and crop, then binarised (aqa.data.masks.mask_clip), after checking that
they are the masks the cache was made from (masks.sha256); the SVE features are the cache's
(frozen, view 0: the centre crop, unflipped, whatever the load's flip and crop; docs/METHODS.md D1).
The cache's Mixed_4f (SAP at T2) is of the frozen I3D's centre crop: not on this path.

Decoding runs in DataLoader worker processes (`train.num_workers`, pinned memory on CUDA): one
work item is one whole batch (query and exemplar loads), so the main process only moves tensors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from aqa.errors import AqaError
from aqa.features import transforms as T
from aqa.train.data import DiveData, Load

log = logging.getLogger(__name__)

ROLES = {"query": 0, "exemplar": 1}


class FrameDataError(AqaError):
    """Frames, cache manifest or weights that cannot make the fine-tuning input."""


@dataclass(frozen=True)
class FrameGeometry:
    """The frame protocol of a feature cache (its manifest's `protocol`)."""

    num_frames: int
    snippet_length: int
    snippet_stride: int
    num_snippets: int
    resize: tuple[int, int]      # (height, width) after the squeeze
    crop: int
    normalization: str

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], where: str) -> "FrameGeometry":
        protocol = manifest.get("protocol")
        try:
            return cls(num_frames=int(protocol["num_frames"]), snippet_length=int(protocol["snippet_length"]),
                       snippet_stride=int(protocol["snippet_stride"]), num_snippets=int(protocol["num_snippets"]),
                       resize=(int(protocol["resize"][0]), int(protocol["resize"][1])), crop=int(protocol["crop"]),
                       normalization=str(protocol["normalization"]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise FrameDataError(f"{where}: the manifest has no complete frame protocol ({protocol!r}); "
                                 "re-run extract_features") from None

    @property
    def snippet_starts(self) -> list[int]:
        return T.snippet_starts(self.num_frames, self.snippet_length, self.snippet_stride, self.num_snippets)

    @property
    def max_offset(self) -> tuple[int, int]:
        """The largest (top, left) of a crop inside the squeezed frame (88, 0 for 200 x 112)."""
        return self.resize[0] - self.crop, self.resize[1] - self.crop


# ----------------------------------------------------------------------------- augmentation


def draw_augmentation(seed: int, epoch: int, item_key: str, role: str, geometry: FrameGeometry
                      ) -> tuple[bool, int, int]:
    """(flip, top, left) of one training load: the reference's RandomHorizontalFlip (p = 0.5) and
    RandomCrop offsets (uniform, ends included), from a generator seeded by (seed, epoch, the
    training item's dive key, role)."""
    from aqa.train.exemplars import stable_hash

    rng = np.random.default_rng([int(seed), int(epoch), stable_hash(item_key), ROLES[role]])
    flip = bool(rng.random() < 0.5)
    max_top, max_left = geometry.max_offset
    return flip, int(rng.integers(0, max_top + 1)), int(rng.integers(0, max_left + 1))


def centre_offsets(geometry: FrameGeometry) -> tuple[int, int]:
    """(top, left) of the reference's centre crop (evaluation, and the cache)."""
    return T.center_crop_box(geometry.resize[0], geometry.resize[1], geometry.crop)


def load_frame(path: str | Path, resize_hw: Sequence[int], flip: bool) -> np.ndarray:
    """One frame decoded, flipped if asked (before the squeeze, as the reference), squeezed: uint8 (H, W, 3)."""
    return T.load_resized(path, resize_hw, flip)   # the cache's own decode (and geometry)


def load_clip(paths: Sequence[Path], geometry: FrameGeometry, flip: bool, top: int, left: int) -> torch.Tensor:
    """A dive's protocol frames, each file decoded once: (3, T, crop, crop) uint8."""
    clip = T.crop_clip(paths, lambda p: load_frame(p, geometry.resize, flip), geometry.crop, top, left)   # (T, c, c, 3)
    return torch.from_numpy(clip).permute(3, 0, 1, 2).contiguous()


# ----------------------------------------------------------------------------- data


def load_mask_clip(paths: Sequence[Path], frame_size: Sequence[int], geometry: FrameGeometry, flip: bool,
                   top: int, left: int) -> torch.Tensor:
    """A dive's protocol masks as the load of its frames with the same flip, top, left sees them:
    (T, crop, crop) bool (aqa.data.masks.mask_clip: flip, squeeze, crop, then binarised)."""
    from aqa.data.masks import mask_clip

    return torch.from_numpy(mask_clip(paths, frame_size, geometry.resize, geometry.crop, flip, top, left))


@dataclass(frozen=True)
class DiveMasks:
    """Per data row: its protocol mask paths and its frames' (width, height) (the masks' check)."""

    paths: list[tuple[Path, ...]]
    frame_sizes: list[tuple[int, int]]

    def clip(self, row: int, geometry: FrameGeometry, flip: bool, top: int, left: int) -> torch.Tensor:
        return load_mask_clip(self.paths[row], self.frame_sizes[row], geometry, flip, top, left)


class _BatchFrames(torch.utils.data.Dataset):
    """Item i: every load of batch i, a tuple of {"frames": (B, 3, T, crop, crop) uint8[, "masks":
    (B, T, crop, crop) bool]}.

    Holds only paths, the geometry and the loads' (row, flip, top, left): cheap to send to
    worker processes, and no tensor of the training device."""

    def __init__(self, clips: list[tuple[Path, ...]], geometry: FrameGeometry, batches: list[tuple[Load, ...]],
                 masks: DiveMasks | None = None):
        self.clips, self.geometry, self.batches, self.masks = clips, geometry, batches, masks

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], ...]:
        return tuple(self._load(load) for load in self.batches[i])

    def _load(self, load: Load) -> dict[str, torch.Tensor]:
        augment = [(int(r), bool(f), int(t), int(lf)) for r, (f, t, lf) in zip(load.rows, load.augment)]
        out = {"frames": torch.stack([load_clip(self.clips[r], self.geometry, f, t, lf) for r, f, t, lf in augment])}
        if self.masks is not None:
            out["masks"] = torch.stack([self.masks.clip(r, self.geometry, f, t, lf) for r, f, t, lf in augment])
        return out


@dataclass
class FrameData(DiveData):
    """DiveData whose batches are decoded frames (`frames` (B, 3, T, crop, crop) uint8), with
    FineParser's `masks` (B, T, crop, crop) bool of the same flip and crop and the cache's `sve`
    (B, T, 512) when loaded for it (`masks`, `additions`).

    `pooled` / `maps` are empty placeholders (N, 1, 0): there is one view, and the features come
    from the model's backbone (`backbone()`)."""

    clips: list[tuple[Path, ...]] = field(default_factory=list)   # per row: its T protocol frame paths
    geometry: FrameGeometry | None = None
    weights_path: Path | None = None      # verified Kinetics weights (None: a checkpoint supplies them)
    num_workers: int = 0
    masks: DiveMasks | None = None        # FineParser's mask files (None: no batch carries masks)

    def _extras(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The cache's SVE features of rows `rows`, view 0 (frozen, whatever the load's augmentation)."""
        if self.additions is None:
            return {}
        return self.additions.batch(rows, np.zeros_like(rows), self.device)

    def batch(self, idx, views=None, *, with_maps: bool = True) -> dict[str, torch.Tensor]:
        """The centre-cropped frames (and FineParser's masks, SVE) of rows `idx` (evaluation), decoded here."""
        rows = np.asarray(idx, dtype=np.int64).reshape(-1)
        top, left = centre_offsets(self.geometry)
        out = {**self.labels(rows), **self._extras(rows),
               "frames": torch.stack([load_clip(self.clips[int(r)], self.geometry, False, top, left)
                                      for r in rows]).to(self.device)}
        if self.masks is not None:
            out["masks"] = torch.stack([self.masks.clip(int(r), self.geometry, False, top, left)
                                        for r in rows]).to(self.device)
        return out

    def request(self, rows, views=None, *, with_maps: bool = True, seed: int | None = None,
                epoch: int | None = None, role: str = "query", items=None) -> Load:
        """A load of rows `rows`: augmented by draws from (seed, epoch, item, role) when `seed`
        is given (training; `items` = the training items' rows, default `rows`), else the centre crop."""
        rows = np.array(rows, dtype=np.int64).reshape(-1)   # a copy: no negative strides
        if seed is None:
            top, left = centre_offsets(self.geometry)
            augment = np.tile(np.array([0, top, left], dtype=np.int64), (rows.size, 1))
        else:
            items = rows if items is None else np.asarray(items, dtype=np.int64).reshape(-1)
            keys = self.dives["key"].to_numpy()
            augment = np.array([draw_augmentation(seed, epoch, keys[int(i)], role, self.geometry) for i in items],
                               dtype=np.int64).reshape(-1, 3)
        return Load(rows=rows, views=None, with_maps=with_maps, augment=augment)

    def fetch(self, batches: Iterable[tuple[Load, ...]]) -> Iterator[tuple[dict[str, torch.Tensor], ...]]:
        """The batches, decoded `num_workers` processes ahead (pinned memory on CUDA)."""
        batches = list(batches)
        loader = torch.utils.data.DataLoader(
            _BatchFrames(self.clips, self.geometry, batches, self.masks), batch_size=None, shuffle=False,
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if self.num_workers else None)
        for loads, decoded in zip(batches, loader):
            yield tuple({**self.labels(load.rows), **self._extras(load.rows),
                         **{k: v.to(self.device, non_blocking=True) for k, v in d.items()}}
                        for load, d in zip(loads, decoded))

    def check_model(self, model: torch.nn.Module) -> None:
        """A SAP that reads these frames (T0 / T1) cuts and normalises them as this protocol."""
        sap, cfg = getattr(model, "sap", None), getattr(model, "cfg", None)
        if sap is None or not getattr(sap, "from_frames", False):
            return
        g = self.geometry
        ours = (tuple(g.snippet_starts), g.snippet_length, g.num_frames, g.normalization)
        theirs = (tuple(cfg.snippet_starts), cfg.snippet_length, cfg.num_frames, cfg.normalization)
        if ours != theirs:
            raise FrameDataError(f"FineParser's SAP reads snippets / frames / normalisation {theirs}, the feature "
                                 f"cache's protocol is {ours}: set the variant's snippet_starts, snippet_length, "
                                 "num_frames, normalization to the cache's")

    def backbone(self, train_cfg: dict[str, Any]) -> torch.nn.Module:
        """The fine-tuned I3D of this data's protocol, from the verified weights (if any)."""
        from aqa.models.backbone import FinetunedI3D

        state = None
        if self.weights_path is not None:
            from aqa.models.i3d_weights import load_verified_weights

            state, _ = load_verified_weights(self.weights_path)
        return FinetunedI3D(snippet_starts=self.geometry.snippet_starts, snippet_length=self.geometry.snippet_length,
                            normalization=self.geometry.normalization, state_dict=state,
                            channels_last=bool(train_cfg.get("channels_last", False)),
                            compile=bool(train_cfg.get("compile", False)))


def load_frame_data(dives_parquet: str | Path, features_dir: str | Path, frames_root: str | Path | None,
                    weights_path: str | Path | None, device: str | torch.device = "cpu", *,
                    num_workers: int = 0, cache_keys: Sequence[str] = (),
                    masks_root: str | Path | None = None) -> FrameData:
    """Dives, their protocol frames under `frames_root` and the protocol of the cache in
    `features_dir`, checked before anything trains: every dive's frames present and the very
    frames the cache was made from, the weights (when given) those of the cache.
    `cache_keys` (FineParser's `cache_keys`): "sve" memory-maps the cache's SVE features;
    "masks" reads each dive's masks under `masks_root`, checked to be those the cache was made
    from; "mixed4f" (SAP at T2) is refused: the cache's maps are not of this path's frames."""
    from aqa.data.annotations import read_dives
    from aqa.features.cache import FRAMES_DIGEST, FeatureCache
    from aqa.features.extract import FeatureExtractionError, dive_job
    from aqa.provenance import annotations_digest
    from aqa.train.data import load_cache_additions

    if frames_root is None:
        raise FrameDataError("train.backbone is finetune: the frames folder is needed (aqa train/evaluate --frames)")
    if "mixed4f" in cache_keys:
        raise FrameDataError("FineParser's SAP at tier T2 reads the cache's Mixed_4f, of the frozen I3D's centre "
                             "crop: with train.backbone finetune set the variant's sap.tier: T1")
    if "masks" in cache_keys and masks_root is None:
        raise FrameDataError("FineParser with train.backbone finetune reads the masks of each load: give the "
                             "masks folder (aqa train/evaluate --masks)")
    dives_parquet, features_dir, frames_root = Path(dives_parquet), Path(features_dir), Path(frames_root)
    if not frames_root.is_dir():
        raise FrameDataError(f"{frames_root}: frames root is not a folder")
    cache = FeatureCache(features_dir)
    geometry = FrameGeometry.from_manifest(cache.manifest, str(cache.manifest_path))
    if weights_path is not None:
        from aqa.models.i3d_weights import load_verified_weights

        _, sha = load_verified_weights(weights_path)
        if sha != cache.manifest.get("weights_sha256"):
            raise FrameDataError(f"{weights_path}: sha256 {sha[:12]}... is not the weights the feature cache "
                                 f"{features_dir} was made with; re-run extract_features")
    dives = read_dives(dives_parquet).sort_values("key").reset_index(drop=True)
    if dives.empty:
        raise FrameDataError(f"{dives_parquet}: no dives")
    if cache_keys:
        cache.require_additions(cache_keys)
    clips = []
    for row in dives.itertuples(index=False):
        try:
            job = dive_job(frames_root, row.video, row.idx, row.start_frame, row.end_frame, geometry.num_frames)
        except FeatureExtractionError as exc:
            raise FrameDataError(str(exc)) from None
        digest_file = cache.path(row.video, int(row.idx)) / FRAMES_DIGEST
        if not digest_file.is_file() or digest_file.read_text().strip() != job.digest:
            raise FrameDataError(f"dive {job.key}: its frames in {frames_root} are not those the feature cache "
                                 f"{features_dir} was made from; re-run extract_features")
        clips.append(job.frame_paths)
    masks = _dive_masks(dives, clips, cache, Path(masks_root), geometry) if "masks" in cache_keys else None
    sve = [k for k in cache_keys if k == "sve"]
    base = _labels_only(dives, dives_parquet, device)
    data = FrameData(**base, fingerprint=str(cache.fingerprint), annotations_digest=annotations_digest(dives_parquet),
                     additions=load_cache_additions(cache, dives, sve) if sve else None,
                     clips=clips, geometry=geometry, weights_path=None if weights_path is None else Path(weights_path),
                     num_workers=int(num_workers), masks=masks)
    log.info("%d dives from the frames in %s (protocol of %s), %d decoding worker(s)", len(dives), frames_root,
             features_dir, num_workers)
    return data


def _dive_masks(dives, clips: list[tuple[Path, ...]], cache, masks_root: Path, geometry: FrameGeometry) -> DiveMasks:
    """Every dive's protocol mask paths under `masks_root`, checked to be the very masks the cache's
    were made from (masks.sha256, as frames.sha256 for the frames): one line naming the dive otherwise."""
    from aqa.data import masks as MK
    from aqa.features.additions import MASKS_DIGEST, masks_digest

    paths, sizes = [], []
    for row, frame_paths in zip(dives.itertuples(index=False), clips):
        try:
            dive = MK.dive_mask_paths(masks_root, row.video, row.idx, row.start_frame, row.end_frame,
                                      geometry.num_frames)
        except MK.MaskError as exc:
            raise FrameDataError(str(exc)) from None
        digest_file = cache.path(row.video, int(row.idx)) / MASKS_DIGEST
        if not digest_file.is_file() or digest_file.read_text().strip() != masks_digest(dive):
            raise FrameDataError(f"dive {row.video}/{int(row.idx)}: its masks in {masks_root} are not those the "
                                 f"feature cache {cache.root} was made from; re-run extract_features")
        paths.append(dive)
        sizes.append(MK.image_size(frame_paths[0]))
    return DiveMasks(paths, sizes)


def _labels_only(dives, dives_parquet: Path, device) -> dict[str, Any]:
    """DiveData's fields for `dives` with empty feature placeholders."""
    from aqa.train.data import label_tensors

    n = len(dives)
    empty = torch.zeros((n, 1, 0), dtype=torch.float16, device=device)
    return {"dives": dives, "pooled": empty, "maps": empty, **label_tensors(dives, dives_parquet, device)}
