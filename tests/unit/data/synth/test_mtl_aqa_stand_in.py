"""The MTL-AQA stand-in: the sampled set has MTL-AQA's shape and statistics, the real set keeps every
released fact, the invented timeline fits each dive, and every MTL-AQA dive number can be drawn."""

from collections import Counter

import numpy as np
import pytest

from aqa.data.mtl_aqa import read_mtl_records, read_split
from aqa.data.synth.dive_numbers import ENTRY_LABEL, TAKEOFF_LABELS, parse_dive_number
from aqa.data.synth.diver import DiveMotion
from aqa.data.synth.mtl_aqa import (LENGTH_QUANTILES, MARK_LEVELS, MARK_QUANTILES, MTL_ACTIONS, SCORE_MEAN,
                                    SCORE_SD, dive_fields, invented_timeline, read_mtl_source, release_records,
                                    sample_mtl_aqa)
from aqa.data.synth.sampler import rng_for
from aqa.data.synth.timeline import place_on_timeline, step_timing

CFG = {"num_videos": 4, "dives_per_video": 25, "test_fraction": 0.25}


@pytest.fixture(scope="module")
def sampled():
    return sample_mtl_aqa(CFG, 0)


def test_sampled_set_has_mtl_aqa_shape(sampled):
    records, ann = sampled.records, sampled.annotations
    assert len(records) == 100
    # videos "01".."04" (MTL-AQA's numbered videos), dives numbered from 1 as in the release
    assert sorted({k[0] for k in records}) == ["01", "02", "03", "04"]
    assert sorted({k[1] for k in records}) == list(range(1, 26))
    assert (len(ann.train_keys), len(ann.test_keys)) == (75, 25)
    assert not set(ann.train_keys) & set(ann.test_keys)
    assert set(records[k]["dive_number"] for k in records) <= set(MTL_ACTIONS)
    for key, rec in records.items():
        judges = sorted(rec["judge_scores"])
        assert len(judges) == 7 and all(0 <= j <= 10 and j * 2 == int(j * 2) for j in judges)
        assert rec["final_score"] == round(rec["difficulty"] * sum(judges[2:5]), 2)  # MTL-AQA's rule
        assert rec["difficulty"] in MTL_ACTIONS[rec["dive_number"]]
        assert {f: rec[f] for f in ("position", "armstand", "rotation_type", "ss_no", "tw_no")} == \
            dive_fields(rec["dive_number"])
        assert rec["primary_view"] == 0 and rec["start_frame"] == 0
        assert LENGTH_QUANTILES[0] <= rec["end_frame"] + 1 <= LENGTH_QUANTILES[-1]
        d = ann.dives[key]
        assert (d.dive_score, d.difficulty, d.judge_scores) == (rec["final_score"], rec["difficulty"],
                                                               list(rec["judge_scores"]))
        assert len(d.frame_labels) == rec["end_frame"] - rec["start_frame"] + 1


def test_sampled_scores_follow_mtl_aqa_statistics():
    """Over a set of the real size the score mean and sd are MTL-AQA's (67.0, 16.9)."""
    big = {**CFG, "num_videos": 20, "dives_per_video": 71}
    scores = np.array([r["final_score"] for seed in (0, 1) for r in sample_mtl_aqa(big, seed).records.values()])
    assert abs(scores.mean() - SCORE_MEAN) < 1.5 and abs(scores.std() - SCORE_SD) < 1.5
    assert scores.min() >= 0 and scores.max() <= 4.1 * 30


def test_same_seed_same_set_other_seed_other_set(sampled):
    again = sample_mtl_aqa(CFG, 0)
    assert again.records.keys() == sampled.records.keys()
    assert all(np.array_equal(again.records[k]["judge_scores"], sampled.records[k]["judge_scores"])
               for k in sampled.records)
    other = sample_mtl_aqa(CFG, 1)
    assert [r["dive_number"] for r in other.records.values()] != [r["dive_number"] for r in sampled.records.values()]


def test_a_tiny_set_still_has_a_test_split():
    tiny = sample_mtl_aqa({**CFG, "num_videos": 2, "dives_per_video": 3}, 0)
    assert len(tiny.annotations.test_keys) == 2 and len(tiny.annotations.train_keys) == 4


@pytest.mark.parametrize("n", [4, 55, 101, 274])
@pytest.mark.parametrize("code", ["407C", "5253B", "6243D", "100B", "6241C"])
def test_invented_timeline_fits_the_dive(code, n):
    labels, transits = invented_timeline(code, n, rng_for(0, code, n))
    assert len(labels) == n
    assert labels[0] in TAKEOFF_LABELS and labels[-1] == ENTRY_LABEL
    assert list(np.flatnonzero(labels[1:] != labels[:-1])) == list(transits)
    timing = step_timing(labels, parse_dive_number(code).half_twists)
    assert 0 < timing.leave < timing.entry < n
    if n >= 55:
        assert 22 <= timing.entry - timing.leave <= 50  # a FineDiving-like flight of ~36 frames


def test_invented_timeline_refuses_a_dive_too_short_to_draw():
    with pytest.raises(ValueError, match="3 frames"):
        invented_timeline("407C", 3, rng_for(0))


@pytest.mark.parametrize("code", sorted(MTL_ACTIONS))
def test_every_mtl_aqa_dive_number_can_be_drawn(code):
    labels, _ = invented_timeline(code, 90, rng_for(0, code))
    dn = parse_dive_number(code)
    motion = DiveMotion(dn, step_timing(labels, dn.half_twists), "10m", np.array([0.7, 0.7, 0.7]), rng_for(1, code))
    coms = np.array([motion.frame(f).com for f in range(90)])
    assert np.isfinite(coms).all() and coms[0, 1] > coms[-1, 1]  # from the board into the water


# ----------------------------------------------------------------------------- the real files


def test_embedded_tables_are_the_real_files(mtl_aqa_info_dir):
    records = read_mtl_records(mtl_aqa_info_dir)
    counts: dict[str, Counter] = {}
    for rec in records.values():
        counts.setdefault(rec["dive_number"], Counter())[float(rec["difficulty"])] += 1
    assert {c: dict(v) for c, v in counts.items()} == MTL_ACTIONS
    scores = np.array([r["final_score"] for r in records.values()])
    marks = scores / np.array([r["difficulty"] for r in records.values()]) / 3
    assert np.allclose(np.percentile(marks, MARK_LEVELS), MARK_QUANTILES, atol=0.001)
    lengths = [r["end_frame"] - r["start_frame"] + 1 for r in records.values()]
    assert np.percentile(lengths, np.arange(0, 101, 5)).astype(int).tolist() == LENGTH_QUANTILES
    assert (round(scores.mean(), 2), round(scores.std(), 2)) == (SCORE_MEAN, SCORE_SD)
    # the release's coding of position, armstand, rotation, half somersaults and half twists
    for rec in records.values():
        assert {f: rec[f] for f in ("position", "armstand", "rotation_type", "ss_no", "tw_no")} == \
            dive_fields(rec["dive_number"]), rec["dive_number"]


def test_real_set_keeps_every_key_split_and_score(mtl_aqa_info_dir):
    """All 1412 dives as the renderer writes them back: same keys, splits, dive numbers, DDs, judges,
    scores and every other field; only the frames move (onto the stand-in timeline)."""
    source = read_mtl_source(mtl_aqa_info_dir, 0)
    placed, plans = place_on_timeline(source.annotations, (20, 40), 0)
    written = release_records(source, placed)
    real = read_mtl_records(mtl_aqa_info_dir)
    train, test = read_split(mtl_aqa_info_dir, 0)
    assert list(written) == list(real) and len(written) == 1412
    assert [(int(v), i) for v, i in placed.train_keys] == train and len(train) == 1059
    assert [(int(v), i) for v, i in placed.test_keys] == test and len(test) == 353
    for key, rec in written.items():
        for field, value in real[key].items():
            if field not in ("start_frame", "end_frame"):
                assert np.array_equal(rec[field], value), (key, field)
        assert rec["end_frame"] - rec["start_frame"] == real[key]["end_frame"] - real[key]["start_frame"]
    assert sorted(p.name for p in plans) == sorted({f"{k[0]:02d}" for k in real})
