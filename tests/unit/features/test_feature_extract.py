"""extract_features bookkeeping with a fast fake backbone: frames, batching, resume, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from feature_helpers import FakeBackbone, cache_bytes, write_frames

from aqa.data.protocol import sample_frame_numbers
from aqa.features import extract as X
from aqa.features import transforms as T
from aqa.errors import AqaError
from aqa.features.cache import FeatureCache
from aqa.models.i3d_weights import WeightsError


@pytest.fixture()
def fake(monkeypatch, tmp_path, fetched_weights):
    """Real weights (verified and loaded as always), a fake network built from them; returns
    (fake, weights path): the fake's .calls list counts forward passes."""
    model = FakeBackbone()
    monkeypatch.setattr(X, "load_backbone", lambda weights, device: model)
    shutil.copytree(fetched_weights.parent, tmp_path / "i3d")
    return model, tmp_path / "i3d" / fetched_weights.name


def test_dive_job_picks_protocol_frames(tiny_dives):
    frames, _, dives = tiny_dives
    video, idx, start, end = dives[1]
    job = X.dive_job(frames, video, idx, start, end, 96)
    assert len(job.frame_paths) == 96
    assert [int(p.stem) for p in job.frame_paths] == sample_frame_numbers(start, end, 96).tolist()
    assert job.frame_paths[0].name == f"{start:05d}.jpg" and job.frame_paths[-1].name == f"{end:05d}.jpg"


def test_missing_frames_are_named(tiny_dives):
    frames, _, dives = tiny_dives
    video, idx, start, end = dives[0]
    (frames / video / str(idx) / f"{start + 5:05d}.jpg").unlink()
    with pytest.raises(X.FeatureExtractionError, match=rf"dive 01/1: 1 frame\(s\) missing .*\[{start + 5}\]"):
        X.dive_job(frames, video, idx, start, end, 96)
    with pytest.raises(X.FeatureExtractionError, match="dive 01/1: frames in .* run 100..119, annotations say 100..125"):
        X.dive_job(frames, video, idx, start, end + 6, 96)
    with pytest.raises(X.FeatureExtractionError, match="dive 03/4: frame folder .* does not exist"):
        X.dive_job(frames, "03", 4, 0, 10, 96)


def test_batches_span_dives_and_outputs_land_on_the_right_dive(tiny_dives, feature_cfg, tmp_path):
    frames, _, dives = tiny_dives
    cfg = dict(feature_cfg, batch_snippets=7, flip_view=True, workers=2, dtype="float32")
    jobs = [X.dive_job(frames, v, i, s, e, 96) for v, i, s, e in dives]
    model = FakeBackbone()
    out = tmp_path / "cache"
    X.prepare_out_dir(out, X.build_manifest(cfg, "ab" * 32))
    stats = X.run_extraction(jobs, model, cfg, out, torch.device("cpu"), progress=False)
    assert stats.dives == 3 and stats.snippets == 54
    assert model.calls == [7] * 7 + [5]  # 54 snippets in batches of 7, crossing dive borders
    cache = FeatureCache(out)
    for job in jobs:
        clips = X.load_snippets(job, cfg)  # (18, 3, 16, 112, 112) uint8
        expect = T.normalize(clips, cfg["normalization"]).mean(dim=(2, 3, 4)).numpy()  # (18, 3)
        pooled, maps = cache.load(job.video, job.idx)
        assert pooled.shape == (2, 9, 1024) and maps.shape == (2, 9, 1024, 4, 4)
        np.testing.assert_allclose(pooled[:, :, :3].reshape(18, 3), expect, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(maps[..., 2, 3], pooled, rtol=1e-6)
        # view 1 is the mirror image of view 0 (the frames' crop is the full width)
        assert torch.equal(clips[9:], clips[:9].flip(-1)) and not torch.equal(clips[9:], clips[:9])


def test_extract_features_resumes_and_recomputes_on_changed_params(tiny_dives, feature_cfg, tmp_path, fake):
    model, weights = fake
    frames, parquet, dives = tiny_dives
    out = tmp_path / "cache"
    cfg = dict(feature_cfg, batch_snippets=9)

    X.extract_features(frames_root=frames, dives_parquet=parquet, weights_path=weights, out_dir=out, cfg=cfg)
    per_dive = 18 if cfg["flip_view"] else 9
    assert sum(model.calls) == 3 * per_dive
    cache = FeatureCache(out)
    assert all(cache.has(v, i) for v, i, _, _ in dives)
    assert "frames_root" not in cache.manifest  # each dive's frames.sha256 says which frames, not a path
    assert cache.manifest["protocol"]["resize"] == [200, 112]
    kept = out / "01" / "2" / "pooled.npy"
    mtime = kept.stat().st_mtime_ns

    # an interrupted run: one dive gone, a stale temporary left behind
    shutil.rmtree(out / "02" / "7")
    (out / "02" / ".7.xyz.tmp").mkdir()
    model.calls.clear()
    X.extract_features(frames_root=frames, dives_parquet=parquet, weights_path=weights, out_dir=out, cfg=cfg)
    assert sum(model.calls) == per_dive  # only the missing dive
    assert kept.stat().st_mtime_ns == mtime and not (out / "02" / ".7.xyz.tmp").exists()

    model.calls.clear()
    X.extract_features(frames_root=frames, dives_parquet=parquet, weights_path=weights, out_dir=out, cfg=cfg)
    assert model.calls == []  # everything cached

    # a protocol change invalidates the cache: all dives recomputed
    X.extract_features(frames_root=frames, dives_parquet=parquet, weights_path=weights, out_dir=out,
                       cfg=dict(cfg, normalization="i3d"))
    assert sum(model.calls) == 3 * per_dive
    assert FeatureCache(out).manifest["protocol"]["normalization"] == "i3d"


def test_changed_frames_are_recomputed_and_change_the_fingerprint(tiny_dives, feature_cfg, tmp_path, fake):
    model, weights = fake
    frames, parquet, _ = tiny_dives
    out = tmp_path / "cache"
    cfg = dict(feature_cfg, batch_snippets=9)
    X.extract_features(frames_root=frames, dives_parquet=parquet, weights_path=weights, out_dir=out, cfg=cfg)
    before = FeatureCache(out).fingerprint
    per_dive = 18 if cfg["flip_view"] else 9

    # frames re-rendered or re-extracted under the same manifest: that dive's features are stale
    first = sorted((frames / "01" / "1").glob("*.jpg"))[0]
    first.write_bytes(sorted((frames / "01" / "2").glob("*.jpg"))[0].read_bytes())
    model.calls.clear()
    X.extract_features(frames_root=frames, dives_parquet=parquet, weights_path=weights, out_dir=out, cfg=cfg)
    assert sum(model.calls) == per_dive  # only dive 01/1
    assert FeatureCache(out).fingerprint != before


def test_bad_frames_fail_before_any_forward(tiny_dives, feature_cfg, tmp_path, fake):
    model, weights = fake
    frames, parquet, _ = tiny_dives
    (frames / "02" / "7" / "00022.jpg").unlink()  # last frame of dive 02/7
    with pytest.raises(X.FeatureExtractionError, match="dive 02/7"):
        X.extract_features(frames_root=frames, dives_parquet=parquet, weights_path=weights,
                           out_dir=tmp_path / "cache", cfg=feature_cfg)
    assert model.calls == []


# ----------------------------------------------------------------------------- validate before destroying

@pytest.fixture()
def finished(tiny_dives, feature_cfg, tmp_path, fake):
    """A finished cache of the three tiny dives: (model, weights, frames, parquet, out, cfg, bytes)."""
    model, weights = fake
    frames, parquet, _ = tiny_dives
    out = tmp_path / "cache"
    cfg = dict(feature_cfg, batch_snippets=9)
    X.extract_features(frames_root=frames, dives_parquet=parquet, weights_path=weights, out_dir=out, cfg=cfg)
    model.calls.clear()
    return model, weights, frames, parquet, out, cfg, cache_bytes(out)


def _extract(finished, **over):
    _, weights, frames, parquet, out, cfg, _ = finished
    args = dict(frames_root=frames, dives_parquet=parquet, weights_path=weights, out_dir=out, cfg=cfg)
    X.extract_features(**{**args, **over})


def _assert_untouched(finished):
    model, *_, out, _, before = finished
    assert model.calls == []
    assert cache_bytes(out) == before  # every cached file still there, same bytes


def test_damaged_weights_are_refused_before_the_cache_is_touched(finished):
    weights = finished[1]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = bytes(16)  # inside a tensor: still loads
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"{weights}: sha256 .* does not match .*manifest.json"):
        _extract(finished)
    _assert_untouched(finished)


@pytest.mark.parametrize("over, key", [
    ({"crop": 300}, "extract_features.crop"),
    ({"resize": [100, 80]}, "extract_features.crop"),
    ({"num_snippets": 12}, "extract_features.num_snippets"),
])
def test_impossible_params_are_refused_before_the_cache_is_touched(finished, over, key):
    with pytest.raises(X.FeatureExtractionError, match=key) as err:
        _extract(finished, cfg=dict(finished[5], **over))
    assert "\n" not in str(err.value) and isinstance(err.value, AqaError)
    _assert_untouched(finished)


def test_missing_frames_are_refused_before_a_changed_manifest_clears_the_cache(finished):
    frames = finished[2]
    shutil.rmtree(frames / "02" / "7")
    with pytest.raises(X.FeatureExtractionError, match="dive 02/7: frame folder .* does not exist"):
        _extract(finished, cfg=dict(finished[5], normalization="i3d"))  # would clear every dive
    _assert_untouched(finished)


def test_unreadable_annotations_are_refused_before_the_cache_is_touched(finished, tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(Exception, match="bad.parquet"):
        _extract(finished, dives_parquet=bad, cfg=dict(finished[5], normalization="i3d"))
    _assert_untouched(finished)


# ----------------------------------------------------------------------------- machine independence

def test_a_moved_cache_is_reused_whole_with_the_same_manifest_and_fingerprint(finished, tmp_path):
    model, weights, frames, parquet, out, cfg, before = finished
    fingerprint = FeatureCache(out).fingerprint
    moved = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(frames, moved / "frames")
    shutil.copytree(out, moved / "cache")
    shutil.copytree(weights.parent, moved / "i3d")
    X.extract_features(frames_root=moved / "frames", dives_parquet=parquet,
                       weights_path=moved / "i3d" / weights.name, out_dir=moved / "cache", cfg=cfg)
    assert model.calls == []  # every dive skipped
    assert cache_bytes(moved / "cache") == before
    assert FeatureCache(moved / "cache").fingerprint == fingerprint
    # nothing in the cache names a folder, a host or a time
    for name, data in before.items():
        assert str(tmp_path).encode() not in data, name


def test_a_cache_from_before_frames_root_was_dropped_is_kept(finished):
    model, *_, out, cfg, before = finished
    manifest = out / "manifest.json"
    legacy = dict(json.loads(manifest.read_text()), frames_root="/some/old/checkout/frames")
    manifest.write_text(json.dumps(legacy))
    _extract(finished)
    assert model.calls == []  # each dive's frames.sha256 already proved its frames
    assert cache_bytes(out) == before


# ----------------------------------------------------------------------------- damaged cache files

def test_damaged_dive_arrays_are_recomputed_alone(finished):
    model, *_, out, cfg, before = finished
    per_dive = 18 if cfg["flip_view"] else 9
    maps = out / "01" / "1" / "maps.npy"
    maps.write_bytes(maps.read_bytes()[:1000])  # truncated (a full disk, a killed copy)
    (out / "02" / "7" / "pooled.npy").write_bytes(b"garbage" * 100)
    kept = out / "01" / "2" / "pooled.npy"
    mtime = kept.stat().st_mtime_ns
    _extract(finished)
    assert sum(model.calls) == 2 * per_dive  # only the two damaged dives
    assert kept.stat().st_mtime_ns == mtime
    assert cache_bytes(out) == before  # recomputed to the same bytes


def test_short_clip_decodes_repeated_frames(tmp_path, feature_cfg):
    write_frames(tmp_path / "v" / "0", 0, 4)  # 5 frames for 96 positions
    job = X.dive_job(tmp_path, "v", 0, 0, 4, 96)
    views = X.load_views(job, dict(feature_cfg, flip_view=False))
    assert views.shape == (1, 96, 112, 112, 3)
    np.testing.assert_array_equal(views[0, 0], views[0, 1])  # linspace repeats frame 0


def test_autocast_precision_per_device_and_in_the_manifest(feature_cfg, tiny_dives):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert X.compute_dtype(cpu, False) == torch.float32
    assert X.compute_dtype(cuda, False) == torch.float32
    assert X.compute_dtype(cuda, True) == torch.float16
    assert X.compute_dtype(cpu, True) in (torch.bfloat16, torch.float32)
    exact = X.build_manifest(dict(feature_cfg, autocast=False), "ab" * 32, cpu)
    assert exact["compute_dtype"] == "float32"
    mixed = X.build_manifest(dict(feature_cfg, autocast=True), "ab" * 32, cuda)
    assert mixed["compute_dtype"] == "float16" and mixed != exact  # a cache in another precision is redone


@pytest.mark.skipif(X.compute_dtype(torch.device("cpu"), True) != torch.bfloat16,
                    reason="this CPU's oneDNN has no bfloat16 support")
def test_bfloat16_features_match_float32():
    from aqa.models.i3d import InceptionI3d

    torch.manual_seed(0)
    model = InceptionI3d().eval()
    clips = torch.randint(0, 256, (2, 3, 16, 112, 112), dtype=torch.uint8)
    cpu = torch.device("cpu")
    p32, m32 = X.forward_snippets(model, clips, "imagenet", cpu, torch.float32)
    p16, m16 = X.forward_snippets(model, clips, "imagenet", cpu, torch.bfloat16)
    assert p16.dtype == np.float32 and p16.shape == p32.shape and m16.shape == m32.shape
    cos = (p32 * p16).sum(1) / np.linalg.norm(p32, axis=1) / np.linalg.norm(p16, axis=1)
    assert cos.min() > 0.999
    assert not np.array_equal(p32, p16)  # it did run in the lower precision
