"""FineParser's additions to the feature cache (../shared/docs/FINEPARSER.md 8.2; docs/CONTRACTS.md):
what they are, which a dataset gets, what the manifest records about them, and how one dive's
SVE features and packed masks are computed. The I3D part (Mixed_4f) comes from the same forward
pass as pooled / maps (aqa.features.extract); the read side is aqa.features.cache.

Per dive folder, beside pooled.npy / maps.npy:
  mixed4f.npy (V, S, 832, 4, 7, 7)  cache dtype: Mixed_4f of each 16 x 112 x 112 snippet (SAP T2's input)
  sve.npy     (V, 96, 512)           cache dtype: the SVE backbone's per-frame features of the 96
                                     protocol frames (the same crop / flip views as the I3D input)
  masks.npy   (V, 96 * 112 * 112 / 8) uint8: the protocol masks (aqa.data.masks), bit-packed
  masks.sha256                       digest of the protocol mask files' bytes (re-drawn masks are redone)

`extract_features.fineparser.<dataset>`: true = all three, "no_masks" = mixed4f and sve only (a
dataset without masks: FineParser trains there without its mask loss), false = none. The manifest
holds one entry per array (`fineparser.<array>`); an entry that changes removes and recomputes
that array alone, and the pooled / maps entries stay the cache's gate.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aqa.data import masks as MK
from aqa.errors import AqaError

MIXED4F = "mixed4f.npy"
SVE = "sve.npy"
MASKS = "masks.npy"
MASKS_DIGEST = "masks.sha256"
ARRAYS = {"mixed4f": MIXED4F, "sve": SVE, "masks": MASKS}   # batch key -> file
MANIFEST_KEY = "fineparser"
MIXED4F_CHANNELS = 832
SVE_LAYER = "mixed_4d"          # i3d2d's cut (512 channels, the width of ResNet-34's layer4)
SVE_DIM = 512
MASK_RULE = "flip as the view, PIL-bilinear squeeze to resize, the view's crop, foreground iff >= 128"
# Bump when an addition's computation changes in a way the params do not show.
ADDITIONS_VERSION = 1


class AdditionsError(AqaError):
    """FineParser's cache additions cannot be made as the params ask."""


def wanted_arrays(cfg: dict[str, Any], dataset: str | None) -> tuple[str, ...]:
    """The additions `extract_features.fineparser.<dataset>` asks for, in ARRAYS order."""
    setting = (cfg.get("fineparser") or {}).get(dataset, False) if dataset else False
    if setting is True:
        return tuple(ARRAYS)
    if setting == "no_masks":
        return ("mixed4f", "sve")
    if setting is False or setting is None:
        return ()
    raise AdditionsError(f"extract_features.fineparser.{dataset} = {setting!r}: expected true, false or no_masks")


def manifest_entries(arrays: Sequence[str], cfg: dict[str, Any], *, sve_weights_sha256: str | None,
                     compute_dtype: str) -> dict[str, dict[str, Any]]:
    """What decides each addition's numbers (no path): the value of the manifest's `fineparser` key.

    The masks' source is recorded by content, per dive (masks.sha256 of the mask files read), not
    by a label or folder: the same masks from the stand-in or from extract_frames.masks_root (or
    a moved folder) are the same cache, as the same frames are (frames.sha256)."""
    entries: dict[str, dict[str, Any]] = {}
    if "mixed4f" in arrays:
        entries["mixed4f"] = {"layer": "Mixed_4f", "pass": "the I3D pass of pooled", "shape": "(V, S, 832, T', h, w)",
                              "version": ADDITIONS_VERSION}
    if "sve" in arrays:
        backbone = cfg.get("sve_backbone", "i3d2d")
        entries["sve"] = {"backbone": backbone, "layer": SVE_LAYER if backbone == "i3d2d" else "layer4",
                          "weights_sha256": sve_weights_sha256, "pooling": "global mean",
                          "compute_dtype": compute_dtype, "version": ADDITIONS_VERSION}
    if "masks" in arrays:
        entries["masks"] = {"source": "per dive masks.sha256", "rule": MASK_RULE,
                            "packing": "np.packbits, row-major",
                            "version": ADDITIONS_VERSION}
    return entries


# ----------------------------------------------------------------------------- the SVE backbone


def load_sve_backbone(cfg: dict[str, Any], i3d_state: dict[str, torch.Tensor] | None,
                      device: torch.device) -> tuple[torch.nn.Module, str]:
    """(the frozen SVE backbone on `device`, its weights' sha256). i3d2d is built from the already
    verified Kinetics state dict; resnet34 from `extract_features.sve_weights_path` (hash-checked)."""
    from aqa.models import sve_backbone as SB
    from aqa.provenance import sha256_file

    name = cfg.get("sve_backbone", "i3d2d")
    if name == "i3d2d":
        if i3d_state is None:
            raise AdditionsError("extract_features.sve_backbone = i3d2d needs the I3D weights")
        return SB.i3d2d_from_state_dict(i3d_state, SVE_LAYER).to(device), ""
    if name == "resnet34":
        path = cfg.get("sve_weights_path")
        if not path:
            raise AdditionsError("extract_features.sve_backbone = resnet34 needs extract_features.sve_weights_path "
                                 f"(torchvision's {SB.RESNET34_FILE})")
        return SB.load_resnet34(path).to(device), sha256_file(path)
    raise AdditionsError(f"extract_features.sve_backbone must be one of {SB.BACKBONES}, got {name!r}")


def sve_weights_digest(cfg: dict[str, Any], i3d_sha256: str) -> str:
    """The digest the manifest records for the SVE weights (i3d2d: the I3D file's, already verified)."""
    from aqa.provenance import sha256_file

    if cfg.get("sve_backbone", "i3d2d") == "resnet34" and cfg.get("sve_weights_path"):
        path = Path(cfg["sve_weights_path"])
        if not path.is_file():
            raise AdditionsError(f"{path}: ResNet-34 weights file not found (extract_features.sve_weights_path)")
        return sha256_file(path)
    return i3d_sha256


def sve_features(backbone: "torch.nn.Module", views: np.ndarray, device: "torch.device",
                 dtype: "torch.dtype | None" = None, batch: int = 96) -> np.ndarray:
    """uint8 views (V, T, H, W, 3) -> (V, T, C) float32: the backbone's map of each frame, globally
    averaged (sve_backbone.frame_features, under the I3D pass's autocast). A repeated frame (short
    dives) is computed once."""
    import torch

    from aqa.models.sve_backbone import normalize_frames

    dtype = dtype or torch.float32
    v, t = views.shape[:2]
    flat = views.reshape(v * t, *views.shape[2:])
    distinct, inverse = distinct_frames(flat)
    frames = torch.from_numpy(distinct).permute(0, 3, 1, 2)  # (N, 3, H, W)
    out = []
    for i in range(0, frames.shape[0], batch):
        x = normalize_frames(frames[i:i + batch].to(device), backbone.normalization)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out.append(backbone(x).float().mean(dim=(2, 3)).cpu())
    feats = torch.cat(out).numpy()
    return feats[np.asarray(inverse).reshape(-1)].reshape(v, t, -1)


def distinct_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct frames in ascending byte order, inverse index): what np.unique(axis=0,
    return_inverse=True) gives on the flattened uint8 frames (so the backbone sees the same batch),
    found by hashing each frame's bytes instead of np.unique's sort of whole rows (~0.18 s a dive)."""
    rows = [frame.tobytes() for frame in frames]
    order = sorted(set(rows))                    # bytes compare as unsigned bytes, as np.unique's sort
    index = {row: i for i, row in enumerate(order)}
    first = {}
    for i, row in enumerate(rows):
        first.setdefault(row, i)
    distinct = frames[[first[row] for row in order]]
    return distinct, np.array([index[row] for row in rows], dtype=np.intp)


# ----------------------------------------------------------------------------- masks


def masks_digest(paths: Sequence[Path]) -> str:
    """sha256 of the protocol mask files' names and bytes (distinct, in order), as a dive's frames digest."""
    digest = hashlib.sha256()
    for path in dict.fromkeys(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def check_mask_headers(paths: Sequence[Path], frame_size: Sequence[int]) -> None:
    """Every distinct protocol mask opens as an image of an accepted mode and its frame's field of
    view, from its header (cheap: before anything is cleared). A mask whose data is damaged past
    its header is found when it is decoded (MaskError naming it, no dive half-written)."""
    from PIL import Image

    for path in dict.fromkeys(paths):
        try:
            with Image.open(path) as img:
                mode, size = img.mode, img.size
        except FileNotFoundError:
            raise MK.MaskError(f"{path}: mask missing") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise MK.MaskError(f"{path}: cannot decode mask: {exc}") from None
        if mode not in ("L", "1", "RGB", "P"):
            raise MK.MaskError(f"{path}: mask of mode {mode!r}; expected single-channel gray ('L')")
        MK._check_size(size, frame_size, path)


def packed_masks(paths: Sequence[Path], frame_size: Sequence[int], resize_hw: Sequence[int], crop: int,
                 flip_view: bool) -> np.ndarray:
    """A dive's protocol masks as the cache's views (aqa.data.masks.mask_views), bit-packed:
    uint8 (V, T * crop * crop / 8)."""
    views = MK.mask_views(paths, frame_size, resize_hw, crop, flip_view)   # bool (V, T, crop, crop)
    return MK.pack_masks(views).reshape(views.shape[0], -1)   # frame by frame: (V, T * ceil(crop^2 / 8))


def unpack_dive_masks(packed: np.ndarray, num_frames: int, crop: int) -> np.ndarray:
    """masks.npy rows (..., T * ceil(crop * crop / 8)) -> bool (..., T, crop, crop)."""
    packed = np.asarray(packed)
    per_frame = packed.reshape(*packed.shape[:-1], num_frames, -1)
    return MK.unpack_masks(per_frame, (crop, crop))
