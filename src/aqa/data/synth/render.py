"""Rasterise frames: background crop, diver(s), splash, lighting and sensor noise, plus the mask.

Drawing is PIL ImageDraw on a small label image (one id per part) and numpy compositing, so a
456x256 frame costs a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from aqa.data.synth.diver import Frame, body_parts
from aqa.data.synth.scene import PPM, X_RANGE, Camera, Scene

SPLASH = 4
PARTNER_OFFSET = 4  # partner's part ids = own ids + 4 (5, 6, 7)


@dataclass
class Look:
    """Per-dive appearance: palette of part ids, lighting gain and flicker, diver size."""

    palette: np.ndarray  # (8, 3) uint8, index = part id
    gain: np.ndarray  # (3,) multiplicative lighting per channel
    flicker: float
    flicker_phase: float
    size: float  # body scale (diver height / 1.75 m)
    droplets: np.ndarray  # (K, 4): dx, vy, radius, speed factor of splash droplets


def sample_look(rng: np.random.Generator) -> Look:
    skin = np.array([rng.uniform(150, 235), rng.uniform(100, 190), rng.uniform(70, 160)])
    suit = rng.uniform(0, 255, size=3)
    p_skin = skin * rng.uniform(0.85, 1.1)
    pal = np.zeros((8, 3))
    pal[1], pal[2], pal[3] = skin, skin * 0.72, suit
    pal[4] = rng.uniform(215, 255, size=3)
    pal[5], pal[6], pal[7] = p_skin * 0.9, p_skin * 0.65, suit * 0.85
    gain = rng.uniform(0.9, 1.1) * rng.uniform(0.96, 1.04, size=3)
    droplets = np.column_stack([rng.normal(0, 0.35, 24), rng.uniform(0.3, 1.0, 24),
                                rng.uniform(0.02, 0.06, 24), rng.uniform(0.5, 1.5, 24)])
    return Look(np.clip(pal, 0, 255).astype(np.uint8), gain, rng.uniform(0, 0.05), rng.uniform(0, 6),
                rng.uniform(0.92, 1.08), droplets)


class Renderer:
    def __init__(self, scene: Scene, height: int, width: int):
        self.scene, self.h, self.w = scene, height, width

    def _view(self, cam: Camera, i: int) -> tuple[float, float, float, float]:
        """Clamped camera (left x, top y, view width, view height) in metres."""
        vh = float(cam.view[i])
        vw = vh * self.w / self.h
        left = float(np.clip(cam.cx[i] - vw / 2, X_RANGE[0], X_RANGE[1] - vw))
        top = float(np.clip(cam.cy[i] + vh / 2, vh - 5.0 + 0.01, self.scene.y_top))
        return left, top, vw, vh

    def background(self, cam: Camera, i: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        left, top, vw, vh = view = self._view(cam, i)
        x0, y0 = (left - X_RANGE[0]) * PPM, (self.scene.y_top - top) * PPM
        # nearest sampling: ~20x cheaper than bilinear here, and the wall texture is coarse
        img = self.scene.image.resize((self.w, self.h), Image.NEAREST, box=(x0, y0, x0 + vw * PPM, y0 + vh * PPM))
        return np.asarray(img), view

    def frame(self, cam: Camera, i: int, look: Look, divers: list[Frame], partner: Frame | None,
              frame_no: int, rng_noise: int) -> tuple[np.ndarray, np.ndarray]:
        """One RGB frame (H, W, 3) uint8 and its mask (H, W) uint8 (255 = diver or splash)."""
        bg, (left, top, vw, vh) = self.background(cam, i)
        s = self.h / vh  # pixels per metre

        def to_px(pts):
            return np.column_stack([(pts[:, 0] - left) * s, (top - pts[:, 1]) * s])

        labels = Image.new("L", (self.w, self.h), 0)
        draw = ImageDraw.Draw(labels)
        figures = ([(partner, PARTNER_OFFSET, 0.93)] if partner is not None else []) + [(d, 0, 1.0) for d in divers]
        for fr, offset, scale in figures:
            for kind, pts, r, pid in body_parts(fr, look.size * scale):
                p = to_px(pts)
                rp = r * s
                ident = pid + offset
                if kind == "seg":
                    draw.line([tuple(p[0]), tuple(p[1])], fill=ident, width=max(1, int(round(2 * rp))))
                    for q in p:
                        draw.ellipse([q[0] - rp, q[1] - rp, q[0] + rp, q[1] + rp], fill=ident)
                elif kind == "poly":
                    draw.polygon([tuple(q) for q in p], fill=ident)
                else:
                    q = p[0]
                    draw.ellipse([q[0] - rp, q[1] - rp, q[0] + rp, q[1] + rp], fill=ident)
        lab = np.array(labels)
        water_row = int(np.ceil(top * s))  # rows at or below the surface hide the body
        if water_row < self.h:
            lab[max(water_row, 0):] = 0
        main = divers[0] if divers else None
        if main is not None and main.splash > 0:
            lab = self._splash(lab, main, look, left, top, s)
        out = np.array(bg, dtype=np.int16)
        fg = lab > 0
        out[fg] = look.palette[lab[fg]]
        light = look.gain * (1 + look.flicker * np.sin(0.3 * frame_no + look.flicker_phase))
        out *= np.round(light * 64).astype(np.int16)  # fixed point, 255 * 80 fits in int16
        out >>= 6
        out += self.scene.noise[rng_noise % len(self.scene.noise)]
        np.clip(out, 0, 255, out=out)
        mask = np.where(fg, 255, 0).astype(np.uint8)
        return out.astype(np.uint8), mask

    def _splash(self, lab, fr: Frame, look: Look, left, top, s) -> np.ndarray:
        """A foam crown at the entry point plus droplets on ballistic paths; size = fr.splash."""
        img = Image.fromarray(lab)
        draw = ImageDraw.Draw(img)
        size, age = fr.splash, fr.splash_age
        cx, wy = (fr.com[0] - left) * s, top * s
        col_h = 1.1 * size * s
        draw.ellipse([cx - 0.25 * size * s, wy - col_h, cx + 0.25 * size * s, wy + 0.08 * s], fill=SPLASH)
        draw.ellipse([cx - 0.8 * size * s, wy - 0.18 * size * s, cx + 0.8 * size * s, wy + 0.1 * s], fill=SPLASH)
        t = age / 25.0
        for dx, vy, r, k in look.droplets[: int(6 + 18 * min(size, 1.0))]:
            x = cx + dx * size * s * (1 + 2 * t)
            y = wy - (vy * size * 4 * k * t - 4.9 * t * t) * s
            rp = max(1.0, r * s * (0.5 + size))
            if y < wy:
                draw.ellipse([x - rp, y - rp, x + rp, y + rp], fill=SPLASH)
        return np.array(img)
