"""The pool scene (drawn once per video) and the broadcast camera that follows the diver.

The background is a world image at a fixed scale; a frame is a crop of it chosen by the
camera (centre and view height in metres), resized to the output size. Colours, wall texture
and lighting vary per video and per dive; nothing here depends on the dive's quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from aqa.data.synth.diver import BOARD_HEIGHT

PPM = 64  # background pixels per metre
X_RANGE = (-7.0, 9.0)  # world x covered by the background
VIEW_HEIGHT = 3.0  # metres seen vertically: a 1.75 m diver fills about 60 % of the frame


@dataclass
class Scene:
    board: str
    image: Image.Image  # RGB world background
    y_top: float  # world y of the image's first row
    noise: np.ndarray  # (K, H, W, 3) int16 sensor-noise bank

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        return (x - X_RANGE[0]) * PPM, (self.y_top - y) * PPM


def _color(rng, lo, hi):
    return tuple(int(v) for v in rng.uniform(lo, hi, size=3))


def build_scene(board: str, height: int, width: int, rng: np.random.Generator) -> Scene:
    """Wall, stands, board or platform tower and water for one video."""
    h0 = BOARD_HEIGHT[board]
    y_top, y_bottom = h0 + 5.0, -5.0
    w_px = int((X_RANGE[1] - X_RANGE[0]) * PPM)
    h_px = int((y_top - y_bottom) * PPM)
    # wall: a muted colour close to every other video's, a faint gradient and faint tiles. Strong
    # per-video walls, banners and water dominated the I3D features (the video was told apart
    # 99-100% of the time while execution hardly showed; reports/data/stand_in_card.md).
    base = np.array([118.0, 128.0, 138.0]) + rng.uniform(-14, 14, size=3)
    top = base * rng.uniform(0.93, 1.0)
    bottom = base * rng.uniform(0.97, 1.05)
    grad = np.linspace(0, 1, h_px)[:, None, None]
    wall = (top * (1 - grad) + bottom * grad).repeat(w_px, axis=1)
    tile = int(PPM * rng.uniform(0.5, 1.4))
    ty, tx = np.arange(h_px) // tile, np.arange(w_px) // tile
    jitter = rng.normal(0, rng.uniform(1, 3), size=(ty.max() + 1, tx.max() + 1, 3))
    wall = wall + jitter[ty][:, tx]
    img = Image.fromarray(np.clip(wall, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    def px(x, y):
        return (x - X_RANGE[0]) * PPM, (y_top - y) * PPM

    # board or platform
    structure = _color(rng, 165, 200)
    if board == "10m":
        draw.rectangle([px(-7.0, h0), px(0.0, h0 - 0.45)], fill=structure)
        draw.rectangle([px(-3.5, h0 - 0.45), px(-2.2, 0.0)], fill=tuple(int(c * 0.8) for c in structure))
    else:
        draw.rectangle([px(-5.0, h0), px(0.0, h0 - 0.12)], fill=_color(rng, 185, 215))
        draw.polygon([px(-3.2, h0 - 0.12), px(-2.6, h0 - 0.12), px(-2.4, 0.0), px(-3.4, 0.0)],
                     fill=tuple(int(c * 0.7) for c in structure))
    # water with horizontal ripple stripes
    water = np.array([35.0, 105.0, 150.0]) + rng.uniform(-10, 10, size=3)
    wy0 = int(round(y_top * PPM))
    rows = np.arange(h_px - wy0)[:, None]
    ripple = 4 * np.sin(rows / rng.uniform(3, 8) + rng.uniform(0, 6)) * np.exp(-rows / (3 * PPM))
    arr = np.asarray(img).astype(np.float32)
    arr[wy0:] = np.clip(water[None, None, :] + ripple[..., None] + rng.normal(0, 4, (h_px - wy0, w_px, 1)), 0, 255)
    img = Image.fromarray(arr.astype(np.uint8))
    sigma = rng.uniform(1.0, 1.8)
    noise = np.round(rng.normal(0, sigma, size=(4, height, width, 3))).astype(np.int16)
    return Scene(board, img, y_top, noise)


@dataclass
class Camera:
    """Per-frame camera centre (m) and view height (m) for a run of frames."""

    cx: np.ndarray
    cy: np.ndarray
    view: np.ndarray


def follow(com: np.ndarray, water_margin: float, rng: np.random.Generator) -> Camera:
    """Track the body centre with a short lag, pan/zoom drift and hand-held shake.

    `com` is (T, 2). The camera stops going down once the water fills its lower part.
    """
    n = len(com)
    cx, cy = np.empty(n), np.empty(n)
    lag = rng.uniform(0.35, 0.6)
    ox, oy = rng.uniform(-0.3, 0.3), rng.uniform(-0.15, 0.15)
    x, y = com[0, 0] + ox, com[0, 1] + oy
    for i in range(n):
        x += lag * (com[i, 0] + ox - x)
        y += lag * (com[i, 1] + oy - y)
        cx[i], cy[i] = x, max(y, water_margin)
    f = np.arange(n)
    drift = rng.uniform(0.05, 0.2)
    cx += drift * np.sin(2 * np.pi * f / rng.uniform(40, 90) + rng.uniform(0, 6)) + rng.normal(0, 0.02, n)
    cy += drift * np.sin(2 * np.pi * f / rng.uniform(40, 90) + rng.uniform(0, 6)) + rng.normal(0, 0.02, n)
    zoom = rng.uniform(0.95, 1.06) * (1 + 0.03 * np.sin(2 * np.pi * f / rng.uniform(50, 120) + rng.uniform(0, 6)))
    return Camera(cx, cy, VIEW_HEIGHT * zoom)
