"""FeatureCache round trip, missing dives, and invalidation by a changed manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aqa.features.cache import FeatureCache, FeatureCacheError, dive_problem
from aqa.features.extract import prepare_out_dir, write_dive


def _manifest(**over):
    m = {"backbone": "i3d", "weights_sha256": "ab" * 32, "views": 2, "protocol": {"num_frames": 96}}
    m.update(over)
    return m


def _dive_arrays(seed, views=2):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((views * 9, 1024)).astype(np.float32),
            rng.standard_normal((views * 9, 1024, 4, 4)).astype(np.float32))


def test_round_trip_memory_mapped(tmp_path):
    prepare_out_dir(tmp_path, _manifest())
    pooled, maps = _dive_arrays(0)
    write_dive(tmp_path / "01" / "3", pooled, maps, views=2, dtype="float16")
    cache = FeatureCache(tmp_path)
    assert cache.views == 2 and cache.manifest["backbone"] == "i3d"
    assert cache.has("01", 3) and not cache.has("01", 4)
    p, m = cache.load("01", 3)
    assert isinstance(p, np.memmap) and isinstance(m, np.memmap)
    assert p.shape == (2, 9, 1024) and m.shape == (2, 9, 1024, 4, 4) and p.dtype == np.float16
    np.testing.assert_allclose(p, pooled.reshape(2, 9, 1024), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(m[1, 4], maps[13], rtol=1e-3, atol=1e-3)  # view 1, snippet 4


def test_load_many_stacks_in_order_as_float(tmp_path):
    prepare_out_dir(tmp_path, _manifest())
    arrays = {k: _dive_arrays(i) for i, k in enumerate([("01", 1), ("02", 5)])}
    for (video, idx), (p, m) in arrays.items():
        write_dive(tmp_path / video / str(idx), p, m, views=2, dtype="float16")
    pooled, maps = FeatureCache(tmp_path).load_many(["02/5", ("01", 1)])
    assert pooled.shape == (2, 2, 9, 1024) and maps.shape == (2, 2, 9, 1024, 4, 4)
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[0], arrays[("02", 5)][0].reshape(2, 9, 1024), atol=1e-2)
    np.testing.assert_allclose(maps[1], arrays[("01", 1)][1].reshape(2, 9, 1024, 4, 4), atol=1e-2)


def test_missing_dive_and_missing_manifest_are_named(tmp_path):
    with pytest.raises(FeatureCacheError, match="manifest.json"):
        FeatureCache(tmp_path)
    prepare_out_dir(tmp_path, _manifest())
    with pytest.raises(FeatureCacheError, match="dive 09/2"):
        FeatureCache(tmp_path).load("09", 2)
    with pytest.raises(FeatureCacheError, match="dive 09/2"):
        FeatureCache(tmp_path).load_many(["09/2"])


def test_changed_manifest_clears_dives_and_changes_fingerprint(tmp_path, caplog):
    prepare_out_dir(tmp_path, _manifest())
    write_dive(tmp_path / "01" / "1", *_dive_arrays(0), views=2, dtype="float16")
    old = FeatureCache(tmp_path).fingerprint

    prepare_out_dir(tmp_path, _manifest())  # same manifest: kept
    assert FeatureCache(tmp_path).has("01", 1)

    (tmp_path / "notes.txt").write_text("user file")  # not a dive: never touched
    with caplog.at_level("INFO"):
        prepare_out_dir(tmp_path, _manifest(weights_sha256="cd" * 32))
    cache = FeatureCache(tmp_path)
    assert not cache.has("01", 1) and not (tmp_path / "01").exists()
    assert cache.fingerprint != old and cache.manifest["weights_sha256"] == "cd" * 32
    assert "weights_sha256" in caplog.text and "clearing 1 cached dive" in caplog.text
    assert (tmp_path / "notes.txt").exists()


def test_interrupted_temporaries_are_removed_and_unmanifested_dives_cleared(tmp_path):
    write_dive(tmp_path / "01" / "1", *_dive_arrays(0), views=2, dtype="float16")
    leftover = tmp_path / "01" / ".2.abc123.tmp"
    leftover.mkdir()
    (leftover / "pooled.npy").write_bytes(b"partial")
    prepare_out_dir(tmp_path, _manifest())  # no manifest before: nothing can be trusted
    assert not (tmp_path / "01").exists()
    assert json.loads((tmp_path / "manifest.json").read_text())["views"] == 2


@pytest.mark.parametrize("name, damage, problem", [
    ("maps.npy", lambda b: b[:1000], "truncated"),
    ("maps.npy", lambda b: b"", "truncated"),
    ("pooled.npy", lambda b: b"garbage" * 100, "not a .npy array"),
])
def test_a_damaged_array_is_named_on_load(tmp_path, name, damage, problem):
    prepare_out_dir(tmp_path, _manifest())
    write_dive(tmp_path / "01" / "1", *_dive_arrays(0), views=2, dtype="float16")
    path = tmp_path / "01" / "1" / name
    path.write_bytes(damage(path.read_bytes()))
    cache = FeatureCache(tmp_path)
    assert cache.has("01", 1)  # present; load says what is wrong with it
    with pytest.raises(FeatureCacheError) as err:
        cache.load("01", 1)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and problem in msg and "dive 01/1" in msg and "\n" not in msg
    assert "extract_features" in msg  # what to do
    with pytest.raises(FeatureCacheError, match=name):
        cache.load_many(["01/1"])


def test_dive_problem_checks_headers_and_sizes_only(tmp_path):
    write_dive(tmp_path / "01" / "1", *_dive_arrays(0), views=2, dtype="float16")
    folder = tmp_path / "01" / "1"
    assert dive_problem(folder, views=2, num_snippets=9, dtype="float16") is None
    assert "dtype" in dive_problem(folder, views=2, num_snippets=9, dtype="float32")
    assert "shape" in dive_problem(folder, views=1, num_snippets=9, dtype="float16")
    np.save(folder / "maps.npy", np.zeros((2, 8, 1024, 4, 4), np.float16))  # well-formed, wrong dive
    assert "shape" in dive_problem(folder, views=2, num_snippets=9, dtype="float16")


def test_fingerprint_ignores_an_interrupted_write(tmp_path):
    prepare_out_dir(tmp_path, _manifest())
    write_dive(tmp_path / "01" / "1", *_dive_arrays(0), views=2, dtype="float16", digest="ab" * 32)
    before = FeatureCache(tmp_path).fingerprint
    leftover = tmp_path / "01" / ".2.abc123.tmp"  # a kill during write_dive leaves this behind
    leftover.mkdir()
    (leftover / "frames.sha256").write_text("cd" * 32 + "\n")
    assert FeatureCache(tmp_path).fingerprint == before
