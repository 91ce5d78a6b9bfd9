"""aqa.train.frames: the reference's training augmentation, its draws, the evaluation crop, and
the checks that tie the frames to the feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aqa.features import transforms as T
from aqa.features.extract import dive_job, load_views
from aqa.train.frames import (FrameDataError, FrameGeometry, draw_augmentation, load_clip, load_frame_data)
from frame_helpers import frames_dataset, write_weights

# the reference's protocol (FineDiving_TSA: Resize((200, 112)), RandomCrop(112) / CenterCrop(112))
REFERENCE = FrameGeometry(num_frames=96, snippet_length=16, snippet_stride=10, num_snippets=9, resize=(200, 112),
                          crop=112, normalization="imagenet")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, repo_params):
    return frames_dataset(tmp_path_factory.mktemp("frames"), repo_params["extract_features"], num_dives=6)


def _release_frames(folder, n=3, seed=0):
    """A few real JPEG frames at the release's size (256 high, 456 wide), with structure left/right
    and top/bottom so a wrong flip or offset shows."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        img = rng.integers(0, 256, size=(256, 456, 3), dtype=np.uint8)
        img[:, :40] = 255                                    # a bright left edge
        img[: 30 + 20 * k] //= 3                              # a dark top band, taller each frame
        path = folder / f"{k:05d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        paths.append(path)
    return paths


def _reference_transform(path, flip, top, left):
    """The reference training transform for one draw, written directly with PIL: RandomHorizontalFlip
    (on the decoded frame), Resize((200, 112)) (PIL bilinear: width 112, height 200), RandomCrop(112)."""
    img = Image.open(path).convert("RGB")
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img = img.resize((112, 200), Image.BILINEAR)
    return np.asarray(img.crop((left, top, left + 112, top + 112)))


@pytest.mark.parametrize("flip,top", [(False, 0), (True, 0), (True, 88), (False, 37), (True, 61)])
def test_augmented_clip_equals_the_reference_transform(tmp_path, flip, top):
    paths = _release_frames(tmp_path)
    clip = load_clip([paths[0], paths[1], paths[1], paths[2]], REFERENCE, flip, top, 0)   # repeats allowed
    assert clip.dtype == torch.uint8 and clip.shape == (3, 4, 112, 112)
    expected = [_reference_transform(p, flip, top, 0) for p in (paths[0], paths[1], paths[1], paths[2])]
    for t, frame in enumerate(expected):
        assert np.array_equal(clip[:, t].permute(1, 2, 0).numpy(), frame)
    # a flip really mirrors, and the offset really moves the crop
    assert not np.array_equal(_reference_transform(paths[0], not flip, top, 0), expected[0])


def test_draws_follow_the_reference_distribution():
    draws = np.array([draw_augmentation(3, 7, f"v/{i}", "query", REFERENCE) for i in range(4000)])
    flip, top, left = draws.T
    assert 0.45 < flip.mean() < 0.55
    assert (left == 0).all()                     # the squeezed width is the crop: no horizontal freedom
    assert top.min() == 0 and top.max() == 88    # RandomCrop's randint(0, 200 - 112), ends included
    counts = np.bincount(top, minlength=89)
    assert counts.min() > 0.4 * counts.mean()    # every offset drawn, none favoured
    assert 0.45 < (flip == 1)[top > 44].mean() < 0.55   # flip and offset independent


def test_draws_differ_by_role_and_epoch_and_repeat_from_the_seed():
    keys = [f"v{i // 10}/{i % 10}" for i in range(200)]
    q = [draw_augmentation(0, 0, k, "query", REFERENCE) for k in keys]
    e = [draw_augmentation(0, 0, k, "exemplar", REFERENCE) for k in keys]
    q1 = [draw_augmentation(0, 1, k, "query", REFERENCE) for k in keys]
    other_seed = [draw_augmentation(1, 0, k, "query", REFERENCE) for k in keys]
    assert sum(a != b for a, b in zip(q, e)) > 190        # query and exemplar drawn independently
    assert sum(a != b for a, b in zip(q, q1)) > 190       # new draws every epoch
    assert sum(a != b for a, b in zip(q, other_seed)) > 190
    assert q == [draw_augmentation(0, 0, k, "query", REFERENCE) for k in keys]   # reproducible


def test_training_loads_are_augmented_and_evaluation_loads_centre_cropped(data_dir):
    data = load_frame_data(data_dir["dives"], data_dir["features"], data_dir["frames"], data_dir["weights"])
    rows = np.arange(4)
    train_q = data.request(rows, seed=0, epoch=0, role="query")
    train_e = data.request(rows[::-1], seed=0, epoch=0, role="exemplar", items=rows)
    evaluation = data.request(rows)
    g = data.geometry
    assert g.resize == (40, 32) and g.crop == 32 and g.max_offset == (8, 0)
    expected_q = [draw_augmentation(0, 0, data.keys[r], "query", g) for r in rows]
    assert [tuple(a) for a in train_q.augment.tolist()] == [tuple(map(int, d)) for d in expected_q]
    # the exemplar's draw is keyed by the training item (the query), not by the exemplar's own dive
    assert train_e.augment.tolist() == [list(map(int, draw_augmentation(0, 0, data.keys[r], "exemplar", g)))
                                        for r in rows]
    assert evaluation.augment.tolist() == [[0, 4, 0]] * 4      # centre crop: round((40 - 32) / 2)
    ((q, ex),) = list(data.fetch([(train_q, train_e)]))
    assert q["frames"].shape == (4, 3, 96, 32, 32) and q["frames"].dtype == torch.uint8
    assert torch.equal(q["score"], data.score[torch.as_tensor(rows)])
    assert torch.equal(ex["score"], data.score[torch.as_tensor(rows[::-1].copy())])
    flip, top, left = map(int, train_q.augment[0])
    assert torch.equal(q["frames"][0], load_clip(data.clips[0], g, bool(flip), top, left))


def test_evaluation_frames_are_those_the_cache_was_computed_from(data_dir):
    data = load_frame_data(data_dir["dives"], data_dir["features"], data_dir["frames"], None)
    batch = data.batch(np.array([1, 3]))
    assert "pooled" not in batch and set(batch) >= {"frames", "score", "transitions", "action"}
    for i, row in enumerate([1, 3]):
        r = data.dives.iloc[row]
        job = dive_job(data_dir["frames"], r.video, r.idx, r.start_frame, r.end_frame, 96)
        views = load_views(job, data_dir["cfg"])                 # (1, T, 32, 32, 3), the cache's decode
        assert torch.equal(batch["frames"][i], torch.from_numpy(views[0]).permute(3, 0, 1, 2))


def test_worker_processes_give_the_same_batches(data_dir):
    """Decoding in 2 worker processes changes nothing: num_workers is not part of the provenance."""
    def batches(workers):
        data = load_frame_data(data_dir["dives"], data_dir["features"], data_dir["frames"], None,
                               num_workers=workers)
        loads = [(data.request(np.array([i, i + 1]), seed=5, epoch=2, role="query"),
                  data.request(np.array([i + 2]), seed=5, epoch=2, role="exemplar", items=np.array([i])))
                 for i in range(3)]
        return list(data.fetch(loads))

    inline, workers = batches(0), batches(2)
    assert len(inline) == len(workers) == 3
    for a, b in zip(inline, workers):
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            for k in x:   # judges are NaN-padded
                torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, equal_nan=True)


def test_frames_changed_since_the_cache_are_refused(data_dir, tmp_path):
    import shutil

    frames = tmp_path / "frames"
    shutil.copytree(data_dir["frames"], frames)
    row = data_dir["rows"][2]
    victim = frames / row["video"] / str(row["idx"]) / f"{row['start_frame']:05d}.jpg"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(victim)
    with pytest.raises(FrameDataError, match=f"dive {row['key']}: its frames .* not those the feature cache"):
        load_frame_data(data_dir["dives"], data_dir["features"], frames, None)


def test_weights_other_than_the_caches_are_refused(data_dir, tmp_path):
    other = write_weights(tmp_path, seed=1)
    with pytest.raises(FrameDataError, match="not the weights the feature cache"):
        load_frame_data(data_dir["dives"], data_dir["features"], data_dir["frames"], other)
    with pytest.raises(FrameDataError, match="frames folder is needed"):
        load_frame_data(data_dir["dives"], data_dir["features"], None, None)


def test_centre_crop_is_the_caches(tmp_path):
    paths = _release_frames(tmp_path, n=1)
    top, left = T.center_crop_box(200, 112, 112)
    clip = load_clip(paths, REFERENCE, False, top, left)
    frame = T.load_resized(paths[0], (200, 112))[top:top + 112, left:left + 112]
    assert (top, left) == (44, 0) and np.array_equal(clip[:, 0].permute(1, 2, 0).numpy(), frame)
