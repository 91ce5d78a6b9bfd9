import numpy as np
import pytest

from aqa.train.exemplars import epoch_rng, eval_exemplars, sample_train_exemplars, stable_hash

ACTIONS = np.array(["a", "a", "a", "b", "b", "c"])


def test_train_dn_same_type_never_self_unless_alone():
    for epoch in range(20):
        ex = sample_train_exemplars(ACTIONS, "dn", epoch_rng(0, epoch))
        assert (ACTIONS[ex] == ACTIONS).all()
        assert ex[5] == 5                       # the only "c" is its own exemplar
        assert (ex[:5] != np.arange(5)).all()


def test_train_nodn_any_other_dive_and_covers_types():
    seen = set()
    for epoch in range(50):
        ex = sample_train_exemplars(ACTIONS, "nodn", epoch_rng(0, epoch))
        assert (ex != np.arange(ACTIONS.size)).all()
        seen.update(zip(ACTIONS, ACTIONS[ex]))
    assert ("a", "b") in seen and ("c", "a") in seen


def test_train_draws_deterministic_per_seed_and_epoch():
    a = sample_train_exemplars(ACTIONS, "dn", epoch_rng(3, 7))
    b = sample_train_exemplars(ACTIONS, "dn", epoch_rng(3, 7))
    np.testing.assert_array_equal(a, b)
    draws = {tuple(sample_train_exemplars(ACTIONS, "nodn", epoch_rng(3, e))) for e in range(10)}
    assert len(draws) > 1


def test_eval_exemplars_deterministic_order_free_and_nested():
    pool_keys = [f"v/{i}" for i in range(30)]
    pool_actions = np.array(["a", "b"] * 15)
    q_keys, q_actions = ["t/0", "t/1", "v/0"], np.array(["a", "b", "a"])
    ex = eval_exemplars(q_keys, q_actions, pool_keys, pool_actions, "dn", 10, seed=0)
    again = eval_exemplars(q_keys, q_actions, pool_keys, pool_actions, "dn", 10, seed=0)
    np.testing.assert_array_equal(ex, again)
    assert (pool_actions[ex] == q_actions[:, None]).all()
    assert 0 not in ex[2]                       # v/0 is never its own exemplar
    # the pool's order does not matter: same keys chosen
    perm = np.random.default_rng(1).permutation(30)
    shuffled = eval_exemplars(q_keys, q_actions, [pool_keys[p] for p in perm], pool_actions[perm], "dn", 10, 0)
    assert [[pool_keys[perm[j]] for j in row] for row in shuffled] == [[pool_keys[j] for j in row] for row in ex]
    # a smaller M takes the first exemplars of a larger M (Table 4 is nested)
    np.testing.assert_array_equal(eval_exemplars(q_keys, q_actions, pool_keys, pool_actions, "dn", 4, 0),
                                  ex[:, :4])
    # another seed, other exemplars
    assert not np.array_equal(eval_exemplars(q_keys, q_actions, pool_keys, pool_actions, "dn", 10, 1), ex)


def test_eval_exemplars_fewer_where_fewer_exist_and_fallback():
    pool_keys = ["p/0", "p/1", "p/2"]
    pool_actions = np.array(["a", "a", "b"])
    ex = eval_exemplars(["q/0", "q/1"], np.array(["a", "z"]), pool_keys, pool_actions, "dn", 4, 0)
    assert sorted(ex[0][ex[0] >= 0]) == [0, 1] and (ex[0][2:] == -1).all()
    assert sorted(ex[1][ex[1] >= 0]) == [0, 1, 2]     # type absent from the pool: any dive
    nodn = eval_exemplars(["q/0"], np.array(["a"]), pool_keys, pool_actions, "nodn", 4, 0)
    assert sorted(nodn[0][nodn[0] >= 0]) == [0, 1, 2]


def test_stable_hash_and_bad_mode():
    assert stable_hash("v/1") == stable_hash("v/1") != stable_hash("v/2")
    with pytest.raises(ValueError, match="exemplar mode"):
        sample_train_exemplars(ACTIONS, "maybe", epoch_rng(0, 0))
