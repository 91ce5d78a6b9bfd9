import numpy as np
import pandas as pd
import pytest

from aqa.train.data import load_dive_data, split_validation
from train_helpers import FEATURE_DIM, tiny_dataset


def test_split_validation_stratified_and_deterministic():
    dives = pd.DataFrame({"split": ["train"] * 20 + ["test"] * 5,
                          "action_type": ["a"] * 10 + ["b"] * 9 + ["c"] + ["a"] * 5})
    pool, val = split_validation(dives, 0.2, seed=0)
    pool2, val2 = split_validation(dives, 0.2, seed=0)
    np.testing.assert_array_equal(val, val2)
    assert sorted(np.concatenate([pool, val])) == list(range(20))
    assert (dives["action_type"][val].value_counts().to_dict()) == {"a": 2, "b": 2}
    assert 19 in pool                            # the single "c" stays in the pool
    pool0, val0 = split_validation(dives, 0.0, seed=0)
    assert val0.size == 0 and pool0.size == 20


def test_load_dive_data_shapes_and_batch(tmp_path):
    dives, cache, rows = tiny_dataset(tmp_path, 12)
    data = load_dive_data(dives, cache)
    n = len(rows)
    assert data.pooled.shape == (n, 2, 9, FEATURE_DIM) and data.pooled.dtype.is_floating_point
    assert data.maps.shape == (n, 2, 9, FEATURE_DIM, 4, 4)
    assert data.keys == sorted(r["key"] for r in rows)
    b = data.batch(np.array([0, 3]), np.array([0, 1]))
    assert b["pooled"].shape == (2, 9, FEATURE_DIM) and b["pooled"].dtype.is_floating_point
    assert b["transitions"].shape == (2, 2) and "maps" in b
    assert "maps" not in data.batch([0], with_maps=False)
    np.testing.assert_allclose(b["pooled"][1].numpy(), data.pooled[3, 1].float().numpy())


def test_load_dive_data_missing_features_named(tmp_path):
    dives, cache, rows = tiny_dataset(tmp_path, 12)
    for f in (cache / rows[2]["video"] / str(rows[2]["idx"])).iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match="lacks 1 of 12"):
        load_dive_data(dives, cache)
