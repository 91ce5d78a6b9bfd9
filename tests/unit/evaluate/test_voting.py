"""Batched voting gives what one forward per (query, exemplar) pair gives."""

import numpy as np
import pytest
import torch

from aqa.evaluate.voting import encode_rows, exemplar_rows, vote, vote_by_forward
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


def _trained_bn(model, data, rows):
    """Running BatchNorm statistics away from their initial values (a few training-mode passes)."""
    model.train()
    with torch.no_grad():
        for start in range(0, len(rows) - 1, 4):
            model(data.batch(rows[start:start + 4]), data.batch(np.roll(rows[start:start + 4], 1)))
    return model.eval()


@pytest.mark.parametrize("name", ["fr", "fsr", "tsa"])
def test_encoded_vote_equals_per_pair_forward(tmp_path, name):
    """Encoding each dive once (in eval mode) gives what the forward over (query, exemplar) pairs
    gives, also with the pool's encodings shared between votes and modes."""
    dives, cache, _ = tiny_dataset(tmp_path, 24)
    data = load_dive_data(dives, cache)
    test, pool = data.indices("test"), data.indices("train")
    model = _trained_bn(_model(name), data, pool)
    ex = exemplar_rows(data, test, pool, "nodn", 5, seed=0)
    ex[1, 2:] = -1
    shared = encode_rows(model, data, np.concatenate([pool, test]), ("pred", "gt"), batch_size=5)
    for transitions in ("pred", "gt"):
        ref = vote_by_forward(model, data, test, ex, batch_size=3, transitions=transitions)
        for encoded in (None, shared[transitions]):
            got = vote(model, data, test, ex, batch_size=3, transitions=transitions, encoded=encoded)
            np.testing.assert_allclose(got.per_exemplar, ref.per_exemplar, rtol=0, atol=1e-5)
            np.testing.assert_allclose(got.pred, ref.pred, rtol=0, atol=1e-5)
            if name == "fr":
                assert got.pred_transitions is None and ref.pred_transitions is None
            else:
                np.testing.assert_array_equal(got.pred_transitions, ref.pred_transitions)
    assert not model.training


def test_encoded_vote_refuses_other_encodings(tmp_path):
    dives, cache, _ = tiny_dataset(tmp_path, 20)
    data = load_dive_data(dives, cache)
    test, pool = data.indices("test"), data.indices("train")
    model = _model("fsr")
    ex = exemplar_rows(data, test, pool, "dn", 3, seed=0)
    enc = encode_rows(model, data, np.concatenate([pool, test]), ("pred",), batch_size=8)["pred"]
    with pytest.raises(ValueError, match="transitions"):
        vote(model, data, test, ex, batch_size=4, transitions="gt", encoded=enc)
    partial = encode_rows(model, data, pool, ("pred",), batch_size=8)["pred"]
    with pytest.raises(KeyError, match="not encoded"):
        vote(model, data, test, ex, batch_size=4, encoded=partial)


def test_exemplar_rows_come_from_pool(tmp_path):
    dives, cache, _ = tiny_dataset(tmp_path, 20)
    data = load_dive_data(dives, cache)
    test, pool = data.indices("test"), data.indices("train")[:6]
    ex = exemplar_rows(data, test, pool, "nodn", 10, seed=0)
    assert set(ex[ex >= 0]) <= set(pool) and ((ex >= 0).sum(axis=1) == 6).all()
