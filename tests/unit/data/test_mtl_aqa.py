import os
import pickle

import numpy as np
import pytest

from aqa.data.mtl_aqa import ANNOTATIONS, MtlAqaError, read_mtl_aqa, video_name
from aqa.data.pickles import UnsafePickleError


def _dive(start, score=88.0):
    return {"primary_view": 0, "start_frame": start, "end_frame": start + 90, "position": 2,
            "difficulty": 3.2, "armstand": 0, "rotation_type": 2, "ss_no": 7, "tw_no": 0,
            "final_score": score, "judge_scores": np.array([9.5, 9.0, 9.5, 9.0, 8.5, 9.5, 8.5]),
            "dive_number": "407C"}


def write_info(folder, dives, train, test, split=0):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ANNOTATIONS).write_bytes(pickle.dumps(dives))
    (folder / f"train_split_{split}.pkl").write_bytes(pickle.dumps(train))
    (folder / f"test_split_{split}.pkl").write_bytes(pickle.dumps(test))
    return folder


def test_reads_dives_and_split(tmp_path):
    info = write_info(tmp_path, {(1, 1): _dive(100), (1, 2): _dive(300), (12, 5): _dive(50)},
                      [(12, 5), (1, 1)], [(1, 2)], split=3)
    ann = read_mtl_aqa(info, 3)
    assert ann.train_keys == [(12, 5), (1, 1)] and ann.test_keys == [(1, 2)]
    d = ann.dives[(1, 1)]
    assert d.dive_number == "407C" and d.final_score == 88.0 and len(d.judge_scores) == 7
    assert (d.start_frame, d.end_frame) == (100, 190)
    assert video_name(1) == "01" and video_name(12) == "12"


def test_missing_split_file_is_named(tmp_path):
    info = write_info(tmp_path, {(1, 1): _dive(100)}, [(1, 1)], [])
    with pytest.raises(MtlAqaError, match="train_split_2.pkl"):
        read_mtl_aqa(info, 2)


def test_missing_field_is_named(tmp_path):
    d = _dive(100)
    del d["final_score"]
    info = write_info(tmp_path, {(1, 1): d}, [(1, 1)], [])
    with pytest.raises(MtlAqaError, match=r"\(1, 1\) lacks field\(s\) final_score"):
        read_mtl_aqa(info, 0)


def test_bad_split_entry(tmp_path):
    info = write_info(tmp_path, {(1, 1): _dive(100)}, ["nope"], [])
    with pytest.raises(MtlAqaError, match="train_split_0.pkl"):
        read_mtl_aqa(info, 0)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unsafe_pickle_refused(tmp_path):
    info = write_info(tmp_path, {(1, 1): _dive(100)}, [(1, 1)], [])
    (info / "test_split_0.pkl").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(UnsafePickleError, match="test_split_0.pkl"):
        read_mtl_aqa(info, 0)


def test_real_mtl_aqa(mtl_aqa_info_dir):
    ann = read_mtl_aqa(mtl_aqa_info_dir, 0)
    assert len(ann.dives) == 1412
    assert (len(ann.train_keys), len(ann.test_keys)) == (1059, 353)
    assert not set(ann.train_keys) & set(ann.test_keys)
    assert all(len(d.judge_scores) == 7 for d in ann.dives.values())


def test_written_release_reads_back_and_is_deterministic(tmp_path):
    from aqa.data.mtl_aqa import read_mtl_records, write_mtl_aqa

    records = {(3, 1): _dive(100), (1, 2): _dive(300, score=70.4)}
    write_mtl_aqa(records, [(3, 1)], [(1, 2)], tmp_path / "a")
    write_mtl_aqa(records, [(3, 1)], [(1, 2)], tmp_path / "b")
    for name in (ANNOTATIONS, "train_split_0.pkl", "test_split_0.pkl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ann = read_mtl_aqa(tmp_path / "a", 0)
    assert ann.train_keys == [(3, 1)] and ann.test_keys == [(1, 2)]
    assert ann.dives[(1, 2)].final_score == 70.4
    back = read_mtl_records(tmp_path / "a")
    assert list(back) == [(3, 1), (1, 2)] and set(back[(3, 1)]) == set(_dive(0))  # every field, release order


def test_info_folder_or_the_folder_holding_it(tmp_path):
    from aqa.data.mtl_aqa import resolve_info_dir

    info = write_info(tmp_path / "MTL-AQA" / "info", {(1, 1): _dive(100)}, [(1, 1)], [])
    assert resolve_info_dir(tmp_path / "MTL-AQA") == info
    assert resolve_info_dir(info) == info
    assert resolve_info_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # the reader then names what is missing
