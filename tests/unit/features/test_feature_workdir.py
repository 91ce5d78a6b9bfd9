"""extract_features with a work folder (the DVC stage's .aqa/work/<cache>, aqa.workdir): it starts
from the existing cache and is extended there, only the new dives computed, then becomes the
output; a changed manifest still clears it. (Starting from DVC's cache: tests/unit/test_workdir.py,
and the sharing tests in tests/reliability.)"""

from __future__ import annotations

import shutil

import pytest
from feature_helpers import FakeBackbone, cache_bytes, write_dives

from aqa.features import extract as X
from aqa.features.cache import FeatureCache


@pytest.fixture()
def fake(monkeypatch, tmp_path, fetched_weights):
    model = FakeBackbone()
    monkeypatch.setattr(X, "load_backbone", lambda weights, device: model)
    shutil.copytree(fetched_weights.parent, tmp_path / "i3d")
    return model, tmp_path / "i3d" / fetched_weights.name


def test_the_work_folder_is_extended_and_published(tiny_dives, feature_cfg, tmp_path, fake):
    model, weights = fake
    frames, parquet, dives = tiny_dives
    cfg = dict(feature_cfg, batch_snippets=9)
    per_dive = 18 if cfg["flip_view"] else 9
    out, work = tmp_path / "features", tmp_path / ".aqa/work/features"

    def extract(annotations, **changes):
        model.calls.clear()
        X.extract_features(frames_root=frames, dives_parquet=annotations, weights_path=weights, out_dir=out,
                           cfg=dict(cfg, **changes), work_dir=work)
        return sum(model.calls)

    assert extract(write_dives(tmp_path / "two.parquet", dives[:2])) == 2 * per_dive
    assert not work.exists() and len(list(out.glob("*/*/maps.npy"))) == 2
    first = cache_bytes(out)

    assert extract(parquet) == per_dive                  # the new dive alone
    assert not work.exists() and len(list(out.glob("*/*/maps.npy"))) == 3
    assert {k: v for k, v in cache_bytes(out).items() if k in first} == first

    assert extract(parquet, normalization="i3d") == 3 * per_dive   # a changed manifest: nothing stale
    assert FeatureCache(out).manifest["protocol"]["normalization"] == "i3d"
