"""FineParser's cache additions on dives the stand-in renderer draws (real mp4, real frames and masks,
a real I3D with random weights): shapes, dtypes and values of mixed4f / sve / masks, pooled bytes
unchanged, the extension path, the manifest's per-array entries, and the error paths."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from feature_helpers import cache_bytes, write_dives
from PIL import Image

from aqa.data import masks as MK
from aqa.data.frames import extract_frames
from aqa.data.synthesize import synthesize_videos
from aqa.features import additions as A
from aqa.features import extract as X
from aqa.features.cache import FeatureCache, FeatureCacheError
from aqa.models.i3d_weights import load_verified_weights
from aqa.models.sve_backbone import frame_features, i3d2d_from_state_dict


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, repo_params):
    """One small stand-in video (3 dives, 64 x 112) cut into frames, with its masks and dives.parquet."""
    from aqa.data.datasets import read_ranges

    root = tmp_path_factory.mktemp("additions")
    cfg = copy.deepcopy(repo_params["synthesize_videos"])
    cfg.update(height=64, width=112, workers=1)
    cfg["finediving"].update(num_videos=1, dives_per_video=3)
    synthesize_videos(cfg, dataset="finediving", videos_dir=root / "videos", annotations_dir=root / "ann",
                      masks_dir=root / "masks")
    extract_frames(sorted((root / "videos").glob("*.mp4")), dataset="finediving", annotations_dir=root / "ann",
                   frames_root=root / "frames", cfg={**repo_params["extract_frames"], "height": 64, "workers": 1})
    ranges = sorted(read_ranges("finediving", root / "ann"), key=lambda r: r.idx)[:2]
    dives = [(r.video, r.idx, r.start_frame, r.end_frame) for r in ranges]
    return root, write_dives(root / "dives.parquet", dives), dives


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from feature_helpers import write_fetched_weights

    return write_fetched_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def cfg(repo_params):
    # the default's autocast (bfloat16 on this CPU: about twice float32's speed)
    # with FineParser's additions for FineDiving (off in the built-in default: `make fineparser`)
    return dict(repo_params["extract_features"], workers=1, batch_snippets=9, flip_view=True,
                fineparser={"finediving": True, "mtl_aqa": False})


def _run(rendered, weights, cfg, out, dataset="finediving", masks=True):
    root, parquet, _ = rendered
    X.extract_features(frames_root=root / "frames", dives_parquet=parquet, weights_path=weights, out_dir=out,
                       cfg=cfg, dataset=dataset, masks_root=root / "masks" if masks else None)


@pytest.fixture(scope="module")
def plain(rendered, weights, cfg, tmp_path_factory):
    """The cache as before FineParser (no additions: MTL-AQA's default)."""
    out = tmp_path_factory.mktemp("plain") / "i3d"
    _run(rendered, weights, cfg, out, dataset="mtl_aqa")
    return out


@pytest.fixture(scope="module")
def full(rendered, weights, cfg, tmp_path_factory):
    """The cache computed whole with the additions (FineDiving's default)."""
    out = tmp_path_factory.mktemp("full") / "i3d"
    _run(rendered, weights, cfg, out)
    return out


def _rel(a, b) -> float:
    """Largest difference relative to the largest value."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def _base_files(root):
    return {k: v for k, v in cache_bytes(root).items()
            if k.endswith(("pooled.npy", "maps.npy", "frames.sha256"))}


def _protocol_masks(rendered, video, idx, start, end, flip_view=True):
    root = rendered[0]
    paths = MK.dive_mask_paths(root / "masks", video, idx, start, end, 96)
    job = X.dive_job(root / "frames", video, idx, start, end, 96)
    return MK.mask_views(paths, MK.image_size(job.frame_paths[0]), (200, 112), 112, flip_view), paths


def test_arrays_have_the_contract_shapes_dtypes_and_values(rendered, weights, cfg, full):
    _, _, dives = rendered
    cache = FeatureCache(full)
    assert cache.additions == ("mixed4f", "sve", "masks")
    entries = cache.manifest["fineparser"]
    assert entries["sve"]["backbone"] == "i3d2d" and entries["sve"]["layer"] == "mixed_4d"
    assert entries["sve"]["weights_sha256"] == cache.manifest["weights_sha256"]
    assert entries["masks"]["source"] == "per dive masks.sha256"
    state, _ = load_verified_weights(weights)
    i3d = X.load_backbone(state, torch.device("cpu"))
    sve_net = i3d2d_from_state_dict(state)
    for video, idx, start, end in dives:
        add = cache.load_additions(video, idx, ("mixed4f", "sve", "masks"))
        assert add["mixed4f"].shape == (2, 9, 832, 4, 7, 7) and add["mixed4f"].dtype == np.float16
        assert add["sve"].shape == (2, 96, 512) and add["sve"].dtype == np.float16
        assert add["masks"].shape == (2, 96 * 112 * 112 // 8) and add["masks"].dtype == np.uint8
        assert isinstance(add["mixed4f"], np.memmap)

        job = X.dive_job(rendered[0] / "frames", video, idx, start, end, 96)
        # Mixed_4f of the same pass: the I3D trunk up to Mixed_4f (float32) on a few of the dive's
        # snippets, both views; the cache computed it under bfloat16 autocast and stored float16
        clips = X.load_snippets(job, cfg)   # (18, 3, 16, 112, 112), view-major
        some = [0, 4, 8, 9 + 8]
        with torch.inference_mode():
            x = X.T.normalize(clips[some], cfg["normalization"])
            for name in ("conv3d_1a_7x7", "maxPool3d_2a_3x3", "conv3d_2b_1x1", "conv3d_2c_3x3", "maxPool3d_3a_3x3",
                         "mixed_3b", "mixed_3c", "maxPool3d_4a_3x3", "mixed_4b", "mixed_4c", "mixed_4d",
                         "mixed_4e", "mixed_4f"):
                x = getattr(i3d, name)(x)
        stored = add["mixed4f"].reshape(18, 832, 4, 7, 7)[some].astype(np.float32)
        direct = x.numpy()
        assert _rel(stored, direct) < 0.02
        assert _rel(stored, np.roll(direct, 1, axis=0)) > 0.2   # each snippet its own (bf16 vs fp32: ~1 %)
        # SVE: i3d2d per frame (float32) of the same views (view 1 flipped)
        views = X.load_views(job, cfg)   # (2, 96, 112, 112, 3)
        for v in range(2):
            frames = torch.from_numpy(views[v, ::8].copy()).permute(0, 3, 1, 2)
            expect = frame_features(sve_net, frames).numpy()
            got = add["sve"][v, ::8].astype(np.float32)
            assert _rel(got, expect) < 0.02 and _rel(got, np.roll(expect, 1, axis=0)) > 0.2   # bf16 vs fp32
        # masks: exactly the protocol masks of the cache's views, bit-packed
        masks, _ = _protocol_masks(rendered, video, idx, start, end)
        unpacked = cache.unpack_masks(add["masks"])
        assert unpacked.shape == (2, 96, 112, 112) and unpacked.dtype == bool
        assert np.array_equal(unpacked, masks)
        assert np.array_equal(unpacked[1], unpacked[0][..., ::-1])   # the flipped view, full-width crop
        assert 0.001 < unpacked.mean() < 0.5                          # a diver, not an empty or full mask
        digest = (full / video / str(idx) / "masks.sha256").read_text().strip()
        assert digest == A.masks_digest(_protocol_masks(rendered, video, idx, start, end)[1])


def test_pooled_and_maps_bytes_do_not_change_with_the_additions(plain, full):
    assert _base_files(plain) == _base_files(full)
    manifest = json.loads((plain / "manifest.json").read_text())
    assert "fineparser" not in manifest   # a dataset without additions keeps the manifest it had
    assert {k: v for k, v in json.loads((full / "manifest.json").read_text()).items() if k != "fineparser"} == manifest
    assert not any(p.name in ("mixed4f.npy", "sve.npy", "masks.npy") for p in plain.rglob("*"))


def test_a_cache_without_additions_is_extended_not_rebuilt(rendered, weights, cfg, plain, full, tmp_path,
                                                          monkeypatch):
    out = tmp_path / "i3d"
    shutil.copytree(plain, out)
    before = _base_files(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("pooled.npy")}
    seen = []
    forward = X.forward_snippets
    monkeypatch.setattr(X, "forward_snippets", lambda *a, **k: seen.append(a[1].shape[0]) or forward(*a, **k))
    _run(rendered, weights, cfg, out)
    assert sum(seen) == 2 * 2 * 9   # one I3D pass per snippet, for mixed4f only
    assert _base_files(out) == before and all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert cache_bytes(out) == cache_bytes(full)   # the same files and bytes as a cache made whole
    # and a second run computes nothing
    seen.clear()
    _run(rendered, weights, cfg, out)
    assert seen == []


def test_a_changed_additions_entry_rebuilds_only_that_array(rendered, weights, cfg, full, tmp_path, monkeypatch):
    out = tmp_path / "i3d"
    shutil.copytree(full, out)
    keep = {k: v for k, v in cache_bytes(out).items() if not k.endswith(("masks.npy", "masks.sha256", "manifest.json"))}
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy") if p.name != "masks.npy"}
    monkeypatch.setattr(X, "load_backbone", lambda *a: pytest.fail("masks alone need no I3D"))
    monkeypatch.setattr(A, "MASK_RULE", "another binarisation")   # the masks' entry changes: they alone are redone
    _run(rendered, weights, cfg, out)
    assert FeatureCache(out).manifest["fineparser"]["masks"]["rule"] == "another binarisation"
    assert {k: v for k, v in cache_bytes(out).items() if k in keep} == keep
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert cache_bytes(out)["manifest.json"] != cache_bytes(full)["manifest.json"]
    # additions turned off: removed, pooled / maps kept
    _run(rendered, weights, cfg, out, dataset="mtl_aqa")
    assert FeatureCache(out).additions == () and not list(out.rglob("sve.npy")) and not list(out.rglob("masks.*"))
    assert _base_files(out) == _base_files(full)


def test_redrawn_masks_and_damaged_additions_redo_only_that_dive_and_array(rendered, weights, cfg, full, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "i3d"
    shutil.copytree(full, out)
    root, parquet, dives = rendered
    video, idx, start, end = dives[0]
    fingerprint = FeatureCache(out).fingerprint
    masks_dir = tmp_path / "masks"
    shutil.copytree(root / "masks", masks_dir)
    mask = masks_dir / video / str(idx) / f"{start:05d}.jpg"
    Image.fromarray(255 - np.asarray(Image.open(mask))).save(mask)   # re-drawn: inverted
    other = out / dives[1][0] / str(dives[1][1])
    (other / "sve.npy").write_bytes((other / "sve.npy").read_bytes()[:-100])   # damaged after it was written
    before = cache_bytes(out)
    monkeypatch.setattr(X, "load_backbone", lambda *a: pytest.fail("masks and sve need no I3D"))
    X.extract_features(frames_root=root / "frames", dives_parquet=parquet, weights_path=weights, out_dir=out,
                       cfg=cfg, dataset="finediving", masks_root=masks_dir)
    after = cache_bytes(out)
    changed = sorted(k for k in after if after[k] != before.get(k))
    first = f"{video}/{idx}"
    assert changed == sorted([f"{first}/masks.npy", f"{first}/masks.sha256", f"{dives[1][0]}/{dives[1][1]}/sve.npy"])
    assert after[f"{dives[1][0]}/{dives[1][1]}/sve.npy"] == cache_bytes(full)[f"{dives[1][0]}/{dives[1][1]}/sve.npy"]
    assert FeatureCache(out).fingerprint != fingerprint   # models trained on the old masks are stale


def test_interrupted_addition_writes_are_cleaned_and_resumed(rendered, weights, cfg, full, tmp_path):
    out = tmp_path / "i3d"
    shutil.copytree(full, out)
    _, _, dives = rendered
    folder = out / dives[0][0] / str(dives[0][1])
    (folder / "sve.npy").unlink()
    (folder / ".sve.npy.abc123.tmp").write_bytes(b"half")
    _run(rendered, weights, cfg, out)
    assert not (folder / ".sve.npy.abc123.tmp").exists()
    assert cache_bytes(out) == cache_bytes(full)


# ----------------------------------------------------------------------------- errors


def test_a_missing_or_bad_mask_is_named_before_the_cache_is_touched(rendered, weights, cfg, plain, tmp_path):
    root, parquet, dives = rendered
    out = tmp_path / "i3d"
    shutil.copytree(plain, out)
    before = cache_bytes(out)
    masks_dir = tmp_path / "masks"
    shutil.copytree(root / "masks", masks_dir)
    video, idx, start, end = dives[1]
    gone = masks_dir / video / str(idx) / f"{start + 3:05d}.jpg"
    gone.unlink()
    args = dict(frames_root=root / "frames", dives_parquet=parquet, weights_path=weights, out_dir=out,
                dataset="finediving", masks_root=masks_dir)
    with pytest.raises(MK.MaskError, match=rf"{gone}: mask missing"):
        X.extract_features(cfg=dict(cfg, normalization="i3d"), **args)   # would clear every dive
    assert cache_bytes(out) == before
    Image.new("RGBA", Image.open(masks_dir / video / str(idx) / f"{start:05d}.jpg").size).save(gone.with_suffix(".png"))
    gone.with_suffix(".png").rename(gone)   # a colour mask with alpha under the mask's name
    with pytest.raises(MK.MaskError, match=rf"{gone}: mask of mode 'RGBA'"):
        X.extract_features(cfg=cfg, **args)
    assert cache_bytes(out) == before
    shutil.rmtree(masks_dir)
    with pytest.raises(A.AdditionsError, match="extract_features.fineparser.finediving asks for masks"):
        X.extract_features(cfg=cfg, **args)
    assert cache_bytes(out) == before


def test_asking_a_cache_for_additions_it_lacks_is_one_line_naming_cache_and_param(plain):
    cache = FeatureCache(plain)
    video, idx = next((p.parent.name, int(p.name)) for p in plain.glob("*/*") if p.is_dir())
    with pytest.raises(FeatureCacheError) as err:
        cache.load_additions(video, idx, ("mixed4f", "sve"))
    text = str(err.value)
    assert "\n" not in text and str(plain) in text and "mixed4f, sve" in text
    assert "extract_features.fineparser." in text
    with pytest.raises(FeatureCacheError, match="unknown cache addition"):
        cache.require_additions(("frames",))


def test_no_masks_setting_keeps_mixed4f_and_sve_only(rendered, weights, cfg, tmp_path, full, monkeypatch):
    out = tmp_path / "i3d"
    shutil.copytree(full, out)
    monkeypatch.setattr(X, "load_backbone", lambda *a: pytest.fail("nothing to compute"))
    _run(rendered, weights, dict(cfg, fineparser={"finediving": "no_masks", "mtl_aqa": False}), out)
    cache = FeatureCache(out)
    assert cache.additions == ("mixed4f", "sve") and not list(out.rglob("masks.*"))
    kept = {k: v for k, v in cache_bytes(full).items() if not k.endswith(("masks.npy", "masks.sha256", "manifest.json"))}
    assert cache_bytes(out) == {**kept, "manifest.json": cache_bytes(out)["manifest.json"]}
    with pytest.raises(FeatureCacheError, match="extract_frames.masks_root"):
        cache.require_additions(("masks",))
    assert A.wanted_arrays(cfg, "finediving") == ("mixed4f", "sve", "masks")
    assert A.wanted_arrays(cfg, "mtl_aqa") == () and A.wanted_arrays(cfg, None) == ()


# ----------------------------------------------------------------------------- the loader's batch keys


def test_batches_carry_the_additions_in_the_same_view_as_pooled(rendered, full):
    from aqa.train.data import load_dive_data

    _, parquet, _ = rendered
    data = load_dive_data(parquet, full, cache_keys=("mixed4f", "sve", "masks"))
    plain_data = load_dive_data(parquet, full)
    cache = FeatureCache(full)
    rows, views = np.array([1, 0, 1]), np.array([0, 1, 1])
    batch = data.batch(rows, views, with_maps=False)
    assert batch["mixed4f"].shape == (3, 9, 832, 4, 7, 7) and batch["sve"].shape == (3, 96, 512)
    assert batch["masks"].shape == (3, 96, 112, 112)
    assert batch["sve"].dtype == torch.float32 and batch["mixed4f"].dtype == torch.float16   # SAP casts it
    assert batch["masks"].dtype == torch.bool and set(torch.unique(batch["masks"]).tolist()) == {False, True}
    for b, (row, view) in enumerate(zip(rows, views)):
        video, idx = data.dives["video"][row], int(data.dives["idx"][row])
        add = cache.load_additions(video, idx, ("mixed4f", "sve", "masks"))
        pooled, _ = cache.load(video, idx)
        assert torch.equal(batch["pooled"][b], torch.from_numpy(pooled[view].astype(np.float32)))
        assert torch.equal(batch["mixed4f"][b].float(), torch.from_numpy(add["mixed4f"][view].astype(np.float32)))
        assert torch.equal(batch["sve"][b], torch.from_numpy(add["sve"][view].astype(np.float32)))
        assert torch.equal(batch["masks"][b].bool(), torch.from_numpy(cache.unpack_masks(add["masks"][view])))
    assert not torch.equal(batch["masks"][1], batch["masks"][0])   # another dive / view, other masks
    # the request / fetch path hands out the same batch; a load without keys carries none
    (fetched,) = next(data.fetch([(data.request(rows, views, with_maps=False),)]))
    assert all(torch.equal(fetched[k], batch[k]) for k in batch)
    assert not {"mixed4f", "sve", "masks"} & set(plain_data.batch(rows, views))


def test_a_model_asks_for_its_keys_and_a_cache_without_them_is_one_line(rendered, plain):
    from aqa.models.fineparser import FineParserConfig, FineParserModel
    from aqa.models.tsa import TSAModel
    from aqa.train.data import load_dive_data, model_cache_keys

    assert model_cache_keys(FineParserModel()) == ("mixed4f", "sve", "masks")
    assert model_cache_keys(FineParserModel(FineParserConfig(use_sap=False))) == ("sve",)
    assert model_cache_keys(FineParserModel(FineParserConfig(mask_loss=False))) == ("mixed4f", "sve")
    assert model_cache_keys(TSAModel()) == ()
    with pytest.raises(FeatureCacheError) as err:
        load_dive_data(rendered[1], plain, cache_keys=model_cache_keys(FineParserModel()))
    assert "\n" not in str(err.value) and str(plain) in str(err.value)
    assert "mixed4f, sve, masks" in str(err.value) and "extract_features.fineparser." in str(err.value)


def test_params_of_the_additions_are_checked(repo_params):
    from aqa.params import ParamsError, validate_params

    # the built-in default trains FineParser's main model on FineDiving
    assert repo_params["extract_features"]["fineparser"] == {"finediving": True, "mtl_aqa": False}
    p = copy.deepcopy(repo_params)
    p["extract_features"]["fineparser"]["mtl_aqa"] = "masks_only"
    with pytest.raises(ParamsError, match="extract_features.fineparser.mtl_aqa"):
        validate_params(p)
    p = copy.deepcopy(repo_params)
    p["extract_features"]["fineparser"]["finediving"] = True
    p["extract_features"]["sve_backbone"] = "resnet34"
    with pytest.raises(ParamsError, match="extract_features.sve_weights_path"):
        validate_params(p)
    p["extract_features"]["fineparser"] = {"finediving": False, "mtl_aqa": False}
    p["datasets"]["dn_only"]["finediving"] = []
    validate_params(p)   # no additions (and no FineParser listed): the backbone is never built
