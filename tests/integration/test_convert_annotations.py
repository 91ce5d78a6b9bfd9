"""The convert-annotations stage through the `aqa` command, as the DAG runs it."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from aqa.data import finediving as fd

AQA = Path(sys.executable).with_name("aqa")


def _dive(video, idx, split, segments, start):
    labels = np.concatenate([np.full(n, lab) for lab, n in segments]).astype(np.int64)
    return fd.Dive(video=video, idx=idx, split=split, action_type="107b", difficulty=3.0, dive_score=66.0,
                   judge_scores=[7.5, 7.5, 7.0], start_frame=start, end_frame=start + len(labels) - 1,
                   steps_transit_frames=np.flatnonzero(labels[1:] != labels[:-1]), frame_labels=labels)


def _run(params, tmp_path, annotations_dir, out, dataset="finediving"):
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    res = subprocess.run([str(AQA), "convert-annotations", "--params", str(params_path), "--dataset", dataset,
                          "--annotations", str(annotations_dir), "--out", str(out / dataset),
                          "--log", str(tmp_path / "log.txt")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


def test_cli_on_tiny_folder(repo_params, tmp_path):
    dives = [_dive("vidA", 0, "train", [(1, 30), (20, 30), (36, 40)], 100),
             _dive("vidA", 1, "train", [(2, 20), (12, 50), (36, 50)], 400),
             _dive("vidB", 0, "test", [(3, 35), (29, 20), (36, 45)], 7000)]
    ann = fd.FineDivingAnnotations({d.key: d for d in dives}, {1: "Forward", 2: "Back", 3: "Reverse",
                                   12: "1 Som.Pike", 20: "1 Som.Tuck", 29: "0.5 Twist", 36: "Entry"},
                                   [("vidA", 1), ("vidA", 0)], [("vidB", 0)])
    fd.write_finediving(ann, tmp_path / "Annotations")
    params = copy.deepcopy(repo_params)
    params["convert_annotations"].update(mtl_aqa_split=0, num_frames=96)
    out = _run(params, tmp_path, tmp_path / "Annotations", tmp_path / "processed")
    df = pd.read_parquet(out / "finediving" / "dives.parquet")
    assert df["key"].tolist() == ["vidA/1", "vidA/0", "vidB/0"]
    # by hand: position i reads frame floor(i * (L - 1) / 95); t = first i reaching the step - 1,
    # e.g. vidA/1 (L = 120, steps at 20 and 70): i >= 15.97 -> 16, i >= 55.88 -> 56
    assert [t.tolist() for t in df["transitions_96"]] == [[15, 55], [28, 57], [33, 52]]
    report = json.loads((out / "finediving" / "validation.json").read_text())
    assert report["num_anomalies"] == 0 and report["splits"] == {"train": 2, "test": 1}
    assert "finediving: 3 dives" in (tmp_path / "log.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["finediving"]


def test_cli_on_real_files(repo_params, finediving_annotations_dir, mtl_aqa_info_dir, tmp_path):
    params = copy.deepcopy(repo_params)
    params["convert_annotations"].update(mtl_aqa_split=0)
    out = _run(params, tmp_path, finediving_annotations_dir, tmp_path / "processed")
    _run(params, tmp_path, mtl_aqa_info_dir, tmp_path / "processed", dataset="mtl_aqa")
    for dataset, n, train in (("finediving", 3000, 2251), ("mtl_aqa", 1412, 1059)):
        report = json.loads((out / dataset / "validation.json").read_text())
        assert report["num_dives"] == n and report["splits"]["train"] == train
        assert len(pd.read_parquet(out / dataset / "dives.parquet")) == n


def test_cli_refuses_an_impossible_dive_on_one_line(repo_params, tmp_path):
    bad = _dive("vidA", 1, "test", [(2, 20), (12, 50), (36, 50)], 400)
    bad.end_frame = bad.start_frame - 1  # ends before it starts
    dives = [_dive("vidA", 0, "train", [(1, 30), (20, 30), (36, 40)], 100), bad]
    ann = fd.FineDivingAnnotations({d.key: d for d in dives}, {1: "Forward", 2: "Back", 12: "1 Som.Pike",
                                   20: "1 Som.Tuck", 36: "Entry"}, [("vidA", 0)], [("vidA", 1)])
    fd.write_finediving(ann, tmp_path / "Annotations")
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(repo_params))
    res = subprocess.run([str(AQA), "convert-annotations", "--params", str(params_path), "--dataset", "finediving",
                          "--annotations", str(tmp_path / "Annotations"), "--out", str(tmp_path / "processed")],
                         capture_output=True, text=True)
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert errors == [f"aqa convert-annotations: error: {tmp_path / 'Annotations' / fd.COARSE}: dive vidA/1: "
                      "ends before it starts: start_frame 400, end_frame 399 (frame_range_invalid), "
                      "120 labels for 0 frames (400..399) (frame_labels_length); fix the annotations, "
                      "or set convert_annotations.invalid_dives: drop to leave them out"], res.stderr
    assert not (tmp_path / "processed").exists()
