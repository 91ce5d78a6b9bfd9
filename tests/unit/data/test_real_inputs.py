"""Real data first-class: the links DVC depends on (aqa.data.real_inputs, `aqa check-params
--inputs`), the params check that real frames come with their annotations, and synthesize_videos
rendering nothing when a dataset's real frames are given."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from aqa.data import finediving as fd
from aqa.data.annotations import convert_annotations, read_dives
from aqa.data.mtl_aqa import read_mtl_aqa
from aqa.data.pickles import load_pickle
from aqa.data.real_inputs import RealInputsError, link_real_inputs
from aqa.data.synth.sampler import sample_annotations
from aqa.data.synthesize import synthesize_videos
from aqa.params import CHECKED_STAMP, ParamsError, check_params, validate_params


def _real(params: dict, dataset: str, frames, annotations) -> dict:
    p = copy.deepcopy(params)
    p["extract_frames"]["frames_root"][dataset] = None if frames is None else str(frames)
    p["synthesize_videos"][dataset]["source_annotations"] = None if annotations is None else str(annotations)
    return p


def test_links_point_at_the_real_folders_or_at_an_empty_one(tmp_path, monkeypatch, repo_params):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "frames").mkdir()
    (tmp_path / "ann").mkdir()
    (tmp_path / "masks").mkdir()
    p = _real(repo_params, "finediving", "frames", "ann")   # relative: read from the working directory
    p["extract_frames"]["masks_root"]["finediving"] = "masks"
    made = link_real_inputs(p, ".aqa/inputs")
    inputs = tmp_path / ".aqa/inputs"
    assert (inputs / "finediving/frames").resolve() == tmp_path / "frames"
    assert (inputs / "finediving/masks").resolve() == tmp_path / "masks"
    assert (inputs / "finediving/annotations").resolve() == tmp_path / "ann"
    assert os.path.isabs(os.readlink(inputs / "finediving/frames"))
    for kind in ("frames", "masks", "annotations"):   # MTL-AQA: stand-in, so the empty folder
        link = inputs / "mtl_aqa" / kind
        assert link.is_symlink() and link.resolve() == (inputs / "none").resolve()
        assert list(link.iterdir()) == []
    assert len(made) == 6
    # a dataset that does not run links to the empty folder, whatever params name
    p["datasets"] = {"run": ["mtl_aqa"], "variants": {"finediving": [], "mtl_aqa": ["i3d_mlp"]}}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    link_real_inputs(p, ".aqa/inputs")
    assert (inputs / "finediving/frames").resolve() == (inputs / "none").resolve()
    link_real_inputs(_real(repo_params, "finediving", "frames", "ann"), ".aqa/inputs")
    # back to the stand-in: the links follow params
    link_real_inputs(_real(repo_params, "finediving", None, None), ".aqa/inputs")
    assert (inputs / "finediving/frames").resolve() == (inputs / "none").resolve()
    assert (tmp_path / "frames").is_dir()   # the real folder is never touched


def test_a_folder_in_place_of_a_link_is_refused_not_removed(tmp_path, repo_params):
    inputs = tmp_path / "inputs"
    (inputs / "finediving/frames").mkdir(parents=True)
    (inputs / "finediving/frames/keep.jpg").write_bytes(b"x")
    with pytest.raises(RealInputsError, match=r"finediving/frames: expected a link made by aqa check-params"):
        link_real_inputs(repo_params, inputs)
    assert (inputs / "finediving/frames/keep.jpg").read_bytes() == b"x"


def test_check_params_links_only_when_params_pass(tmp_path, monkeypatch, repo_params):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ann").mkdir()
    (tmp_path / "frames").mkdir()
    p = _real(repo_params, "finediving", "frames", "ann")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    check_params("params.yaml", "stamp", ".aqa/inputs")
    assert Path("stamp").read_text() == CHECKED_STAMP
    assert Path(".aqa/inputs/finediving/frames").resolve() == tmp_path / "frames"
    # a real folder that is not there: refused before any link moves
    p["synthesize_videos"]["finediving"]["source_annotations"] = "gone"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    with pytest.raises(ParamsError, match="source_annotations = 'gone': does not exist"):
        check_params("params.yaml", "stamp", ".aqa/inputs")
    assert not Path("stamp").exists()
    assert Path(".aqa/inputs/finediving/annotations").resolve() == tmp_path / "ann"


def test_real_frames_need_real_annotations(repo_params):
    p = _real(repo_params, "finediving", "/data/frames", None)
    with pytest.raises(ParamsError, match=r"extract_frames.frames_root.finediving is set but synthesize_videos."
                                          r"finediving.source_annotations is null"):
        validate_params(p)
    validate_params(_real(repo_params, "finediving", "/data/frames", "/data/ann"))
    # a dataset that does not run is not checked
    p = _real(repo_params, "mtl_aqa", "/data/frames", None)
    p["datasets"] = {"run": ["finediving"], "variants": {**p["datasets"]["variants"], "mtl_aqa": []},
                     "dn_only": {**p["datasets"]["dn_only"], "mtl_aqa": []}}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    validate_params(p)


@pytest.fixture()
def release(tmp_path, repo_params) -> Path:
    """A FineDiving release folder (sampled, so on real frame numbers far from 0) with one dive
    whose range is impossible, as the real files can have."""
    cfg = {**repo_params["synthesize_videos"]["finediving"], "num_videos": 2, "dives_per_video": 4, "seed": 3}
    ann = sample_annotations(cfg).annotations
    folder = tmp_path / "release"
    fd.write_finediving(ann, folder)
    return folder


def _synthesize(cfg, out: Path, dataset="finediving", real_frames=True):
    synthesize_videos(cfg, dataset=dataset, videos_dir=out / "videos", annotations_dir=out / "ann",
                      masks_dir=out / "masks", real_frames=real_frames)


def test_real_frames_render_nothing_and_keep_the_frame_numbers(tmp_path, repo_params, release):
    cfg = copy.deepcopy(repo_params["synthesize_videos"])
    cfg["finediving"]["source_annotations"] = str(release)
    coarse = load_pickle(release / fd.COARSE)
    bad = sorted(coarse)[1]
    coarse[bad]["end_frame"] = coarse[bad]["start_frame"] - 5   # rendering would refuse it
    (release / fd.COARSE).write_bytes(pickle.dumps(coarse))
    out = tmp_path / "out"
    _synthesize(cfg, out)
    assert list((out / "videos").iterdir()) == [] and list((out / "masks").iterdir()) == []
    real, written = fd.read_finediving(release), fd.read_finediving(out / "ann")
    assert written.train_keys == real.train_keys and written.test_keys == real.test_keys
    for key, d in real.dives.items():
        w = written.dives[key]
        assert (w.start_frame, w.end_frame, w.dive_score, w.judge_scores) == \
            (d.start_frame, d.end_frame, d.dive_score, d.judge_scores)
        assert np.array_equal(w.frame_labels, d.frame_labels)
    # the impossible dive is left to convert_annotations, which drops it when params say so
    conv = dict(num_frames=96, invalid_dives="drop", mtl_aqa_split=0)
    convert_annotations(dataset="finediving", annotations_dir=out / "ann", out_dir=tmp_path / "conv", cfg=conv)
    assert f"{bad[0]}/{bad[1]}" not in set(read_dives(tmp_path / "conv/dives.parquet")["key"])
    # the subset applies to the real dives too
    cfg["finediving"]["subset"] = {"max_dives": 3, "seed": 0}
    _synthesize(cfg, tmp_path / "sub")
    sub = fd.read_finediving(tmp_path / "sub/ann")
    assert len(sub.dives) == 3 and all(sub.dives[k].start_frame == real.dives[k].start_frame for k in sub.dives)


def test_switching_to_real_frames_empties_the_stand_in_folders(tmp_path, repo_params, release):
    cfg = copy.deepcopy(repo_params["synthesize_videos"])
    out = tmp_path / "out"
    for name in ("videos", "masks"):   # a stand-in run left footage there
        (out / name / "01").mkdir(parents=True)
        (out / name / "01" / "x").write_bytes(b"stand-in")
    cfg["finediving"]["source_annotations"] = str(release)
    _synthesize(cfg, out)
    assert list((out / "videos").iterdir()) == [] and list((out / "masks").iterdir()) == []


def test_the_real_finediving_files_keep_every_dive(tmp_path, repo_params, finediving_annotations_dir):
    cfg = copy.deepcopy(repo_params["synthesize_videos"])
    cfg["finediving"]["source_annotations"] = str(finediving_annotations_dir)
    _synthesize(cfg, tmp_path)
    real, written = fd.read_finediving(finediving_annotations_dir), fd.read_finediving(tmp_path / "ann")
    assert len(written.dives) == len(real.dives) == 3000
    assert {k: (d.start_frame, d.end_frame) for k, d in written.dives.items()} == \
        {k: (d.start_frame, d.end_frame) for k, d in real.dives.items()}
    assert list((tmp_path / "videos").iterdir()) == []


def test_the_real_mtl_aqa_files_keep_every_dive(tmp_path, repo_params, mtl_aqa_info_dir):
    cfg = copy.deepcopy(repo_params["synthesize_videos"])
    cfg["mtl_aqa"]["source_annotations"] = str(mtl_aqa_info_dir)
    _synthesize(cfg, tmp_path, dataset="mtl_aqa")
    real, written = read_mtl_aqa(mtl_aqa_info_dir, 0), read_mtl_aqa(tmp_path / "ann", 0)
    assert len(written.dives) == len(real.dives) == 1412
    assert written.dives == real.dives   # every field, frame numbers included
    assert (written.train_keys, written.test_keys) == (real.train_keys, real.test_keys)
    assert list((tmp_path / "videos").iterdir()) == [] and list((tmp_path / "masks").iterdir()) == []
