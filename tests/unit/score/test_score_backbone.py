"""aqa score refuses a model whose I3D was fine-tuned (train.backbone finetune) before it reads any
features: the cache's frozen I3D would feed it other features than it was trained on."""

from __future__ import annotations

import pytest

from aqa.score.model import ModelError, TrainedSeed, check_inputs


def test_a_fine_tuned_model_is_refused_in_one_line(tmp_path):
    trained = TrainedSeed(0, tmp_path / "seed0", {"config": {"train": {"backbone": "finetune"}}, "provenance": {}})
    with pytest.raises(ModelError) as err:
        check_inputs(trained, tmp_path / "dives.parquet", cache=None)
    message = str(err.value)
    assert "\n" not in message and "seed0" in message and "train.backbone finetune" in message


def test_a_cached_model_goes_on_to_the_feature_check(tmp_path):
    class Cache:
        root, fingerprint = tmp_path / "cache", "b" * 64

    trained = TrainedSeed(0, tmp_path / "seed0", {"config": {"train": {"backbone": "cached"}},
                                                   "provenance": {"features": "a" * 64}})
    with pytest.raises(ModelError, match="trained on other features"):
        check_inputs(trained, tmp_path / "dives.parquet", Cache())
