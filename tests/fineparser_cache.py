"""FineParser's cache additions for the train / evaluate tests.

With helper B's writer and loader (aqa.features.additions; HAVE_WRITER): `fineparser_dataset`
makes the cache by the real extract_features with `extract_features.fineparser.finediving: true`
(JPEG frames and masks: a frame's mask = its pixels brighter than the frame's median) and the
batches come from train/data.py. Until then, the stand-in below: per dive `mixed4f.npy` (V, 9, 832, 4, h, h) in the cache dtype, `sve.npy`
(V, 96, 512), `masks.npy` (V, 96 * crop * crop / 8) uint8 bit-packed (the CONTRACT's layout), and
a DiveData whose batches carry them (`mixed4f`, `sve`, `masks` float {0, 1}).

The masks are a real function of the real frames (the centre-cropped protocol frames brighter
than their median), so predicted and true masks are about the footage; mixed4f and sve are
random, with a little of the score in them.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from aqa.data.masks import pack_masks, unpack_masks
from aqa.evaluate.sap_masks import protocol_frames
from aqa.features.cache import MANIFEST, dive_dir
from aqa.train.data import DiveData, load_dive_data

MIXED4F, SVE, MASKS = "mixed4f.npy", "sve.npy", "masks.npy"
HAVE_WRITER = importlib.util.find_spec("aqa.features.additions") is not None


def write_dive_masks(frames_root: Path, masks_root: Path, rows: list[dict]) -> Path:
    """One 'L' mask (0 / 255) per frame, named as the frame: the frame's pixels brighter than its median."""
    from PIL import Image

    for row in rows:
        src, dst = frames_root / row["video"] / str(row["idx"]), masks_root / row["video"] / str(row["idx"])
        dst.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.glob("*.jpg")):
            gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
            Image.fromarray(((gray > np.median(gray)) * 255).astype(np.uint8), mode="L").save(dst / path.name)
    return masks_root


def fineparser_dataset(tmp: Path, feature_cfg: dict, num_dives: int = 8) -> dict:
    """dives.parquet, frames, masks, weights and a small-protocol cache (32 x 32 crop) with
    FineParser's additions, by the real writer when there is one."""
    from aqa.features.extract import extract_features
    from frame_helpers import SMALL_PROTOCOL, frames_dataset, write_dive_frames, write_weights
    from train_helpers import make_dives, write_dives

    if not HAVE_WRITER:
        d = frames_dataset(tmp, feature_cfg, num_dives=num_dives)
        add_fineparser_arrays(d["features"], d["dives"], d["frames"])
        return d
    rows = make_dives(num_dives)
    dives = write_dives(tmp / "annotations" / "finediving" / "dives.parquet", rows)
    frames = write_dive_frames(tmp / "frames", rows)
    masks = write_dive_masks(frames, tmp / "masks", rows)
    weights = write_weights(tmp / "weights")
    cfg = {**copy.deepcopy(feature_cfg), **SMALL_PROTOCOL, "fineparser": {"finediving": True, "mtl_aqa": False}}
    extract_features(frames_root=frames, dives_parquet=dives, weights_path=weights, out_dir=tmp / "features",
                     cfg=cfg, dataset="finediving", masks_root=masks)
    return {"dives": dives, "frames": frames, "masks": masks, "weights": weights, "features": tmp / "features",
            "rows": rows, "cfg": cfg}


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


def load_with_additions(dives_parquet, features_dir, device="cpu", cache_keys=()) -> DiveData:
    """The dives with the three additions in every batch: train/data.py's loader when it has them,
    else load_dive_data plus the stand-in's arrays."""
    if HAVE_WRITER:
        return load_dive_data(dives_parquet, features_dir, device, cache_keys=("mixed4f", "sve", "masks"))
    data = load_dive_data(dives_parquet, features_dir, device)
    crop = int(json.loads((Path(features_dir) / MANIFEST).read_text())["protocol"]["crop"])
    extras = {}
    for name, file in (("mixed4f", MIXED4F), ("sve", SVE), ("masks", MASKS)):
        extras[name] = torch.from_numpy(np.stack([np.load(dive_dir(features_dir, v, int(i)) / file)
                                                  for v, i in zip(data.dives["video"], data.dives["idx"])]))
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(DiveData)}
    return AdditionsData(**fields, extras=extras, mask_hw=(crop, crop))
