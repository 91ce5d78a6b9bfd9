"""Batched voting gives what one forward per (query, exemplar) pair gives."""

import numpy as np
import pytest
import torch

from aqa.evaluate.voting import exemplar_rows, vote
from aqa.models.registry import build_model
from aqa.train.data import load_dive_data
from train_helpers import TINY_VARIANTS, tiny_dataset


def _model(name):
    torch.manual_seed(0)
    cfg = dict(TINY_VARIANTS[name])
    return build_model(cfg.pop("method"), **cfg).eval()


def _loop_vote(model, data, queries, exemplars):
    """The reference: one forward per query and exemplar, in Python loops."""
    preds = []
    with torch.no_grad():
        for q, row in zip(queries, exemplars):
            scores = [float(model(data.batch([q]), data.batch([e]))["delta"][0] + data.score[e])
                      for e in row if e >= 0]
            preds.append(np.mean(scores))
    return np.array(preds)


@pytest.mark.parametrize("name", ["fr", "tsa"])
def test_batched_equals_loop(tmp_path, name):
    dives, cache, _ = tiny_dataset(tmp_path, 20)
    data = load_dive_data(dives, cache)
    test, pool = data.indices("test"), data.indices("train")
    ex = exemplar_rows(data, test, pool, "dn", 4, seed=0)
    ex[0, 1:] = -1                                  # a query with fewer exemplars
    model = _model(name)
    votes = vote(model, data, test, ex, batch_size=3)
    np.testing.assert_allclose(votes.pred, _loop_vote(model, data, test, ex), rtol=1e-5, atol=1e-4)
    assert votes.per_exemplar.shape == ex.shape and np.isnan(votes.per_exemplar[0, 1:]).all()
    if name == "tsa":
        assert votes.pred_transitions.shape == (test.size, 2)
        with torch.no_grad():
            single = model(data.batch(test[:1]), data.batch(ex[:1, 0]))["pred_transitions"]
        np.testing.assert_array_equal(votes.pred_transitions[0], single[0].numpy())
    else:
        assert votes.pred_transitions is None


def test_exemplar_rows_come_from_pool(tmp_path):
    dives, cache, _ = tiny_dataset(tmp_path, 20)
    data = load_dive_data(dives, cache)
    test, pool = data.indices("test"), data.indices("train")[:6]
    ex = exemplar_rows(data, test, pool, "nodn", 10, seed=0)
    assert set(ex[ex >= 0]) <= set(pool) and ((ex >= 0).sum(axis=1) == 6).all()
