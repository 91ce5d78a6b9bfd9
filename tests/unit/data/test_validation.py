import numpy as np
import pytest

from aqa.data.validation import (
    Anomaly,
    check_frame_range,
    check_overlaps,
    check_scores,
    check_splits,
    check_steps,
    fitting_score_rules,
    impossible_dives,
    summarize,
)

LEX = {1: "Forward", 2: "Back", 20: "1 Som.Tuck", 36: "Entry", 38: "Background"}


def kinds(found):
    return sorted(a.kind for a in found)


@pytest.mark.parametrize(
    "judges,dd,score,rule",
    [
        ([7.5, 7.5, 7.0], 3.0, 66.0, "dd_x_sum"),
        ([9.5, 9.0, 9.5, 9.0, 8.5, 9.5, 8.5], 3.2, 88.0, "dd_x_middle3"),  # sorted: middle three 9.0 + 9.0 + 9.5
        ([7.5, 9.0, 8.0, 8.0, 8.5], 3.3, 81.18, "dd_x_sum_x0.6"),
    ],
)
def test_each_judge_count_has_its_rule(judges, dd, score, rule):
    fits, found = check_scores("v/0", dd, judges, score)
    assert rule in fits and found == []


def test_middle_three_drops_two_highest_and_two_lowest():
    judges = [10.0, 0.0, 6.0, 7.0, 8.0, 10.0, 0.0]
    assert fitting_score_rules(2.0, judges, 2.0 * 21) == ["dd_x_middle3"]


def test_score_mismatch_is_reported_with_values():
    fits, found = check_scores("v/1", 2.9, [6.5, 6.5, 5.5, 5.5, 6.0, 6.5, 6.5], 52.2)
    assert fits == [] and kinds(found) == ["score_rule_mismatch"]
    assert "55.10" in found[0].detail and "52.20" in found[0].detail and found[0].key == "v/1"


def test_five_judges_fitting_only_middle_three_is_a_mismatch():
    # DD x middle-three fits but the synchronised x0.6 rule does not
    judges = [6.0, 8.0, 8.0, 8.0, 9.0]
    fits, found = check_scores("v/2", 2.0, judges, 48.0)
    assert fits == ["dd_x_middle3"] and kinds(found) == ["score_rule_mismatch"]
    assert "fits dd_x_middle3" in found[0].detail


def test_judge_values_out_of_range_and_off_step():
    _, found = check_scores("v/3", 2.0, [55.5, 5.0, 6.0], 133.0)
    assert "judge_out_of_range" in kinds(found)
    _, found = check_scores("v/4", 2.0, [7.5, 8.0, 8.9, 8.5, 8.5], 2.0 * 41.4 * 0.6)
    assert kinds(found) == ["judge_not_half_point"]
    assert "8.9" in found[0].detail


def test_unexpected_judge_count():
    _, found = check_scores("v/5", 2.0, [7.0, 7.0, 7.0, 7.0], 56.0)
    assert kinds(found) == ["unexpected_judge_count"]


def _labels(*segments):
    return np.concatenate([np.full(n, lab) for lab, n in segments])


def test_clean_steps():
    labels = _labels((2, 30), (20, 40), (36, 26))
    t, found = check_steps("v/0", labels, np.array([29, 69]), 100, 195, LEX)
    assert t == (29, 69) and found == []


def test_length_unknown_label_and_transit_mismatch():
    labels = _labels((2, 30), (99, 40), (36, 26))
    t, found = check_steps("v/0", labels, np.array([29, 70]), 100, 200, LEX)
    assert kinds(found) == ["frame_labels_length", "transit_label_mismatch", "unknown_sub_action"]
    assert t == (29, 69)  # still computed, as the reference would


def test_invalid_transit_frames():
    labels = _labels((2, 30), (20, 40), (36, 26))
    _, found = check_steps("v/0", labels, np.array([-1, 69]), 0, 95, LEX)
    assert kinds(found) == ["transit_frames_invalid", "transit_label_mismatch"]


def test_half_violations():
    labels = _labels((2, 50), (20, 20), (36, 26))
    t, found = check_steps("v/0", labels, np.array([49, 69]), 0, 95, LEX)
    assert t == (49, 69) and kinds(found) == ["t1_outside_first_half"]
    labels = _labels((2, 10), (20, 30), (36, 56))
    t, found = check_steps("v/0", labels, np.array([9, 39]), 0, 95, LEX)
    assert t == (9, 39) and kinds(found) == ["t2_outside_second_half"]


def test_missing_steps():
    t, found = check_steps("v/0", np.full(96, 2), np.array([], dtype=int), 0, 95, LEX)
    assert t is None and kinds(found) == ["second_step_missing"]
    t, found = check_steps("v/0", _labels((2, 40), (36, 56)), np.array([39]), 0, 95, LEX)
    assert t == (39, 39) and kinds(found) == ["flight_step_missing", "t2_outside_second_half"]


def test_splits():
    found = check_splits(["a/0", "a/1", "a/1", "z/9"], ["a/1", "b/0"], ["a/0", "a/1", "b/0", "c/0"])
    assert kinds(found) == ["duplicate_split_key", "key_in_both_splits", "key_in_no_split",
                            "split_key_unannotated"]
    assert {a.kind: a.key for a in found}["key_in_no_split"] == "c/0"


def test_overlaps():
    found = check_overlaps({"v/0": ("v", 0, 100), "v/1": ("v", 100, 150), "v/2": ("v", 200, 300),
                            "w/0": ("w", 0, 100)})
    assert [(a.key, a.kind) for a in found] == [("v/1", "overlapping_dives")]


def test_summarize_counts():
    anomalies = [Anomaly("a", "x", ""), Anomaly("b", "x", ""), Anomaly("b", "y", "")]
    fits = {"a": (3, ["dd_x_sum"]), "b": (7, []), "c": (7, ["dd_x_middle3"])}
    r = summarize("d", anomalies, fits, {"num_dives": 3})
    assert r["anomaly_counts"] == {"x": 2, "y": 1} and r["num_anomalies"] == 3
    assert r["score_rules_per_judge_count"]["7"] == {"dives": 2, "none": 1, "dd_x_middle3": 1,
                                                     "expected_rule_fits": 1}
    assert r["score_rules_by_dive"]["b"] == [] and r["num_dives"] == 3


def test_impossible_dives_keep_only_the_impossible_kinds():
    found = (check_frame_range("v/0", 50, 40) + check_frame_range("v/1", -3, 40)
             + check_scores("v/2", 0.0, [7.0, 7.0, 7.0, 7.0], float("nan"))[1]
             + check_scores("v/3", 3.0, [55.5, 7.0, 8.9], 3.0 * 71.4)[1])  # real oddities: reported only
    bad = impossible_dives(found)
    assert list(bad) == ["v/0", "v/1", "v/2"]
    assert bad["v/0"][0].detail == "ends before it starts: start_frame 50, end_frame 40"
    assert bad["v/1"][0].detail.startswith("starts before frame 0")
    assert [a.kind for a in bad["v/2"]] == ["difficulty_not_positive", "negative_score", "unexpected_judge_count"]
