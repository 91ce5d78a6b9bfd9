"""The diver's motion and its pixels: size in frame, and each quality moving only its own step."""

import numpy as np
import pytest

from aqa.data.synth.dive_numbers import parse_dive_number
from aqa.data.synth.diver import DiveMotion, body_parts
from aqa.data.synth.render import Renderer, sample_look
from aqa.data.synth.sampler import rng_for, sample_timing
from aqa.data.synth.scene import build_scene, follow
from aqa.data.synth.timeline import step_timing

H, W = 128, 228


def motion(code, q, board="10m", seed=0):
    rng = rng_for(seed, "test", code)
    labels, _ = sample_timing(code, rng)
    dn = parse_dive_number(code)
    timing = step_timing(labels, dn.half_twists)
    return DiveMotion(dn, timing, board, np.asarray(q, float), rng_for(seed, "motion")), timing


def render(m, timing, seed=0):
    scene = build_scene("10m" if m.h0 == 10 else "3m", H, W, rng_for(seed, "scene"))
    r = Renderer(scene, H, W)
    frames = [m.frame(f) for f in range(timing.num_frames)]
    rng = rng_for(seed, "cam")
    cam = follow(np.array([f.com for f in frames]), 0.7, rng)
    look = sample_look(rng)
    return [r.frame(cam, i, look, [fr], None, i, i) for i, fr in enumerate(frames)]


def test_diver_is_large_and_masked():
    m, t = motion("107b", [0.8, 0.8, 0.8])
    out = render(m, t)
    rgb, mask = out[2]
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8 and mask.shape == (H, W)
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    assert rows.size and (rows[-1] - rows[0]) > 0.35 * H  # standing diver: over a third of the height
    assert all(mk.any() for _, mk in out[: t.contact])
    assert set(np.unique(mask)) <= {0, 255}


@pytest.mark.parametrize("code", ["107b", "5253b", "626c", "405c"])
def test_each_quality_moves_only_its_step(code):
    base = [0.7, 0.7, 0.7]

    def poses(q):
        m, t = motion(code, q)
        return [(tuple(np.round(f.com, 9)), round(f.theta, 9), vars(f.pose).copy()) for f in map(m.frame, range(t.num_frames))], t

    ref, t = poses(base)
    flight, _ = poses([0.7, 0.2, 0.7])
    entry, _ = poses([0.7, 0.7, 0.2])
    assert flight[: t.leave] == ref[: t.leave] and flight[t.entry:] == ref[t.entry:]
    assert flight[t.leave: t.entry] != ref[t.leave: t.entry]
    assert entry[: t.entry] == ref[: t.entry] and entry[t.entry:] != ref[t.entry:]


def test_better_takeoff_jumps_higher_and_worse_entry_splashes_more():
    good, t = motion("207c", [0.95, 0.7, 0.95])
    poor, _ = motion("207c", [0.3, 0.7, 0.3])
    apex = lambda m: max(m.frame(f).com[1] for f in range(t.leave, t.entry))  # noqa: E731
    assert apex(good) > apex(poor) + 0.3
    splash = lambda m: sum(int((mk > 0).sum()) for _, mk in render(m, t)[t.contact:])  # noqa: E731
    assert splash(poor) > 1.5 * splash(good)


def test_twists_change_the_silhouette_width():
    m, t = motion("5255b", [0.8, 0.8, 0.8])
    a, b = t.twist
    widths = []
    for f in range(a, b):
        fr = m.frame(f)
        fr.theta = 0.0  # look at the body upright to isolate the twist
        pts = np.concatenate([p for _, p, _, _ in body_parts(fr)])
        widths.append(np.ptp(pts[:, 0]))
    assert np.ptp(widths) > 0.1
