import json
import logging
import os
import pickle
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from aqa.data import finediving as fd
from aqa.data.annotations import InvalidAnnotationError, convert_annotations, read_dives
from aqa.data.pickles import UnsafePickleError, load_pickle
from aqa.data.schema import SchemaError

LEX = {1: "Forward", 2: "Back", 3: "Reverse", 12: "1 Som.Pike", 20: "1 Som.Tuck", 29: "0.5 Twist",
       36: "Entry", 38: "Background"}
CFG = {"mtl_aqa_split": 0, "num_frames": 96}


def make_dive(video, idx, split, segments, start=1000, judges=(7.5, 7.5, 7.0), dd=3.0, score=None,
              action="205b"):
    labels = np.concatenate([np.full(n, lab) for lab, n in segments]).astype(np.int64)
    transits = np.flatnonzero(labels[1:] != labels[:-1])  # change position - 1
    if score is None:
        score = round(dd * sum(judges), 2) if len(judges) == 3 else round(dd * sum(sorted(judges)[2:5]), 2)
    return fd.Dive(video=video, idx=idx, split=split, action_type=action, difficulty=dd, dive_score=score,
                   judge_scores=list(judges), start_frame=start, end_frame=start + len(labels) - 1,
                   steps_transit_frames=transits, frame_labels=labels)


def tiny_annotations():
    dives = [
        make_dive("compA", 0, "train", [(2, 30), (20, 40), (36, 30)], start=500),
        make_dive("compA", 1, "test", [(1, 20), (12, 20), (29, 10), (36, 25)], start=900, action="107b"),
        make_dive("01", 3, "train", [(3, 40), (20, 100), (36, 60)], start=12345, dd=2.0,
                  judges=(6.0, 6.5, 6.5, 7.0, 7.0, 7.5, 8.0)),
        make_dive("01", 4, "test", [(2, 70), (36, 80)], start=20000),  # no flight step
    ]
    d = {x.key: x for x in dives}
    train = [("01", 3), ("compA", 0)]  # release order is kept, not sorted
    test = [("compA", 1), ("01", 4)]
    return fd.FineDivingAnnotations(d, dict(LEX), train, test)


def reference_transitions(labels, start, n=96):
    """Independent: the reference loader's list-based computation."""
    rel = [int(f) - start for f in np.linspace(start, start + len(labels) - 1, n).astype(int)]
    sampled = [int(labels[i]) for i in rel]
    cats = sorted(set(sampled), key=sampled.index)
    return [sampled.index(cats[1]) - 1, sampled.index(cats[-1]) - 1]


@pytest.fixture()
def tiny_folder(tmp_path):
    folder = tmp_path / "Annotations"
    fd.write_finediving(tiny_annotations(), folder)
    return folder


def test_converts_tiny_folder(tiny_folder, tmp_path):
    out = tmp_path / "out"
    convert_annotations(dataset="finediving", annotations_dir=tiny_folder, out_dir=out / "finediving", cfg=CFG)
    df = read_dives(out / "finediving" / "dives.parquet")
    assert df["key"].tolist() == ["01/3", "compA/0", "compA/1", "01/4"]
    assert df["split"].tolist() == ["train", "train", "test", "test"]
    ann = tiny_annotations()
    for row in df.itertuples():
        d = ann.dives[(row.video, row.idx)]
        assert row.num_frames == d.num_frames == len(row.frame_labels)
        assert list(row.transitions_96) == reference_transitions(d.frame_labels, d.start_frame)
        assert list(row.steps_transit_frames) == d.steps_transit_frames.tolist()
        assert row.dive_score == d.dive_score and row.num_judges == len(d.judge_scores)
    assert not (out / "mtl_aqa").exists()

    lex = pd.read_parquet(out / "finediving" / "lexicon.parquet")
    assert lex["id"].tolist() == sorted(LEX)
    used = dict(zip(lex["id"], lex["used_dives"]))
    assert used[36] == 4 and used[20] == 2 and used[38] == 0
    assert dict(zip(lex["id"], lex["used_frames"]))[36] == 30 + 25 + 60 + 80

    report = json.loads((out / "finediving" / "validation.json").read_text())
    assert report["num_dives"] == 4 and report["splits"] == {"train": 2, "test": 2}
    # t1 = t2 cannot lie in both halves
    assert report["anomaly_counts"] == {"flight_step_missing": 1, "t2_outside_second_half": 1}
    assert {a["key"] for a in report["anomalies"]} == {"01/4"}
    assert report["score_rules_by_dive"]["01/3"] == ["dd_x_middle3"]


def test_anomalies_are_reported_not_repaired(tmp_path):
    ann = tiny_annotations()
    d = ann.dives[("compA", 0)]
    d.judge_scores = [55.5, 5.0, 6.0]  # a released typo: score stays as released
    d.steps_transit_frames = np.array([-1, 69])
    ann.test_keys.append(("compA", 0))  # in both splits
    fd.write_finediving(ann, tmp_path / "ann")
    convert_annotations(dataset="finediving", annotations_dir=tmp_path / "ann",
                        out_dir=tmp_path / "out" / "finediving", cfg=CFG)
    report = json.loads((tmp_path / "out" / "finediving" / "validation.json").read_text())
    assert report["anomaly_counts"] == {
        "flight_step_missing": 1, "judge_out_of_range": 1, "key_in_both_splits": 1,
        "score_rule_mismatch": 1, "t2_outside_second_half": 1, "transit_frames_invalid": 1,
        "transit_label_mismatch": 1,
    }
    df = read_dives(tmp_path / "out" / "finediving" / "dives.parquet")
    row = df.set_index("key").loc["compA/0"]
    assert list(row.judge_scores) == [55.5, 5.0, 6.0] and list(row.steps_transit_frames) == [-1, 69]
    assert len(df) == 4  # the doubly listed dive appears once


def test_cross_file_mismatch(tiny_folder, tmp_path):
    aqa = load_pickle(tiny_folder / fd.AQA)
    aqa[("compA", 1)][1] = 1.0
    (tiny_folder / fd.AQA).write_bytes(pickle.dumps(aqa))
    convert_annotations(dataset="finediving", annotations_dir=tiny_folder,
                        out_dir=tmp_path / "out" / "finediving", cfg=CFG)
    report = json.loads((tmp_path / "out" / "finediving" / "validation.json").read_text())
    bad = [a for a in report["anomalies"] if a["kind"] == "cross_file_mismatch"]
    assert [(a["key"], "dive_score" in a["detail"]) for a in bad] == [("compA/1", True)]


def test_rerun_is_byte_identical(tiny_folder, tmp_path):
    for name in ("a", "b"):
        convert_annotations(dataset="finediving", annotations_dir=tiny_folder,
                            out_dir=tmp_path / name / "finediving", cfg=CFG)
    for f in ("dives.parquet", "lexicon.parquet", "validation.json"):
        assert (tmp_path / "a/finediving" / f).read_bytes() == (tmp_path / "b/finediving" / f).read_bytes()
    assert not list((tmp_path / "a/finediving").glob(".*"))  # no temporaries left behind


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("name", [fd.TRAIN_SPLIT, fd.AQA])
def test_unsafe_pickle_is_refused_by_the_stage(tiny_folder, tmp_path, name):
    (tiny_folder / name).write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(UnsafePickleError, match=rf"{name}.*system"):
        convert_annotations(dataset="finediving", annotations_dir=tiny_folder,
                            out_dir=tmp_path / "out" / "finediving", cfg=CFG)
    assert not (tmp_path / "out" / "finediving" / "dives.parquet").exists()


def test_unsafe_mtl_pickle_is_refused_by_the_stage(tmp_path):
    info = tmp_path / "info"
    info.mkdir()
    for n in ("final_annotations_dict_with_dive_number.pkl", "train_split_0.pkl", "test_split_0.pkl"):
        (info / n).write_bytes(pickle.dumps(_Exploit() if n.startswith("final") else []))
    with pytest.raises(UnsafePickleError, match="final_annotations_dict_with_dive_number.pkl"):
        convert_annotations(dataset="mtl_aqa", annotations_dir=info, out_dir=tmp_path / "out" / "mtl_aqa", cfg=CFG)
    assert not (tmp_path / "out").exists()


def test_missing_release_file(tiny_folder, tmp_path):
    (tiny_folder / fd.TEST_SPLIT).unlink()
    with pytest.raises(fd.AnnotationError, match="test_split.pkl"):
        convert_annotations(dataset="finediving", annotations_dir=tiny_folder,
                            out_dir=tmp_path / "out" / "finediving", cfg=CFG)


def test_read_dives_refuses_other_files(tiny_folder, tmp_path):
    convert_annotations(dataset="finediving", annotations_dir=tiny_folder,
                        out_dir=tmp_path / "out" / "finediving", cfg=CFG)
    with pytest.raises(SchemaError, match="lexicon.parquet: not a dives table: missing column 'key'"):
        read_dives(tmp_path / "out" / "finediving" / "lexicon.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(SchemaError, match="junk.parquet: not a Parquet file"):
        read_dives(junk)
    with pytest.raises(FileNotFoundError, match="nowhere.parquet"):
        read_dives(tmp_path / "nowhere.parquet")
    t = pq.read_table(tmp_path / "out" / "finediving" / "dives.parquet").drop_columns(["transitions_96"])
    pq.write_table(t, tmp_path / "old.parquet")
    with pytest.raises(SchemaError, match="missing column 'transitions_96'"):
        read_dives(tmp_path / "old.parquet")


# ---------------------------------------------------------------- the real release files



def _convert_real(tmp_path, finediving_dir, mtl_dir=None):
    convert_annotations(dataset="finediving", annotations_dir=finediving_dir, out_dir=tmp_path / "finediving", cfg=CFG)
    if mtl_dir:
        convert_annotations(dataset="mtl_aqa", annotations_dir=mtl_dir, out_dir=tmp_path / "mtl_aqa", cfg=CFG)
    return tmp_path


def test_real_finediving(finediving_annotations_dir, mtl_aqa_info_dir, tmp_path):
    out = _convert_real(tmp_path, finediving_annotations_dir, mtl_aqa_info_dir)
    df = read_dives(out / "finediving" / "dives.parquet")
    assert len(df) == 3000 and df["key"].is_unique
    assert (df["split"] == "train").sum() == 2251 and (df["split"] == "test").sum() == 749
    assert df["action_type"].nunique() == 52
    test_keys = [f"{v}/{i}" for v, i in load_pickle(finediving_annotations_dir / fd.TEST_SPLIT)]
    assert df["key"].tolist()[2251:] == test_keys  # test rows in the release's test order
    assert (df["num_frames"] == df["end_frame"] - df["start_frame"] + 1).all()
    assert df["num_frames"].min() == 63 and df["num_frames"].max() == 273

    fine = load_pickle(finediving_annotations_dir / fd.FINE)
    by_key = df.set_index("key")
    for video, idx in [("FINAWorldChampionships2019_Men10mSynchronised_final_r4", 1), ("01", 1),
                       ("FINADivingWorldCup2021_Men3m_final_r1", 8)] + list(fine)[::500]:
        row = by_key.loc[f"{video}/{idx}"]
        want = reference_transitions(np.asarray(fine[(video, idx)]["frames_labels"]), row.start_frame)
        assert list(row.transitions_96) == want

    report = json.loads((out / "finediving" / "validation.json").read_text())
    counts = report["anomaly_counts"]
    assert 100 <= counts["score_rule_mismatch"] <= 140
    assert counts["judge_out_of_range"] == 2
    assert 0.04 <= (counts["t1_outside_first_half"] + counts["t2_outside_second_half"]) / 3000 <= 0.08
    assert report["dives_per_judge_count"] == {"3": 1024, "5": 607, "7": 1369}
    assert report["num_sub_actions_used"] == 29 and report["num_sub_actions_lexicon"] == 42
    # Their oddities (judges 55.5 / 45.0 / 8.9, scores no rule gives, transit frames outside the
    # clip) are reported; none is impossible, so the default (invalid_dives: error) converts all.
    assert report["invalid_dives"] == "error" and report["dropped_dives"] == []
    assert counts["judge_not_half_point"] == 1 and counts["transit_frames_invalid"] == 6

    mtl = read_dives(out / "mtl_aqa" / "dives.parquet")
    assert len(mtl) == 1412 and (mtl["split"] == "train").sum() == 1059
    assert (mtl["split"] == "test").sum() == 353
    assert mtl["frame_labels"].isna().all() and mtl["transitions_96"].isna().all()
    assert mtl["num_judges"].eq(7).all() and mtl["video"].str.fullmatch(r"\d\d").all()


def _spoil(ann, key, **changes):
    dive = ann.dives[key]
    for name, value in changes.items():
        setattr(dive, name, value)


IMPOSSIBLE_CASES = {
    # name: (changes to dive compA/1, file named, what the message says)
    "end_before_start": (dict(end_frame=880), fd.COARSE, r"ends before it starts: start_frame 900, end_frame 880"),
    "negative_score": (dict(dive_score=-12.5), fd.COARSE, r"dive_score -12\.5 \(negative_score\)"),
    "zero_difficulty": (dict(difficulty=0.0), fd.COARSE, r"difficulty 0\.0 \(difficulty_not_positive\)"),
    "four_judges": (dict(judge_scores=[7.0, 7.5, 7.5, 8.0]), fd.COARSE,
                    r"4 judges \(expected 3, 5 or 7\) \(unexpected_judge_count\)"),
    "labels_too_short": (dict(frame_labels=np.array([1] * 20 + [12] * 20 + [36] * 30)), fd.FINE,
                         r"70 labels for 75 frames \(900\.\.974\) \(frame_labels_length\)"),
}


@pytest.mark.parametrize("case", list(IMPOSSIBLE_CASES))
def test_impossible_dive_is_refused_naming_file_and_dive(case, tmp_path):
    changes, file_name, says = IMPOSSIBLE_CASES[case]
    ann = tiny_annotations()
    _spoil(ann, ("compA", 1), **changes)
    fd.write_finediving(ann, tmp_path / "ann")
    out = tmp_path / "out"
    with pytest.raises(InvalidAnnotationError) as err:
        convert_annotations(dataset="finediving", annotations_dir=tmp_path / "ann",
                            out_dir=out / "finediving", cfg={**CFG, "invalid_dives": "error"})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'ann' / file_name}: dive compA/1: "), message
    assert re.search(says, message), message
    assert message.endswith("set convert_annotations.invalid_dives: drop to leave them out")
    assert not out.exists()  # refused before anything is written


def test_several_impossible_dives_are_counted_in_one_line(tmp_path):
    ann = tiny_annotations()
    _spoil(ann, ("compA", 1), dive_score=-1.0)
    _spoil(ann, ("01", 3), difficulty=-2.0)
    fd.write_finediving(ann, tmp_path / "ann")
    with pytest.raises(InvalidAnnotationError, match=r"^[^\n]*: dive 01/3: difficulty -2\.0 .*; "
                                                     r"1 more impossible dive\(s\): compA/1; fix"):
        convert_annotations(dataset="finediving", annotations_dir=tmp_path / "ann",
                            out_dir=tmp_path / "out" / "finediving", cfg=CFG)


def test_impossible_dives_are_dropped_when_params_say_so(tmp_path, caplog):
    ann = tiny_annotations()
    _spoil(ann, ("compA", 1), end_frame=880)
    _spoil(ann, ("01", 4), judge_scores=[7.0, 7.5])
    fd.write_finediving(ann, tmp_path / "ann")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        convert_annotations(dataset="finediving", annotations_dir=tmp_path / "ann",
                            out_dir=out / "finediving", cfg={**CFG, "invalid_dives": "drop"})
    df = read_dives(out / "finediving" / "dives.parquet")
    assert df["key"].tolist() == ["01/3", "compA/0"]
    report = json.loads((out / "finediving" / "validation.json").read_text())
    assert report["invalid_dives"] == "drop" and report["num_dives"] == 2
    assert [(d["key"], d["kinds"]) for d in report["dropped_dives"]] == [
        ("compA/1", ["frame_range_invalid", "frame_labels_length"]), ("01/4", ["unexpected_judge_count"])]
    assert set(report["score_rules_by_dive"]) == {"01/3", "compA/0"}
    assert {a["key"] for a in report["anomalies"]} >= {"compA/1", "01/4"}  # still reported
    assert "left out 2 impossible dive(s)" in caplog.text and "compA/1" in caplog.text


def test_an_unknown_invalid_dives_policy_is_refused(tiny_folder, tmp_path):
    with pytest.raises(InvalidAnnotationError, match=r"convert_annotations\.invalid_dives: 'skip'"):
        convert_annotations(dataset="finediving", annotations_dir=tiny_folder,
                            out_dir=tmp_path / "out" / "finediving", cfg={**CFG, "invalid_dives": "skip"})
