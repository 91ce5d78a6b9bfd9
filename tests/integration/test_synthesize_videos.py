"""Stage synthesize_videos end to end: real mp4s, masks and annotation files, real and sampled."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.stats import spearmanr

from aqa.data.finediving import RELEASE_FILES, AnnotationError, read_finediving
from aqa.data.mtl_aqa import read_mtl_aqa
from aqa.data.synthesize import synthesize_videos

REPO = Path(__file__).resolve().parents[2]


def run(cfg, root: Path, dataset: str = "finediving"):
    synthesize_videos(cfg, dataset=dataset, videos_dir=root / "videos", annotations_dir=root / "ann",
                      masks_dir=root / "masks")
    return read_finediving(root / "ann") if dataset == "finediving" else read_mtl_aqa(root / "ann", 0)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture()
def cfg(tiny_params):
    return dict(tiny_params["synthesize_videos"])


def test_sampled_videos_masks_and_annotations(cfg, tmp_path):
    ann = run(cfg, tmp_path)
    assert len(ann.dives) == cfg["finediving"]["num_videos"] * cfg["finediving"]["dives_per_video"]
    videos = sorted({k[0] for k in ann.dives})
    assert sorted(p.stem for p in (tmp_path / "videos").glob("*.mp4")) == videos
    assert not [p for p in (tmp_path / "videos").iterdir() if p.suffix != ".mp4"]  # no temp files left
    for video in videos:
        frames = decode(tmp_path / "videos" / f"{video}.mp4")
        assert frames.shape[1:] == (cfg["height"], cfg["width"], 3)
        with av.open(str(tmp_path / "videos" / f"{video}.mp4")) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264" and s.format.name == "yuv420p"
            assert s.average_rate == cfg["fps"]
        dives = sorted((d for d in ann.dives.values() if d.video == video), key=lambda d: d.idx)
        assert cfg["gap_frames"][0] <= dives[0].start_frame <= cfg["gap_frames"][1]
        assert len(frames) > dives[-1].end_frame
        for d in dives:
            mask_dir = tmp_path / "masks" / video / str(d.idx)
            names = sorted(p.name for p in mask_dir.iterdir())
            assert names == [f"{f:05d}.jpg" for f in range(d.start_frame, d.end_frame + 1)]
            first = np.asarray(Image.open(mask_dir / names[0]))
            assert first.ndim == 2 and first.shape == (cfg["height"], cfg["width"])
            entry = int(d.steps_transit_frames[-1]) + 1
            for name in names[:entry]:  # the diver is in view and masked before the entry
                assert (np.asarray(Image.open(mask_dir / name)) > 127).any(), name


def test_same_seed_same_output(cfg, tmp_path):
    # one process against two: each dive has its own RNG, so the order of work must not matter
    cfg["finediving"].update(num_videos=2, dives_per_video=1)
    run(cfg | {"workers": 1}, tmp_path / "a")
    run(cfg | {"workers": 2}, tmp_path / "b")
    for name in RELEASE_FILES:
        assert (tmp_path / "a" / "ann" / name).read_bytes() == (tmp_path / "b" / "ann" / name).read_bytes()
    for mp4 in (tmp_path / "a" / "videos").glob("*.mp4"):
        assert np.array_equal(decode(mp4), decode(tmp_path / "b" / "videos" / mp4.name))


def test_real_annotations_keep_their_facts(cfg, tmp_path, finediving_annotations_dir):
    cfg["finediving"].update(source_annotations=str(finediving_annotations_dir),
                             subset={"max_dives": 4, "seed": 0})
    real = read_finediving(finediving_annotations_dir)
    ann = run(cfg, tmp_path)
    assert len(ann.dives) == 4
    assert set(ann.train_keys) <= set(real.train_keys) and set(ann.test_keys) <= set(real.test_keys)
    assert ann.train_keys == [k for k in real.train_keys if k in ann.dives]
    for key, d in ann.dives.items():
        r = real.dives[key]
        assert (d.split, d.action_type, d.difficulty, d.dive_score, d.judge_scores) == \
            (r.split, r.action_type, r.difficulty, r.dive_score, r.judge_scores)
        assert np.array_equal(d.frame_labels, r.frame_labels)
        assert np.array_equal(d.steps_transit_frames, r.steps_transit_frames)
        assert d.num_frames == r.num_frames
        # the video's dives in idx order on the new timeline, each after a gap
        same_video = sorted((x for x in ann.dives.values() if x.video == d.video), key=lambda x: x.idx)
        prev_end = -1
        for x in same_video:
            assert cfg["gap_frames"][0] <= x.start_frame - prev_end - 1 <= cfg["gap_frames"][1]
            prev_end = x.end_frame
        frames = decode(tmp_path / "videos" / f"{key[0]}.mp4")
        assert len(frames) > d.end_frame
        assert len(list((tmp_path / "masks" / key[0] / str(key[1])).glob("*.jpg"))) == d.num_frames


def test_missing_annotation_file_is_named(cfg, tmp_path, finediving_annotations_dir):
    broken = tmp_path / "broken"
    shutil.copytree(finediving_annotations_dir, broken)
    os.chmod(broken, 0o755)
    (broken / "train_split.pkl").unlink()
    cfg["finediving"].update(source_annotations=str(broken))
    with pytest.raises(AnnotationError, match="train_split.pkl"):
        run(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "videos").exists() or not list((tmp_path / "out" / "videos").iterdir())


def test_cli_runs_the_stage(tiny_params, tmp_path):
    p = dict(tiny_params)
    p["synthesize_videos"]["finediving"].update(num_videos=1, dives_per_video=1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    aqa = Path(sys.executable).with_name("aqa")
    result = subprocess.run([str(aqa), "synthesize-videos", "--params", str(params), "--dataset", "finediving",
                             "--videos", str(tmp_path / "v"),
                             "--annotations", str(tmp_path / "a"), "--masks", str(tmp_path / "m")],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "v").glob("*.mp4"))) == 1
    assert len(read_finediving(tmp_path / "a").dives) == 1


def _image_stat_correlations(cfg, root):
    """|Spearman| of per-clip image statistics against the execution part of the score."""
    ann = run(cfg, root)
    stats, execution = [], []
    for video in sorted({k[0] for k in ann.dives}):
        frames = decode(root / "videos" / f"{video}.mp4")
        for d in ann.dives.values():
            if d.video == video:
                clip = frames[d.start_frame: d.end_frame + 1].astype(np.float64)
                channel = clip.mean(axis=(0, 1, 2))
                stats.append([*channel, channel.mean(), d.num_frames])
                execution.append(d.dive_score / d.difficulty)
    stats = np.array(stats)
    return {name: abs(spearmanr(stats[:, i], execution)[0])
            for i, name in enumerate(["red", "green", "blue", "brightness", "length"])}


def test_image_statistics_do_not_give_away_the_score_small(cfg, tmp_path):
    # 18 dives: only gross leaks are detectable, hence the loose bound; the slow test is the real check
    cfg["finediving"].update(num_videos=6, dives_per_video=3)
    rho = _image_stat_correlations(cfg, tmp_path)
    assert max(rho.values()) < 0.5, rho


@pytest.mark.slow
def test_image_statistics_do_not_give_away_the_score(cfg, tmp_path):
    cfg["finediving"].update(num_videos=6, dives_per_video=10)
    rho = _image_stat_correlations(cfg, tmp_path)
    assert max(rho.values()) < 0.2, rho


def _source_with(cfg, folder: Path, spoil) -> Path:
    """A sampled FineDiving source folder with one dive's record changed by `spoil(coarse, fine, key)`."""
    from aqa.data import finediving as fd
    from aqa.data.pickles import load_pickle
    from aqa.data.synth.sampler import sample_annotations

    fd.write_finediving(sample_annotations({**cfg["finediving"], "seed": cfg["seed"]}).annotations, folder)
    coarse, fine = load_pickle(folder / fd.COARSE), load_pickle(folder / fd.FINE)
    key = sorted(coarse)[1]
    spoil(coarse, fine, key)
    (folder / fd.COARSE).write_bytes(pickle.dumps(coarse))
    (folder / fd.FINE).write_bytes(pickle.dumps(fine))
    return key


@pytest.mark.parametrize("problem", ["end_before_start", "labels_not_one_per_frame"])
def test_source_dive_that_cannot_be_timed_is_refused(cfg, tmp_path, problem):
    def spoil(coarse, fine, key):
        if problem == "end_before_start":
            coarse[key]["end_frame"] = coarse[key]["start_frame"] - 10
        else:
            fine[key]["frames_labels"] = fine[key]["frames_labels"][:-5]

    source = tmp_path / "source"
    video, idx = _source_with(cfg, source, spoil)
    cfg["finediving"].update(source_annotations=str(source))
    named = "FineDiving_coarse_annotation.pkl" if problem == "end_before_start" else "FineDiving_fine-grained_annotation.pkl"
    says = "ends before it starts" if problem == "end_before_start" else "frame labels for"
    with pytest.raises(AnnotationError) as err:
        run(cfg, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{source / named}: dive {video}/{idx} ")
    assert says in message, message
    assert not (tmp_path / "out").exists()  # refused before anything is rendered


# --------------------------------------------------------------------------- MTL-AQA


def _mtl_release(folder: Path):
    from aqa.data.mtl_aqa import ANNOTATIONS
    from aqa.data.pickles import load_pickle

    return (load_pickle(folder / ANNOTATIONS), load_pickle(folder / "train_split_0.pkl"),
            load_pickle(folder / "test_split_0.pkl"))


def test_sampled_mtl_aqa_set_in_the_release_layout_converts(cfg, tiny_params, tmp_path):
    """The default MTL-AQA stand-in: videos "01".., the release's dive dictionary and split 0, which
    convert_annotations' MTL-AQA reader reads."""
    from aqa.data.annotations import convert_annotations, read_dives

    cfg["mtl_aqa"].update(num_videos=2, dives_per_video=4)
    ann = run(cfg, tmp_path, "mtl_aqa")
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == [
        "final_annotations_dict_with_dive_number.pkl", "test_split_0.pkl", "train_split_0.pkl"]
    records, train, test = _mtl_release(tmp_path / "ann")
    assert sorted(records) == [(v, i) for v in (1, 2) for i in range(1, 5)]
    assert set(train) | set(test) == set(records) and not set(train) & set(test) and test
    assert all(isinstance(k, tuple) and isinstance(k[0], int) for k in train + test)
    for key, rec in records.items():
        assert len(rec["judge_scores"]) == 7 and rec["primary_view"] == 0
        j = sorted(rec["judge_scores"])
        assert rec["final_score"] == round(rec["difficulty"] * sum(j[2:5]), 2)  # MTL-AQA's rule
    assert sorted(p.stem for p in (tmp_path / "videos").glob("*.mp4")) == ["01", "02"]
    for (video, idx), d in ann.dives.items():
        frames = decode(tmp_path / "videos" / f"{video:02d}.mp4")
        assert len(frames) > d.end_frame
        masks = sorted(p.name for p in (tmp_path / "masks" / f"{video:02d}" / str(idx)).iterdir())
        assert masks == [f"{f:05d}.jpg" for f in range(d.start_frame, d.end_frame + 1)]

    out = tmp_path / "processed" / "mtl_aqa"
    convert_annotations(dataset="mtl_aqa", annotations_dir=tmp_path / "ann", out_dir=out,
                        cfg=tiny_params["convert_annotations"])
    dives = read_dives(out / "dives.parquet")
    assert sorted(dives["key"]) == sorted(f"{v:02d}/{i}" for v, i in records)
    assert (dives["split"] == "test").sum() == len(test)
    assert dives["frame_labels"].isna().all() and dives["transitions_96"].isna().all()  # no step labels
    report = json.loads((out / "validation.json").read_text())
    assert report["dataset"] == "mtl_aqa" and report["num_anomalies"] == 0


def test_real_mtl_aqa_dives_keep_their_facts(cfg, tmp_path, mtl_aqa_info_dir):
    """Rendered for the real MTL-AQA files: every kept dive keeps its key, split, dive number, DD,
    judges, score and every other released field; only its frames move onto the new timeline."""
    cfg["mtl_aqa"].update(source_annotations=str(mtl_aqa_info_dir.parent), subset={"max_dives": 12, "seed": 0})
    run(cfg, tmp_path, "mtl_aqa")
    real, real_train, real_test = _mtl_release(mtl_aqa_info_dir)
    records, train, test = _mtl_release(tmp_path / "ann")
    assert len(records) == 12 and test
    assert train == [k for k in real_train if k in records] and test == [k for k in real_test if k in records]
    for key, rec in records.items():
        want = real[key]
        for field, value in want.items():
            if field not in ("start_frame", "end_frame"):
                assert np.array_equal(rec[field], value), (key, field)
        assert rec["end_frame"] - rec["start_frame"] == want["end_frame"] - want["start_frame"]
        frames = decode(tmp_path / "videos" / f"{key[0]:02d}.mp4")
        assert len(frames) > rec["end_frame"]


def test_mtl_aqa_source_dive_that_cannot_be_timed_is_refused(cfg, tmp_path):
    from aqa.data.mtl_aqa import write_mtl_aqa
    from aqa.data.synth.mtl_aqa import sample_mtl_aqa

    source = sample_mtl_aqa({**cfg["mtl_aqa"], "num_videos": 1, "dives_per_video": 3}, 0)
    records = {(int(v), i): dict(rec) for (v, i), rec in source.records.items()}
    records[(1, 2)]["end_frame"] = records[(1, 2)]["start_frame"] - 5
    write_mtl_aqa(records, list(records)[:2], list(records)[2:], tmp_path / "info")
    cfg["mtl_aqa"].update(source_annotations=str(tmp_path / "info"))
    with pytest.raises(AnnotationError) as err:
        run(cfg, tmp_path / "out", "mtl_aqa")
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        f"{tmp_path / 'info' / 'final_annotations_dict_with_dive_number.pkl'}: dive 01/2 "), message
    assert "ends before it starts" in message
    assert not (tmp_path / "out").exists()  # refused before anything is rendered
