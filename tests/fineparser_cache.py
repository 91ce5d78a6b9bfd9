"""FineParser's cache additions for the train / evaluate tests, until helper B's writer and
loader are in main: per dive `mixed4f.npy` (V, 9, 832, 4, h, h) in the cache dtype, `sve.npy`
(V, 96, 512), `masks.npy` (V, 96 * crop * crop / 8) uint8 bit-packed (the CONTRACT's layout), and
a DiveData whose batches carry them (`mixed4f`, `sve`, `masks` float {0, 1}).

The masks are a real function of the real frames (the centre-cropped protocol frames brighter
than their median), so predicted and true masks are about the footage; mixed4f and sve are
random, with a little of the score in them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from aqa.data.masks import pack_masks, unpack_masks
from aqa.evaluate.sap_masks import protocol_frames
from aqa.features.cache import MANIFEST, dive_dir
from aqa.train.data import DiveData, load_dive_data

MIXED4F, SVE, MASKS = "mixed4f.npy", "sve.npy", "masks.npy"


def add_fineparser_arrays(features_dir: Path, dives_parquet: Path, frames_root: Path, seed: int = 0) -> None:
    from aqa.data.annotations import read_dives

    manifest = json.loads((features_dir / MANIFEST).read_text())
    protocol, views = manifest["protocol"], int(manifest["views"])
    crop, dtype = int(protocol["crop"]), np.dtype(protocol["dtype"])
    rng = np.random.default_rng(seed)
    dives = read_dives(dives_parquet).sort_values("key")
    for row, frames in zip(dives.itertuples(index=False), protocol_frames(dives, frames_root, protocol)):
        folder = dive_dir(features_dir, row.video, int(row.idx))
        signal = (row.dive_score - 50.0) / 50.0
        gray = frames.mean(axis=-1)
        masks = gray > np.median(gray)                                        # (96, crop, crop)
        np.save(folder / MIXED4F, rng.normal(signal, 1.0, (views, 9, 832, 4, crop // 16, crop // 16))
                .clip(0).astype(dtype))
        np.save(folder / SVE, rng.normal(signal, 1.0, (views, 96, 512)).clip(0).astype(dtype))
        np.save(folder / MASKS, np.stack([pack_masks(masks)] * views))


@dataclasses.dataclass
class AdditionsData(DiveData):
    extras: dict = dataclasses.field(default_factory=dict)   # key -> (N, V, ...) tensor
    mask_hw: tuple = (112, 112)

    def batch(self, idx, views=None, *, with_maps: bool = True):
        out = super().batch(idx, views, with_maps=with_maps)
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        v = torch.zeros_like(idx) if views is None else torch.as_tensor(np.asarray(views), dtype=torch.long)
        out["mixed4f"] = self.extras["mixed4f"][idx, v]
        out["sve"] = self.extras["sve"][idx, v].float()
        packed = self.extras["masks"][idx, v].numpy()
        out["masks"] = torch.from_numpy(unpack_masks(packed, self.mask_hw).astype(np.float32))
        return out


def load_with_additions(dives_parquet, features_dir, device="cpu", cache_keys=()) -> AdditionsData:
    """load_dive_data plus the additions (stands in for helper B's loader)."""
    data = load_dive_data(dives_parquet, features_dir, device)
    crop = int(json.loads((Path(features_dir) / MANIFEST).read_text())["protocol"]["crop"])
    extras = {}
    for name, file in (("mixed4f", MIXED4F), ("sve", SVE), ("masks", MASKS)):
        extras[name] = torch.from_numpy(np.stack([np.load(dive_dir(features_dir, v, int(i)) / file)
                                                  for v, i in zip(data.dives["video"], data.dives["idx"])]))
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(DiveData)}
    return AdditionsData(**fields, extras=extras, mask_hw=(crop, crop))
