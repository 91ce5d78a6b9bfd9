"""Dives on a video's own timeline; step timing read from the labels."""

import numpy as np

from aqa.data.synth.sampler import sample_annotations
from aqa.data.synth.timeline import place_on_timeline, step_timing


def test_place_on_timeline_orders_and_gaps():
    ann = sample_annotations(dict(seed=3, num_videos=2, dives_per_video=5, test_fraction=0.25)).annotations
    moved, plans = place_on_timeline(ann, (20, 40), seed=3)
    assert list(moved.dives) == list(ann.dives)
    for plan in plans:
        prev_end = -1
        for key in plan.keys:
            d, orig = moved.dives[key], ann.dives[key]
            assert 20 <= d.start_frame - prev_end - 1 <= 40
            assert d.num_frames == orig.num_frames
            assert np.array_equal(d.frame_labels, orig.frame_labels)
            prev_end = d.end_frame
        assert 20 <= plan.num_frames - prev_end - 1 <= 40
        assert [k[1] for k in plan.keys] == sorted(k[1] for k in plan.keys)
    again, _ = place_on_timeline(ann, (20, 40), seed=3)
    assert [d.start_frame for d in again.dives.values()] == [d.start_frame for d in moved.dives.values()]


def test_step_timing_from_labels():
    labels = np.array([2] * 30 + [31] * 10 + [15] * 20 + [36] * 40)
    t = step_timing(labels, half_twists=3)
    assert (t.leave, t.entry, t.twist) == (30, 60, (30, 40))
    assert t.entry < t.contact < t.num_frames
    odd = np.array([4] * 40 + [37] * 20 + [36] * 2 + [37] + [36] * 37)  # a real oddity (401b)
    t = step_timing(odd, half_twists=0)
    assert t.leave == 40 and t.entry == 63
