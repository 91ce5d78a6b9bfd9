"""Helpers for the feature tests: real JPEG frames, a dives.parquet, a fast fake backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aqa.data.schema import DIVES_SCHEMA, table_from_rows, write_parquet_atomic
from aqa.models.fetch_i3d import WEIGHTS_NAME, import_state_dict
from aqa.models.i3d import InceptionI3d


def write_frames(folder: Path, start: int, end: int, height: int = 64, width: int = 112, seed: int = 0) -> None:
    """JPEG frames <frame:05d>.jpg whose content changes with the frame number."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    for n in range(start, end + 1):
        img = np.roll(base, shift=3 * n, axis=1)
        Image.fromarray(img).save(folder / f"{n:05d}.jpg", quality=90)


def write_dives(path: Path, dives: list[tuple[str, int, int, int]]) -> Path:
    """dives.parquet (full contract schema) for (video, idx, start_frame, end_frame) tuples."""
    rows = []
    for video, idx, start, end in dives:
        rows.append(dict(key=f"{video}/{idx}", video=video, idx=idx, split="train", action_type="107B",
                         difficulty=3.0, dive_score=60.0, judge_scores=[7.0] * 7, num_judges=7,
                         start_frame=start, end_frame=end, num_frames=end - start + 1,
                         frame_labels=[0] * (end - start + 1), steps_transit_frames=[start, end],
                         transitions_96=[10, 80]))
    write_parquet_atomic(table_from_rows(rows, DIVES_SCHEMA), path)
    return path


def write_fetched_weights(folder: Path, seed: int = 0) -> Path:
    """Random I3D weights imported by fetch_i3d: <folder>/i3d/kinetics400_rgb.pt beside its manifest."""
    torch.manual_seed(seed)
    torch.save(InceptionI3d().state_dict(), folder / "random_i3d.pt")
    import_state_dict(folder / "random_i3d.pt", folder / "i3d")
    return folder / "i3d" / WEIGHTS_NAME


def cache_bytes(root: Path) -> dict[str, bytes]:
    """Every file under a cache folder, by relative path: to check that nothing was touched."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class FakeBackbone(torch.nn.Module):
    """Stands in for I3D where only the bookkeeping is under test (fast, exact, counts calls).

    pooled = per-snippet mean of each channel, tiled to 1024; mixed_5c = that value over a
    (2, 4, 4) grid, so every output can be recomputed from the snippet by the test.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(x.shape[0])
        means = x.mean(dim=(2, 3, 4))  # (B, 3)
        pooled = means.repeat(1, 342)[:, :1024]  # (B, 1024)
        return pooled, pooled[:, :, None, None, None].expand(-1, -1, 2, 4, 4)
