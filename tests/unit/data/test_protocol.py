import numpy as np
import pytest

from aqa.data.protocol import (
    ProtocolError,
    label_change_positions,
    sample_frame_numbers,
    sample_indices,
    sampled_frame_labels,
    transitions_96,
)


def _reference_transitions(labels, start, n=96):
    """The reference loader's steps, written out with lists as it does them."""
    end = start + len(labels) - 1
    frame_list = np.linspace(start, end, n).astype(int)
    rel = [int(f) - start for f in frame_list]
    sampled = [int(labels[i]) for i in rel]
    cats = sorted(set(sampled), key=sampled.index)
    firsts = [sampled.index(c) for c in cats]
    return firsts[1] - 1, firsts[-1] - 1


def test_sample_frame_numbers_endpoints_and_length():
    f = sample_frame_numbers(3095, 3195)
    assert f.shape == (96,) and f[0] == 3095 and f[-1] == 3195
    assert np.all(np.diff(f) >= 0)
    assert np.array_equal(f, np.linspace(3095, 3195, 96).astype(int))


def test_short_clip_repeats_frames():
    f = sample_frame_numbers(10, 72)  # 63 frames, the shortest real clip
    assert len(f) == 96 and len(set(f.tolist())) == 63
    assert set(f.tolist()) == set(range(10, 73))


def test_single_frame_and_errors():
    assert np.array_equal(sample_frame_numbers(5, 5, 4), [5, 5, 5, 5])
    with pytest.raises(ProtocolError, match="empty frame range"):
        sample_frame_numbers(6, 5)
    with pytest.raises(ProtocolError):
        sample_frame_numbers(0, 5, 0)


def test_exact_length_96_is_identity():
    assert np.array_equal(sample_indices(96), np.arange(96))


def test_transitions_three_steps():
    labels = np.array([1] * 30 + [20] * 40 + [36] * 26)  # 96 frames: identity sampling
    assert transitions_96(labels) == (29, 69)
    assert transitions_96(labels) == _reference_transitions(labels, 0)


def test_transitions_middle_steps_merged_into_flight():
    # take-off, somersault, twist, somersault again, entry: only the 2nd and the last category count
    labels = np.array([2] * 20 + [10] * 20 + [25] * 20 + [10] * 10 + [36] * 30)
    sampled = sampled_frame_labels(labels)
    t = transitions_96(labels)
    assert sampled[t[0] + 1] == 10 and sampled[t[0]] == 2
    assert sampled[t[1] + 1] == 36 and sampled[t[1]] != 36
    assert t == _reference_transitions(labels, 0)


def test_transitions_category_reappearing_is_ordered_by_first_appearance():
    # 36 appears early, then returns: the "last" category is the one first seen last (5)
    labels = np.array([1] * 10 + [36] * 10 + [1] * 10 + [5] * 10)
    assert transitions_96(labels, 40) == (9, 29)
    assert transitions_96(labels, 40) == _reference_transitions(labels, 0, 40)


def test_two_categories_give_equal_transitions():
    labels = np.array([1] * 50 + [36] * 50)
    t1, t2 = transitions_96(labels)
    assert t1 == t2 == _reference_transitions(labels, 0)[0]


def test_one_category_is_an_error():
    with pytest.raises(ProtocolError, match="second step is missing"):
        transitions_96(np.full(80, 3))


def test_short_clip_transitions_match_reference():
    rng = np.random.default_rng(0)
    for length in (63, 70, 95, 96, 97, 150, 273):
        cuts = np.sort(rng.choice(np.arange(2, length - 2), 3, replace=False))
        labels = np.repeat([1, 15, 22, 36], np.diff(np.r_[0, cuts, length]))
        start = int(rng.integers(0, 20000))
        assert transitions_96(labels, start_frame=start) == _reference_transitions(labels, start)


def test_start_frame_matters_through_rounding():
    # 1 + i*(L-1)/95 whole numbers: at offset 0 linspace can land a hair below, with a large
    # start the sum rounds onto the whole number; the reference works with absolute numbers.
    found = False
    for length in range(60, 300):
        for start in (0, 1000, 4137, 12345, 99999):
            a = sample_indices(length, start_frame=start)
            ref = np.linspace(start, start + length - 1, 96).astype(int) - start
            assert np.array_equal(a, ref)
            found |= not np.array_equal(a, sample_indices(length))
    assert found, "expected at least one length/start pair where rounding differs"


def test_label_change_positions():
    labels = np.array([2, 2, 2, 25, 25, 36])
    assert label_change_positions(labels).tolist() == [3, 5]
    assert (label_change_positions(labels) - 1).tolist() == [2, 4]


def test_bad_labels():
    with pytest.raises(ProtocolError):
        sampled_frame_labels(np.array([]))
    with pytest.raises(ProtocolError):
        sampled_frame_labels(np.zeros((2, 3)))
