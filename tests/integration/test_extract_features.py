"""`aqa extract-features` end to end: real JPEG frames, a real (randomly initialised) I3D, the cache."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from aqa.data.schema import DIVES_SCHEMA, table_from_rows, write_parquet_atomic
from aqa.features.cache import FeatureCache
from aqa.models.fetch_i3d import WEIGHTS_NAME, import_state_dict
from aqa.models.i3d import InceptionI3d

AQA = Path(sys.executable).with_name("aqa")
DIVES = [("01", 1, 100, 119), ("01", 2, 300, 321), ("02", 7, 5, 22)]  # (video, idx, start, end)


def _write_inputs(tmp_path: Path, params: dict) -> tuple[Path, Path, Path, Path]:
    frames = tmp_path / "frames"
    rows = []
    rng = np.random.default_rng(0)
    for video, idx, start, end in DIVES:
        folder = frames / video / str(idx)
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, size=(64, 112, 3), dtype=np.uint8)
        for n in range(start, end + 1):
            Image.fromarray(np.roll(base, 3 * n, axis=1)).save(folder / f"{n:05d}.jpg", quality=90)
        rows.append(dict(key=f"{video}/{idx}", video=video, idx=idx, split="test" if idx == 7 else "train",
                         action_type="107B", difficulty=3.0, dive_score=60.0, judge_scores=[7.0] * 7,
                         num_judges=7, start_frame=start, end_frame=end, num_frames=end - start + 1,
                         frame_labels=None, steps_transit_frames=None, transitions_96=None))
    parquet = tmp_path / "dives.parquet"
    write_parquet_atomic(table_from_rows(rows, DIVES_SCHEMA), parquet)
    torch.manual_seed(0)
    torch.save(InceptionI3d(num_classes=400).state_dict(), tmp_path / "i3d_random.pt")
    import_state_dict(tmp_path / "i3d_random.pt", tmp_path / "i3d")  # as fetch_i3d.weights_path does
    weights = tmp_path / "i3d" / WEIGHTS_NAME
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    return frames, parquet, weights, params_path


def _run(params_path, frames, parquet, weights, out):
    cmd = [str(AQA), "extract-features", "--params", str(params_path), "--frames", str(frames),
           "--annotations", str(parquet), "--weights", str(weights), "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_extract_features_cli(tmp_path, tiny_params):
    params = dict(tiny_params)
    # one view keeps this under ~30 s on 2 cores; the flipped view is covered by the unit tests
    params["extract_features"] = dict(tiny_params["extract_features"], workers=1, batch_snippets=12,
                                      flip_view=False)
    frames, parquet, weights, params_path = _write_inputs(tmp_path, params)
    out = tmp_path / "features" / "i3d"

    done = _run(params_path, frames, parquet, weights, out)
    assert done.returncode == 0, done.stderr
    cache = FeatureCache(out)
    views = 1
    assert cache.views == views and cache.manifest["backbone"] == "i3d"
    assert cache.manifest["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest_text = (out / "manifest.json").read_text()
    assert "frames_root" not in json.loads(manifest_text) and str(tmp_path) not in manifest_text
    for video, idx, _, _ in DIVES:
        pooled, maps = cache.load(video, idx)
        assert pooled.shape == (views, 9, 1024) and maps.shape == (views, 9, 1024, 4, 4)
        assert pooled.dtype == np.float16 and np.isfinite(pooled).all() and np.isfinite(maps).all()
        # pooled is the global mean of Mixed_5c, maps the time mean: pooled = spatial mean of maps
        np.testing.assert_allclose(pooled.astype(np.float32), maps.astype(np.float32).mean(axis=(3, 4)),
                                   rtol=2e-2, atol=2e-3)
    assert "3 to compute" in done.stderr

    p1, _ = cache.load("01", 1)
    p2, _ = cache.load("02", 7)
    assert not np.allclose(p1, p2)  # different frames, different features

    # a second run recomputes nothing
    mtime = (out / "01" / "1" / "maps.npy").stat().st_mtime_ns
    again = _run(params_path, frames, parquet, weights, out)
    assert again.returncode == 0, again.stderr
    assert "3 already cached, 0 to compute" in again.stderr
    assert (out / "01" / "1" / "maps.npy").stat().st_mtime_ns == mtime


def test_extract_features_cli_names_the_dive_with_missing_frames(tmp_path, tiny_params):
    frames, parquet, weights, params_path = _write_inputs(tmp_path, tiny_params)
    (frames / "01" / "2" / "00310.jpg").unlink()
    done = _run(params_path, frames, parquet, weights, tmp_path / "out")
    assert done.returncode != 0
    assert "dive 01/2" in done.stderr and "missing" in done.stderr


def _cache_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_extract_features_cli_refuses_damaged_or_unverified_weights_and_keeps_the_cache(tmp_path, tiny_params):
    params = dict(tiny_params)
    params["extract_features"] = dict(tiny_params["extract_features"], workers=1, batch_snippets=9,
                                      flip_view=False)
    frames, parquet, weights, params_path = _write_inputs(tmp_path, params)
    out = tmp_path / "features" / "i3d"
    done = _run(params_path, frames, parquet, weights, out)
    assert done.returncode == 0, done.stderr
    before = _cache_bytes(out)

    data = bytearray(weights.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 16])
    weights.write_bytes(bytes(data))
    damaged = _run(params_path, frames, parquet, weights, out)
    assert damaged.returncode != 0
    assert f"{weights}: sha256" in damaged.stderr and f"{weights.parent / 'manifest.json'}" in damaged.stderr
    assert "weights_only" not in damaged.stderr
    assert _cache_bytes(out) == before

    # weights given by hand without fetch_i3d's manifest: refused, with the way to import them
    unverified = _run(params_path, frames, parquet, tmp_path / "i3d_random.pt", out)
    assert unverified.returncode != 0
    assert "i3d_random.pt: no manifest.json beside it" in unverified.stderr
    assert _cache_bytes(out) == before
