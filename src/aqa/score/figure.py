"""`aqa score --figure`: the dive's timeline with the predicted steps and a few of its frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aqa.io import atomic_path
from aqa.score.clip import Clip

STEP_COLOURS = {"take-off": "#4C72B0", "flight": "#DD8452", "entry": "#55A868"}
NUM_THUMBNAILS = 6


def thumbnail_frames(result: dict[str, Any], clip: Clip) -> list[int]:
    """Frames to show: the middle of each predicted step and the step starts, or evenly spaced."""
    if result["steps"]:
        picks = []
        for st in result["steps"]:
            picks += [st["first_frame"], (st["first_frame"] + st["last_frame"]) // 2]
        return sorted(set(picks))[:NUM_THUMBNAILS]
    return sorted(set(np.linspace(clip.first, clip.last, NUM_THUMBNAILS).round().astype(int).tolist()))


def draw_timeline(result: dict[str, Any], clip: Clip, path: Path) -> None:
    """A PNG (or any format matplotlib knows by the suffix): frames on top, the timeline below."""
    import matplotlib

    matplotlib.use("Agg")   # no display needed
    import matplotlib.pyplot as plt

    frames = thumbnail_frames(result, clip)
    fig = plt.figure(figsize=(2.2 * len(frames), 4.2), dpi=100)
    grid = fig.add_gridspec(2, len(frames), height_ratios=[2.2, 1.0])
    for i, n in enumerate(frames):
        ax = fig.add_subplot(grid[0, i])
        with Image.open(clip.frame_path(n)) as img:
            ax.imshow(np.asarray(img.convert("RGB")))
        ax.set_title(f"frame {n}", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    if result["steps"]:
        for st in result["steps"]:
            ax.barh(0, st["last_frame"] - st["first_frame"] + 1, left=st["first_frame"] - 0.5, height=0.6,
                    color=STEP_COLOURS[st["name"]], label=f"{st['name']} {st['first_frame']}-{st['last_frame']}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=3, fontsize=8, frameon=False)
    else:
        ax.barh(0, clip.num_frames, left=clip.first - 0.5, height=0.6, color="#999999")
        ax.text(0.5, 0.5, f"{result['model']['method']}: no step segmentation", transform=ax.transAxes,
                ha="center", va="center", fontsize=9)
    for n in frames:
        ax.axvline(n, color="black", linewidth=0.6, linestyle=":")
    ax.set_xlim(clip.first - 0.5, clip.last + 0.5)
    ax.set_yticks([])
    ax.set_xlabel("clip frame")
    s = result["score"]
    spread = "" if s["spread"] is None else f" ± {s['spread']['std']:.2f} over {s['spread']['num_exemplars']} exemplars"
    fig.suptitle(f"dive {result['dive_number']}: predicted {s['predicted']:.2f}{spread} "
                 f"({result['model']['variant']} seed {result['model']['seed']})", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
