"""FineDiving-HM masks as data: one dive's masks at the protocol frames, validated, put through
the frames' geometry, binarised and bit-packed.

Layout (the release's, the stand-in renderer's): `<masks_root>/<video>/<idx>/<frame:05d>.jpg`, one
single-channel mask per frame with the frame's name (absolute frame numbers). The folder is the
params' `extract_frames.masks_root.<dataset>` when set (real FineDiving-HM), else the stand-in's
`data/raw/<dataset>/masks` (the drivers choose; nothing here knows a path).

The reference (FINEPARSER.md 1.1-1.2) globs and sorts the mask files separately from the frames
and reads the same positions, so a missing mask shifts every later one: here a dive's masks must
cover its annotated range without a gap, like its frames (aqa.features.extract.dive_job), and the
96 protocol masks are those of the 96 protocol frames (`sample_frame_numbers`).

Geometry: exactly the frames' (aqa.features.transforms.squeeze and crop_clip / crop_views): a flip
where the frames flip, the PIL-bilinear squeeze to 200 x 112, the same crop (the centre crop of
evaluation and the feature cache, or a training crop's offsets). Then binarised: foreground iff
the squeezed gray value is >= 128. The reference divides by 255 and rounds (`round()` then
`long`); a uint8 v gives v / 255 >= 0.5 iff v >= 127.5, i.e. v >= 128, so the rule is the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from aqa.data.protocol import sample_frame_numbers
from aqa.errors import AqaError
from aqa.features import transforms as T

FOREGROUND_MIN = 128      # squeezed gray level from which a pixel is foreground (round(v / 255) == 1)
GRAY_TOLERANCE = 8        # largest channel difference of an RGB mask still taken as gray (JPEG chroma rounding)
SIZE_TOLERANCE_PX = 2     # field-of-view check: the mask scaled to the frame's height vs the frame's width


class MaskError(AqaError):
    """A mask that is missing, unreadable, not single-channel or not of its frame's field of view."""


# ----------------------------------------------------------------------------- files


def dive_mask_paths(masks_root: str | Path, video: str, idx: int, start_frame: int, end_frame: int,
                    num_frames: int) -> tuple[Path, ...]:
    """The masks of a dive's `num_frames` protocol frames, after checking that the dive's mask
    folder holds one mask for every frame of its annotated range (a gap would shift the
    reference's positions). Raises MaskError naming the folder or the first missing file."""
    folder = Path(masks_root) / str(video) / str(int(idx))
    if not folder.is_dir():
        raise MaskError(f"{folder}: no mask folder for dive {video}/{int(idx)}")
    start_frame, end_frame = int(start_frame), int(end_frame)
    present = set()
    for path in folder.glob("*.jpg"):
        try:
            present.add(int(path.stem))
        except ValueError:
            raise MaskError(f"{path}: not named <frame number>.jpg") from None
    missing = [n for n in range(start_frame, end_frame + 1) if n not in present]
    if missing:
        raise MaskError(f"{folder / f'{missing[0]:05d}.jpg'}: mask missing ({len(missing)} of the "
                        f"{end_frame - start_frame + 1} frames {start_frame}..{end_frame} of dive "
                        f"{video}/{int(idx)} have no mask)")
    extra = sorted(n for n in present if not start_frame <= n <= end_frame)
    if extra:
        raise MaskError(f"{folder / f'{extra[0]:05d}.jpg'}: outside the dive's frames {start_frame}..{end_frame} "
                        f"({len(extra)} extra mask(s); the reference would read them in place of others)")
    return tuple(folder / f"{int(n):05d}.jpg" for n in sample_frame_numbers(start_frame, end_frame, num_frames))


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise T.FrameError(f"{path}: cannot decode frame: {exc}") from None


def read_mask(path: str | Path, frame_size: Sequence[int]) -> Image.Image:
    """One mask as a gray ('L') image, validated against its frame's (width, height).

    Accepted: 'L'; '1' (0 / 255); RGB or palette whose channels agree within GRAY_TOLERANCE
    (a gray mask saved as RGB: converted, the reference would crash on it); anything else, a
    coloured mask or one with alpha, is refused. The size must be the frame's, or the same field
    of view at another resolution (the mask scaled to the frame's height is within
    SIZE_TOLERANCE_PX of the frame's width): the squeeze maps both onto the same grid."""
    try:
        with Image.open(path) as img:
            img.load()
    except FileNotFoundError:
        raise MaskError(f"{path}: mask missing") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for truncated / non-images
        raise MaskError(f"{path}: cannot decode mask: {exc}") from None
    gray = _as_gray(img, path)
    _check_size(gray.size, frame_size, path)
    return gray


def _as_gray(img: Image.Image, path: str | Path) -> Image.Image:
    if img.mode == "L":
        return img
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("RGB", "P"):
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
        spread = int((rgb.max(axis=2) - rgb.min(axis=2)).max())
        if spread > GRAY_TOLERANCE:
            raise MaskError(f"{path}: a coloured {img.mode} mask (channels differ by up to {spread} levels); "
                            "masks must be single-channel gray (foreground light)")
        return img.convert("RGB").convert("L")
    raise MaskError(f"{path}: mask of mode {img.mode!r}; expected single-channel gray ('L')")


def _check_size(mask_size: Sequence[int], frame_size: Sequence[int], path: str | Path) -> None:
    (mw, mh), (fw, fh) = (int(v) for v in mask_size), (int(v) for v in frame_size)
    if (mw, mh) == (fw, fh):
        return
    if abs(mw * fh / mh - fw) <= SIZE_TOLERANCE_PX:   # a uniform scale (ffmpeg rounds widths to even)
        return
    raise MaskError(f"{path}: mask is {mw}x{mh}, its frame {fw}x{fh} (another field of view: the mask "
                    "would not lie on the frame after the squeeze)")


# ----------------------------------------------------------------------------- geometry


def load_squeezed_mask(path: str | Path, frame_size: Sequence[int], resize_hw: Sequence[int],
                       flip: bool = False) -> np.ndarray:
    """One validated mask through the frames' flip and squeeze: uint8 gray (H, W), not yet binary."""
    return T.squeeze(read_mask(path, frame_size), resize_hw, flip)


def binarise(squeezed: np.ndarray) -> np.ndarray:
    """Squeezed gray masks -> bool: foreground iff >= FOREGROUND_MIN (the reference's round(v / 255))."""
    return np.asarray(squeezed) >= FOREGROUND_MIN


def mask_clip(paths: Sequence[Path], frame_size: Sequence[int], resize_hw: Sequence[int], crop: int, flip: bool,
              top: int, left: int) -> np.ndarray:
    """A dive's protocol masks as one training load of its frames sees them
    (aqa.train.frames.load_clip with the same flip, top, left): bool (T, crop, crop)."""
    clip = T.crop_clip(paths, lambda p: load_squeezed_mask(p, frame_size, resize_hw, flip), crop, top, left)
    return binarise(clip)


def mask_views(paths: Sequence[Path], frame_size: Sequence[int], resize_hw: Sequence[int], crop: int,
               flip_view: bool) -> np.ndarray:
    """A dive's protocol masks as the feature cache's views of its frames (aqa.features.extract.load_views:
    centre crop, view 1 flipped after the squeeze): bool (V, T, crop, crop)."""
    decoded: dict[Path, np.ndarray] = {}
    for path in paths:
        if path not in decoded:
            decoded[path] = load_squeezed_mask(path, frame_size, resize_hw)
    return binarise(T.crop_views(np.stack([decoded[p] for p in paths]), crop, flip_view))


# ----------------------------------------------------------------------------- storage


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Binary masks (..., H, W) -> uint8 (..., ceil(H * W / 8)), 8 pixels a byte, row-major, first
    pixel in the high bit (np.packbits): a dive's 96 x 112 x 112 masks take 150,528 bytes."""
    masks = np.asarray(masks)
    if masks.dtype != bool:
        raise ValueError(f"pack_masks expects bool masks, got {masks.dtype}")
    flat = masks.reshape(*masks.shape[:-2], masks.shape[-2] * masks.shape[-1])
    return np.packbits(flat, axis=-1)


def unpack_masks(packed: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """The inverse of `pack_masks`: uint8 (..., ceil(H * W / 8)) -> bool (..., H, W)."""
    height, width = int(size_hw[0]), int(size_hw[1])
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.shape[-1] != -(-height * width // 8):
        raise ValueError(f"packed masks of shape {packed.shape} ({packed.dtype}) do not hold {height}x{width} "
                         "masks")
    flat = np.unpackbits(packed, axis=-1, count=height * width).astype(bool)
    return flat.reshape(*packed.shape[:-1], height, width)
