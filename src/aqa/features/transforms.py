"""The reference TEST transform of TSA / FineParser, frame by frame, and the snippet layout.

The authors' loader (torchvideotransforms) does, per frame: ``Resize((200, 112))`` -- a PIL resize
to 112 wide x 200 high whose default 'nearest' is swapped to PIL BILINEAR by a known bug in that
library, so bilinear is what the published numbers used -- then ``CenterCrop(112)`` with the
offset ``round((size - crop) / 2)``, ``ClipToTensor`` (uint8 / 255, layout (C, T, H, W)) and
ImageNet mean/std. The flipped view flips the resized frame before the crop, as the training
transform's RandomHorizontalFlip (applied first) would.

Decoding and geometry stay in uint8 (cheap to hand between threads and to move to a GPU);
normalisation happens on the batch right before the forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from aqa.errors import AqaError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "i3d")


class FrameError(AqaError):
    """A frame file cannot be read as an image."""


def squeeze(img: Image.Image, resize_hw: Sequence[int], flip: bool = False) -> np.ndarray:
    """The protocol's geometry before the crop, for frames and masks alike: a horizontal flip if
    asked (first, as the training transform's RandomHorizontalFlip), then the squeeze to
    (height, width) with PIL bilinear. uint8 (H, W) for a gray image, (H, W, 3) for RGB."""
    height, width = int(resize_hw[0]), int(resize_hw[1])
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def load_resized(path: str | Path, resize_hw: Sequence[int], flip: bool = False) -> np.ndarray:
    """Decode one JPEG to RGB, flip it if asked and resize it (bilinear) to (height, width): uint8 (H, W, 3)."""
    try:
        with Image.open(path) as img:
            return squeeze(img.convert("RGB"), resize_hw, flip)
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for truncated / non-images
        raise FrameError(f"{path}: cannot decode frame: {exc}") from None


def center_crop_box(height: int, width: int, crop: int) -> tuple[int, int]:
    """(top, left) of the reference centre crop: round((size - crop) / 2)."""
    if crop > height or crop > width:
        raise ValueError(f"crop {crop} larger than the resized frame {height}x{width}")
    return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def crop_views(frames: np.ndarray, crop: int, flip_view: bool) -> np.ndarray:
    """Centre-crop resized frames (T, H, W, 3) into views (V, T, crop, crop, 3) uint8.

    View 0 is the original; view 1 (when `flip_view`) is the horizontally flipped frame, cropped.
    Masks (T, H, W) give (V, T, crop, crop) the same way.
    """
    height, width = frames.shape[1:3]
    top, left = center_crop_box(height, width, crop)
    views = [frames[:, top:top + crop, left:left + crop]]
    if flip_view:
        flipped = frames[:, :, ::-1]
        views.append(flipped[:, top:top + crop, left:left + crop])
    return np.ascontiguousarray(np.stack(views))


def crop_clip(paths: Sequence[Path], load: Callable[[Path], np.ndarray], crop: int, top: int, left: int
              ) -> np.ndarray:
    """`load(path)` (a squeezed frame or mask) of each distinct path once, every protocol position
    cropped at (top, left): (T, crop, crop, ...) uint8. Short clips repeat paths; the training
    crop of the frames (aqa.train.frames) and of the masks (aqa.data.masks) share it."""
    decoded: dict[Path, np.ndarray] = {}
    for path in paths:
        if path not in decoded:
            decoded[path] = load(path)
    return np.ascontiguousarray(np.stack([decoded[p][top:top + crop, left:left + crop] for p in paths]))


def normalize(clips: torch.Tensor, normalization: str) -> torch.Tensor:
    """uint8 clips (..., 3, T, H, W) -> float normalised as the chosen protocol.

    'imagenet': x/255 then ImageNet mean/std (the reference loaders); 'i3d': x/255*2-1, the
    [-1, 1] scaling the Kinetics I3D was trained with.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    dtype = torch.float32 if not clips.is_floating_point() else clips.dtype
    x = clips.to(dtype) / 255.0
    if normalization == "i3d":
        return x * 2.0 - 1.0
    shape = (3,) + (1,) * 3  # broadcast over (T, H, W)
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype, device=x.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=dtype, device=x.device).view(shape)
    return (x - mean) / std


def snippet_starts(num_frames: int, snippet_length: int, snippet_stride: int, num_snippets: int) -> list[int]:
    """Start positions of the snippets on the sampled scale: 0, stride, ..., (n-1)*stride."""
    starts = [i * snippet_stride for i in range(num_snippets)]
    if starts[-1] + snippet_length > num_frames:
        raise ValueError(
            f"{num_snippets} snippets of {snippet_length} frames with stride {snippet_stride} need "
            f"{starts[-1] + snippet_length} frames, only {num_frames} sampled"
        )
    return starts


def to_snippets(views: np.ndarray, starts: Sequence[int], snippet_length: int) -> torch.Tensor:
    """Views (V, T, H, W, 3) uint8 -> snippets (V * S, 3, L, H, W) uint8, view-major."""
    video = torch.from_numpy(views).permute(0, 4, 1, 2, 3)  # (V, 3, T, H, W)
    clips = torch.stack([video[:, :, s:s + snippet_length] for s in starts], dim=1)  # (V, S, 3, L, H, W)
    return clips.reshape(-1, *clips.shape[2:]).contiguous()
