"""The annotation sampler: real statistics, scoring rules, splits, subsets, latent qualities."""

from collections import Counter

import numpy as np
import pytest

from aqa.data.finediving import Dive, FineDivingAnnotations, read_finediving
from aqa.data.synth.dive_numbers import ACTION_TABLE, LEXICON
from aqa.data.synth.sampler import (STEP_WEIGHTS, event_of_video, quality_from_score, sample_annotations,
                                    score_rule, stratified_subset)

CFG = dict(seed=0, num_videos=6, dives_per_video=20, test_fraction=0.25)


@pytest.fixture(scope="module")
def sampled():
    return sample_annotations(CFG)


def test_counts_split_and_panels(sampled):
    ann = sampled.annotations
    assert len(ann.dives) == 120
    assert len(ann.test_keys) == 30 and len(ann.train_keys) == 90
    assert set(ann.train_keys).isdisjoint(ann.test_keys)
    assert {len(d.judge_scores) for d in ann.dives.values()} == {3, 5, 7}
    # every test action type keeps at least one training dive (exemplars need them)
    train_types = {ann.dives[k].action_type for k in ann.train_keys}
    assert {ann.dives[k].action_type for k in ann.test_keys} <= train_types
    assert ann.sub_action_types == LEXICON


def test_scores_follow_the_rules(sampled):
    for d in sampled.annotations.dives.values():
        j = sorted(d.judge_scores)
        assert all(0 <= x <= 10 and x * 2 == int(x * 2) for x in j)
        expected = {7: sum(j[2:5]), 3: sum(j), 5: sum(j) * 0.6}[len(j)] * d.difficulty
        assert d.dive_score == pytest.approx(expected, abs=0.006)
        assert d.difficulty in ACTION_TABLE[d.action_type][0]
        # synchronised videos have five judges, like the release
        assert (len(j) == 5) == ("Synchronised" in d.video)


def test_labels_and_transitions_agree(sampled):
    lengths = []
    for d in sampled.annotations.dives.values():
        labels = d.frame_labels
        assert len(labels) == d.num_frames and labels[-1] == 36
        ends = np.flatnonzero(labels[1:] != labels[:-1])
        assert list(ends) == list(d.steps_transit_frames)
        assert 2 <= len(d.steps_transit_frames) <= 4
        lengths.append(d.num_frames)
    assert 63 <= min(lengths) and max(lengths) <= 273
    assert 95 <= np.mean(lengths) <= 115


def test_judges_reflect_latent_quality(sampled):
    ann = sampled.annotations
    marks = [10 * STEP_WEIGHTS @ sampled.quality[k] for k in ann.dives]
    means = [d.dive_score / d.difficulty / 3 for d in ann.dives.values()]
    assert np.corrcoef(marks, means)[0, 1] > 0.9
    assert 6.3 < np.mean(means) < 8.0


def test_sampling_is_deterministic():
    a, b = sample_annotations(CFG), sample_annotations(CFG)
    assert list(a.annotations.dives) == list(b.annotations.dives)
    assert all(a.annotations.dives[k].judge_scores == b.annotations.dives[k].judge_scores for k in a.annotations.dives)
    c = sample_annotations(CFG | {"seed": 1})
    assert [d.action_type for d in c.annotations.dives.values()] != [d.action_type for d in a.annotations.dives.values()]


def test_quality_inverts_real_scores():
    d = Dive("FINADivingWorldCup2021_Men3m_final_r1", 0, "train", "107b", 3.0, 72.0, [8.0, 8.0, 8.0],
             0, 99, np.array([30, 60]), np.full(100, 1))
    q = quality_from_score(d, seed=0)
    assert STEP_WEIGHTS @ q == pytest.approx(0.8, abs=1e-3)
    assert not np.allclose(q, q[0])  # split unevenly across the steps
    assert np.array_equal(q, quality_from_score(d, seed=0))


def test_subset_is_stratified_and_keeps_split(sampled):
    ann = sampled.annotations
    sub = stratified_subset(ann, 40, seed=0)
    assert len(sub.dives) == 40
    assert all(sub.dives[k].split == "train" for k in sub.train_keys)
    assert all(sub.dives[k].split == "test" for k in sub.test_keys)
    assert 8 <= len(sub.test_keys) <= 12
    common = Counter(d.action_type for d in ann.dives.values()).most_common(1)[0][0]
    assert any(d.action_type == common for d in sub.dives.values())
    assert stratified_subset(ann, None, 0) is ann


def test_event_from_real_names():
    assert event_of_video("FINADivingWorldCup2021_Men10mSynchronised_final_r1").num_judges == 5
    assert event_of_video("3mMenSpringboardFinal-EuropeanChampionships2021_1").board == "3m"
    assert event_of_video("07", ["626c", "6243d"]).board == "10m"
    assert event_of_video("07", ["5337d", "5154b"]).board == "3m"


def test_score_rule_rejects_other_panels():
    with pytest.raises(ValueError, match="4 judges"):
        score_rule([7.0] * 4, 2.0)


def test_real_file_statistics_match_the_table(finediving_annotations_dir):
    real = read_finediving(finediving_annotations_dir)
    counts = Counter(d.action_type for d in real.dives.values())
    assert counts == {c: sum(dd.values()) for c, (dd, _, _) in ACTION_TABLE.items()}
    assert real.sub_action_types == LEXICON
    assert isinstance(real, FineDivingAnnotations)
