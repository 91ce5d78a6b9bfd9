"""CoRe: group edges from a hand-made pool, leaf membership and offset targets, the tree, the
loss as the source computes it, DD mode through the host's own voting, learning on a tiny fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aqa.evaluate.voting import vote
from aqa.models.core import (
    RegressionTree, core_pool_settings, group_edges, infer_delta, leaf_bounds, leaf_targets, pair_differences,
)
from aqa.models.registry import build_model
from baseline_data import LAYOUTS, host_batch, layout_batch, make_data

# a hand-made pool: values 1, 2, 4, 8 -> differences 1, 3, 7, 2, 6, 4 -> sorted 1 2 3 4 6 7 (n = 6);
# e_i = D[int(i / 8 * 5)], i = 1..7 -> D[0, 1, 1, 2, 3, 3, 4] = 1, 2, 2, 3, 4, 4, 6
HAND_EDGES = (1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 6.0)
THETA = 10.0


def bounds():
    lo, hi = leaf_bounds(HAND_EDGES, THETA)
    return torch.as_tensor(lo), torch.as_tensor(hi)


def test_pair_differences_within_groups_and_over_all_pairs():
    assert pair_differences(np.array([1.0, 2.0, 4.0, 8.0])).tolist() == [1, 2, 3, 4, 6, 7]
    grouped = pair_differences(np.array([1.0, 2.0, 4.0, 8.0, 9.0]), np.array(["a", "a", "b", "b", "b"]))
    assert grouped.tolist() == [1, 1, 4, 5]  # a: |1-2|; b: |4-8|, |4-9|, |8-9|
    assert pair_differences(np.array([3.0]), np.array(["a"])).size == 0


def test_group_edges_of_a_hand_made_pool():
    assert group_edges(pair_differences(np.array([1.0, 2.0, 4.0, 8.0]))) == HAND_EDGES
    assert group_edges(np.array([5.0, 1.0, 3.0]), depth=3) == (3.0,)  # one inner edge: D[int(0.5 * 2)]
    with pytest.raises(ValueError, match="no pair differences"):
        group_edges(np.empty(0))


def test_leaf_intervals_mirror_the_positive_groups():
    lo, hi = leaf_bounds(HAND_EDGES, THETA)
    assert list(zip(lo[8:], hi[8:])) == [(0, 1), (1, 2), (2, 2), (2, 3), (3, 4), (4, 4), (4, 6), (6, 10)]
    assert list(zip(lo[:8], hi[:8])) == [(-10, -6), (-6, -4), (-4, -4), (-4, -3), (-3, -2), (-2, -2),
                                         (-2, -1), (-1, 0)]


@pytest.mark.parametrize("delta,leaf,offset", [
    (0.0, 8, 0.0), (0.5, 8, 0.5), (1.0, 9, 0.0),     # [lo, hi) for delta >= 0
    (2.0, 11, 0.0), (2.5, 11, 0.5),                    # the zero-width [2, 2] takes nothing
    (4.0, 14, 0.0), (9.9, 15, 0.975),
    (-0.3, 7, 0.7), (-1.0, 6, 1.0), (-2.0, 4, 1.0),   # (lo, hi] for delta < 0
    (-6.0, 0, 1.0), (-9.0, 0, 0.25),                  # leaf 0 = (-10, -6]
])
def test_a_pair_difference_is_classified_into_its_group(delta, leaf, offset):
    got_leaf, got_off, member = leaf_targets(torch.tensor([delta]), *bounds())
    assert int(got_leaf) == leaf and int(member.sum()) == 1 and bool(member[0, leaf])
    assert got_off.item() == pytest.approx(offset, abs=1e-6)


@pytest.mark.parametrize("delta", [10.0, 12.0, -10.0])
def test_a_difference_outside_every_group_targets_leaf_0_without_offset(delta):
    leaf, _, member = leaf_targets(torch.tensor([delta]), *bounds())
    assert int(leaf) == 0 and not member.any()  # D7: the source's all-zero one-hot


def test_real_finediving_edges_and_membership(finediving_annotations_dir):
    """BASELINES.md 6.3 and check 4: edges of the real train split, w/ DN (y / DD, same action
    type) and w/o DN (raw, all pairs); membership at the edges."""
    from aqa.data.finediving import read_finediving

    train = [d for d in read_finediving(finediving_annotations_dir).dives.values() if d.split == "train"]
    score = np.array([d.dive_score for d in train])
    dd = np.array([d.difficulty for d in train])
    action = np.array([d.action_type for d in train])
    dn = core_pool_settings(score, dd, action, "dn")
    nodn = core_pool_settings(score, dd, action, "nodn")
    np.testing.assert_allclose(dn["edges"], [0.6, 1.5, 2.1, 3.0, 4.05, 5.5, 7.9], atol=1e-9)
    np.testing.assert_allclose(nodn["edges"], [3.4, 7.0, 10.7, 14.85, 19.5, 25.3, 33.3], atol=1e-9)
    assert (dn["use_dd"], dn["theta"], nodn["use_dd"], nodn["theta"]) == (True, 30.0, False, 100.0)
    assert pair_differences(score / dd, action).size == 146_949
    lo, hi = (torch.as_tensor(b) for b in leaf_bounds(tuple(dn["edges"]), 30.0))
    e1 = dn["edges"][0]
    leaf, _, member = leaf_targets(torch.tensor([0.0, -0.3, -e1, 29.9, 30.0], dtype=torch.float64), lo, hi)
    assert leaf.tolist() == [8, 7, 6, 15, 0] and member.any(1).tolist() == [True] * 4 + [False]


# --------------------------------------------------------------------------- the tree


def test_tree_shapes_parameters_and_probabilities():
    torch.manual_seed(0)
    tree = RegressionTree(2049, 256, 5)
    assert sum(p.numel() for p in tree.parameters()) == 2_510_382
    logp, off = tree(torch.randn(3, 2049))
    assert logp.shape == off.shape == (3, 16)
    assert torch.allclose(torch.logsumexp(logp, 1), torch.zeros(3), atol=1e-5)
    for p in tree.parameters():
        torch.nn.init.zeros_(p)
    logp, off = tree(torch.randn(2, 2049))
    assert torch.allclose(logp, torch.full((2, 16), math.log(1 / 16))) and not off.any()


def test_tree_leaf_probability_is_the_product_along_its_path():
    """A slow walk of the tree node by node (child = 2 * parent + branch) agrees with the batched one."""
    torch.manual_seed(1)
    tree = RegressionTree(6, 4, 4)
    x = torch.randn(2, 6)
    logp, off = tree(x)
    for b in range(2):
        for leaf in range(8):
            state = torch.relu(tree.first(x[b]))
            node, total = 0, 0.0
            for level in range(3):
                branch = (leaf >> (2 - level)) & 1
                logits = state @ tree.branch[level].weight[node] + tree.branch[level].bias[node]
                total += torch.log_softmax(logits, -1)[branch].item()
                children = torch.relu(state @ tree.grow[level].weight[node] + tree.grow[level].bias[node])
                state = children[branch * 4:(branch + 1) * 4]
                node = 2 * node + branch
            assert logp[b, leaf].item() == pytest.approx(total, abs=1e-5)
            leaf_off = state @ tree.leaf.weight[leaf, :, 0] + tree.leaf.bias[leaf, 0]
            assert off[b, leaf].item() == pytest.approx(leaf_off.item(), abs=1e-5)


def test_inference_takes_the_most_probable_leaf():
    lo, hi = bounds()
    logp = torch.full((3, 16), -10.0)
    logp[0, 15], logp[1, 7], logp[2, 10] = 0.0, 0.0, 0.0   # [6, 10], [-1, 0], zero-width [2, 2]
    off = torch.full((3, 16), 0.25)
    assert infer_delta(logp, off, lo, hi).tolist() == pytest.approx([7.0, -0.75, 2.25])


# --------------------------------------------------------------------------- the model


def build(use_dd: bool = False, **cfg):
    torch.manual_seed(0)
    return build_model("core", use_dd=use_dd, edges=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0], **cfg)


@pytest.mark.parametrize("use_dd", [False, True])
@pytest.mark.parametrize("views,with_maps", LAYOUTS)
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes_on_both_cache_layouts(use_dd, views, with_maps, batch):
    model = build(use_dd)
    assert model.pairwise is True
    q, e = layout_batch(views, with_maps, batch, seed=0), layout_batch(views, with_maps, batch, seed=1)
    out = model(q, e)
    for k in ("delta", "delta_rev"):
        assert out[k].shape == (batch,)
    for k in ("leaf_logp", "leaf_off", "leaf_logp_rev", "leaf_off_rev"):
        assert out[k].shape == (batch, 16)
    total, parts = model.loss(out, q, e)
    assert set(parts) == {"nll", "off", "nll_rev", "off_rev"} and torch.isfinite(total)
    assert sum(parts.values()) == pytest.approx(total.item(), rel=1e-5)
    enc_q = model.encode(q)
    assert enc_q["video"].shape == (batch, 1024) and set(enc_q) == {"video", "ref", "score", "dd"}
    assert set(model.compare(enc_q, model.encode(e), reverse=False)) == {"delta", "leaf_logp", "leaf_off"}


def test_the_regressor_input_is_exemplar_first_with_its_scaled_reference():
    model = build(True)
    q, e = layout_batch(1, False, 2, seed=0), layout_batch(1, False, 2, seed=1)
    seen = []
    model.tree.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    model.compare(model.encode(q), model.encode(e), reverse=True)
    fq, fe = q["pooled"].mean(1), e["pooled"].mean(1)
    c = lambda b: b["score"] / b["difficulty"]  # noqa: E731
    assert torch.allclose(seen[0], torch.cat([fe, fq, (c(e) / 30).unsqueeze(1)], 1))
    assert torch.allclose(seen[1], torch.cat([fq, fe, (c(q) / 30).unsqueeze(1)], 1))


def test_tree_regression_target_per_leaf_and_loss_by_hand():
    """Offsets are trained only at each pair's true leaf; per-leaf mean squared errors are summed
    (a one-member leaf weighs as much as a crowded one); NLL of the true leaf."""
    model = build_model("core", edges=list(HAND_EDGES), theta=THETA)
    deltas = torch.tensor([0.5, 0.25, 2.5, -0.3])   # leaves 8, 8, 11, 7; offsets .5, .25, .5, .7
    leaf, target, member = leaf_targets(deltas, *bounds())
    assert leaf.tolist() == [8, 8, 11, 7] and target.tolist() == pytest.approx([0.5, 0.25, 0.5, 0.7])
    logp = torch.full((4, 16), math.log(1 / 16))
    off = torch.zeros(4, 16)
    off[:, 8] = 1.0    # leaf 8's offset for every pair; only the two members count
    nll, off_loss = model.tree_loss(logp, off, deltas)
    assert nll.item() == pytest.approx(math.log(16))
    leaf8 = ((1 - 0.5) ** 2 + (1 - 0.25) ** 2) / 2
    assert off_loss.item() == pytest.approx(leaf8 + 0.5 ** 2 + 0.7 ** 2)


def test_loss_uses_both_directions_with_the_right_targets():
    model = build_model("core", edges=list(HAND_EDGES), theta=THETA)
    q, e = layout_batch(1, False, 2, seed=0), layout_batch(1, False, 2, seed=1)
    q["score"], e["score"] = torch.tensor([5.5, 3.0]), torch.tensor([5.0, 3.0])
    out = model(q, e)
    total, parts = model.loss(out, q, e)
    nll, off = model.tree_loss(out["leaf_logp"], out["leaf_off"], torch.tensor([0.5, 0.0]))
    nll_rev, off_rev = model.tree_loss(out["leaf_logp_rev"], out["leaf_off_rev"], torch.tensor([-0.5, 0.0]))
    assert parts == pytest.approx({"nll": nll.item(), "off": off.item(), "nll_rev": nll_rev.item(),
                                   "off_rev": off_rev.item()}, rel=1e-6)


@pytest.mark.parametrize("use_dd", [False, True])
def test_delta_plus_exemplar_score_is_cores_score_and_ignores_the_querys_score(use_dd):
    model = build(use_dd).eval()
    q, e = layout_batch(1, False, 3, seed=0), layout_batch(1, False, 3, seed=1)
    out = model.compare(model.encode(q), model.encode(e), reverse=False)
    d_hat = infer_delta(out["leaf_logp"], out["leaf_off"], *(torch.as_tensor(b) for b in model.bounds))
    if use_dd:
        expected = (d_hat + e["score"] / e["difficulty"]) * q["difficulty"]
    else:
        expected = d_hat + e["score"]
    assert torch.allclose(out["delta"] + e["score"], expected, atol=1e-5)
    leaked = dict(q, score=q["score"] + 17.0)  # the query's own score must not reach its prediction
    again = model.compare(model.encode(leaked), model.encode(e), reverse=False)
    assert torch.equal(again["delta"], out["delta"])


class DDData:
    """The host's DiveData with the batch keys CoRe's DD mode reads (part B adds them)."""

    def __init__(self, data):
        self.data = data

    def __getattr__(self, name):
        return getattr(self.data, name)

    def batch(self, idx, views=None, *, with_maps=True):
        return host_batch(self.data, idx, views, with_maps=with_maps)


@pytest.mark.parametrize("use_dd", [False, True])
def test_the_hosts_voting_scores_core_as_the_mean_of_its_exemplar_scores(use_dd):
    model = build(use_dd)
    data = DDData(make_data(12))
    queries, ex = np.array([8, 9, 10]), np.array([[0, 1, 2], [3, 3, 3], [4, 5, -1]])
    votes = vote(model, data, queries, ex, batch_size=2)
    for i, q in enumerate(queries):
        mine = []
        for e in ex[i][ex[i] >= 0]:
            out = model.eval().compare(model.encode(data.batch([q])), model.encode(data.batch([e])), reverse=False)
            mine.append(out["delta"].item() + data.score[e].item())
        assert votes.pred[i] == pytest.approx(np.mean(mine), abs=1e-4)
    assert votes.pred[1] == pytest.approx(votes.per_exemplar[1, 0], abs=1e-5)  # M identical exemplars = one


def test_pool_settings_of_a_hand_made_pool():
    score = np.array([10.0, 20.0, 40.0, 80.0, 12.0])
    dd = np.array([2.0, 2.0, 4.0, 4.0, 3.0])
    action = np.array(["a", "a", "b", "b", "c"])
    # c = 5, 10 | 10, 20 | 4 -> same-type diffs 5, 10 (n = 2): every index int(i / 8 * 1) is 0
    dn = core_pool_settings(score, dd, action, "dn")
    assert dn == {"use_dd": True, "theta": 30.0, "depth": 5, "edges": [5.0] * 7}
    nodn = core_pool_settings(score, dd, action, "nodn")
    assert nodn["use_dd"] is False and nodn["theta"] == 100.0
    assert nodn["edges"] == list(group_edges(pair_differences(score)))
    with pytest.raises(ValueError, match="exemplar mode"):
        core_pool_settings(score, dd, action, "random")


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs `edges`"):
        build_model("core")
    with pytest.raises(ValueError, match="needs 7 edges"):
        build_model("core", edges=[1.0, 2.0])
    with pytest.raises(ValueError, match="rise from 0 to theta"):
        build_model("core", edges=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 40.0], use_dd=True)


@pytest.mark.parametrize("use_dd", [False, True])
def test_loss_decreases_on_a_tiny_fit(use_dd):
    model = build(use_dd, hidden=32)
    data = make_data(12, seed=3)
    q, e = host_batch(data, range(6), with_maps=False), host_batch(data, [3, 4, 5, 0, 1, 2], with_maps=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        total, _ = model.loss(model(q, e), q, e)
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0], losses
