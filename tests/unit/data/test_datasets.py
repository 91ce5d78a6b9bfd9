"""The datasets the pipeline knows, their DVC stage groups, and the frame ranges of both release layouts."""

import numpy as np
import pytest

from aqa.data import finediving as fd
from aqa.data.datasets import DATASETS, DatasetError, DiveRange, dataset_spec, dvc_stage, read_ranges
from aqa.data.mtl_aqa import write_mtl_aqa


def test_known_datasets_and_what_they_annotate():
    assert list(DATASETS) == ["finediving", "mtl_aqa"]
    assert dataset_spec("finediving").step_labels and not dataset_spec("mtl_aqa").step_labels
    with pytest.raises(DatasetError, match="unknown dataset 'ucf'; known: finediving, mtl_aqa"):
        dataset_spec("ucf")


def test_each_dataset_has_its_own_group_of_model_stages():
    assert dvc_stage("train", "finediving") == "train" and dvc_stage("evaluate", "finediving") == "evaluate"
    assert dvc_stage("train", "mtl_aqa") == "train_mtl_aqa"
    assert dvc_stage("train", "finediving", dn_only=True) == "train_dn"       # datasets.dn_only's groups
    assert dvc_stage("evaluate", "mtl_aqa", dn_only=True) == "evaluate_dn_mtl_aqa"


def test_frame_ranges_of_both_release_layouts(tmp_path):
    labels = np.array([1] * 5 + [12] * 5 + [36] * 5)
    dive = fd.Dive("compA", 4, "train", "107b", 3.0, 60.0, [7.0, 7.0, 6.0], 20, 34,
                   np.array([4, 9]), labels)
    fd.write_finediving(fd.FineDivingAnnotations({dive.key: dive}, {1: "Forward", 12: "1 Som.Pike", 36: "Entry"},
                                                 [dive.key], []), tmp_path / "fd")
    assert read_ranges("finediving", tmp_path / "fd") == [DiveRange("compA", 4, 20, 34)]
    write_mtl_aqa({(7, 2): {"start_frame": 100, "end_frame": 190, "difficulty": 3.2, "final_score": 80.0,
                            "judge_scores": [8.0] * 7, "dive_number": "407C"}}, [(7, 2)], [], tmp_path / "mtl")
    assert read_ranges("mtl_aqa", tmp_path / "mtl") == [DiveRange("07", 2, 100, 190)]
    assert read_ranges("mtl_aqa", tmp_path / "mtl")[0].num_frames == 91
