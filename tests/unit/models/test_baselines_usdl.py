"""USDL and MUSDL: the Gaussian targets, the KL loss as the source computes it, the prediction,
MUSDL's panel assembly for 3, 5 and 7 judges and its rule for impossible judge values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from aqa.models.registry import build_model
from aqa.models.usdl import (
    assemble_panel, decode, gaussian_targets, judge_masks, out_of_range_judges,
)
from baseline_data import judges_tensor, layout_batch


# --------------------------------------------------------------------------- targets


def test_gaussian_target_sums_to_one_with_its_peak_at_the_scores_bin():
    t = gaussian_targets(torch.tensor([52.25, 0.0, 80.0]), 101, 104.5, 5.0)
    assert t.dtype == torch.float32 and t.shape == (3, 101)
    assert torch.allclose(t.sum(-1), torch.ones(3), atol=1e-6)
    assert t[0].argmax() == 50 and t[1].argmax() == 0
    assert t[2].argmax() == round(80.0 * 100 / 104.5)  # bin 76.6 -> 77
    assert torch.allclose(t[0, :50], t[0, 51:].flip(0))  # symmetric about bin 50


def test_gaussian_target_of_a_score_above_the_range_rises_to_the_last_bin():
    t = gaussian_targets(torch.tensor(114.8), 101, 104.5, 5.0)  # FineDiving's largest score (D5)
    assert t.argmax() == 100 and bool((t[1:] >= t[:-1]).all())
    assert t.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_gaussian_target_equals_the_sources_pdf_over_its_sum():
    for score in (0.0, 33.3, 52.25, 104.5):
        pdf = stats.norm.pdf(np.arange(101), loc=score * 100 / 104.5, scale=5.0).astype(np.float32)
        ref = pdf / pdf.sum()
        ours = gaussian_targets(torch.tensor(score), 101, 104.5, 5.0).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-7)


def test_judge_targets_centre_on_twice_the_judge_score():
    t = gaussian_targets(torch.tensor([[8.5, 0.0, 10.0]]), 21, 10.0, 5.0)
    assert t.shape == (1, 3, 21) and [int(i) for i in t[0].argmax(-1)] == [17, 0, 20]


def test_decode_argmax_and_expectation():
    logp = torch.full((2, 101), -1e4)
    logp[0, 50], logp[1, 100] = 0.0, 0.0
    assert decode(logp, 104.5).tolist() == pytest.approx([52.25, 104.5])
    two = torch.log(torch.tensor([[0.0, 0.5, 0.5]]) + 1e-30)  # bins 1 and 2 equally likely
    assert decode(two, 2.0, "expectation").item() == pytest.approx(1.5, abs=1e-6)
    assert decode(two, 2.0, "argmax").item() == 1.0  # the first of the tied bins
    with pytest.raises(ValueError, match="prediction must be one of"):
        decode(two, 2.0, "median")


# --------------------------------------------------------------------------- USDL


# the sources' nn.KLDivLoss() default ("mean" over all elements) is what we compare against
KL_MEAN_WARNING = "ignore:reduction. 'mean' divides the total loss:UserWarning"


@pytest.mark.filterwarnings(KL_MEAN_WARNING)
def test_usdl_architecture_and_loss_as_the_source():
    torch.manual_seed(0)
    model = build_model("usdl")
    dims = [m.out_features for m in model.mlp.net if isinstance(m, torch.nn.Linear)]
    assert dims == [256, 128, 101] and sum(p.numel() for p in model.parameters()) == 308_325
    b = layout_batch(1, False, 4)
    out = model(b)
    total, parts = model.loss(out, b)
    # nn.KLDivLoss() (reduction "mean": over B * K) on log(softmax) and the soft labels
    target = gaussian_targets(b["score"], 101, 104.5, 5.0)
    ref = torch.nn.KLDivLoss()(torch.log(out["log_probs"].exp()), target)
    assert total.item() == pytest.approx(ref.item(), rel=1e-4)
    assert out["score"].tolist() == pytest.approx((out["log_probs"].argmax(-1) * 1.045).tolist())


def test_usdl_with_dd_learns_the_execution_part_on_0_30():
    torch.manual_seed(0)
    model = build_model("usdl", use_dd=True)
    assert model.cfg.value_max == 30.0
    b = layout_batch(1, False, 3)
    out = model(b)
    assert torch.allclose(out["score"], out["log_probs"].argmax(-1) * 0.3 * b["difficulty"])
    target = model.targets(b, torch.device("cpu"))
    expected_bins = (b["score"] / b["difficulty"] * 100 / 30).round()
    assert torch.equal(target.argmax(-1).float(), expected_bins)


def test_usdl_expectation_prediction():
    torch.manual_seed(0)
    model = build_model("usdl", prediction="expectation")
    out = model(layout_batch(1, False, 2))
    bins = torch.arange(101).float()
    assert torch.allclose(out["score"], (out["log_probs"].exp() * bins).sum(-1) * 1.045, atol=1e-4)
    with pytest.raises(ValueError, match="prediction"):
        build_model("usdl", prediction="mode")


# --------------------------------------------------------------------------- MUSDL


def one_hot_heads(model, judge_scores: list[list[float]]) -> None:
    """Make head j of `model` put all its mass on bin 2 * s_j for every input (zero last-layer
    weights, bias 50 at the bin): one judge panel per test, the heads beyond it on bin 0."""
    (panel,) = judge_scores
    with torch.no_grad():
        for j, head in enumerate(model.heads):
            last = head.net[-1]
            last.weight.zero_()
            last.bias.fill_(-50.0)
            last.bias[int(round(2 * panel[j])) if j < len(panel) else 0] = 50.0


@pytest.mark.parametrize("panel,dd,expected", [
    # the USDL paper's worked example: sorted 8.0 8.5 8.5 9.0 9.0 9.0 9.0 -> middle 8.5 + 9.0 + 9.0
    ([9.0, 8.5, 9.0, 8.0, 9.0, 8.5, 9.0], 3.8, (9.0 + 9.0 + 8.5) * 3.8),
    ([7.0, 7.5, 6.5, 7.0, 8.0], 3.0, 0.6 * 36.0 * 3.0),   # 5 judges: DD x 0.6 x sum
    ([8.0, 8.5, 7.5], 2.0, 24.0 * 2.0),                    # 3 judges: DD x sum
])
def test_musdl_assembly_against_a_hand_computation(panel, dd, expected):
    torch.manual_seed(0)
    model = build_model("musdl")
    one_hot_heads(model, [panel])
    b = layout_batch(1, False, 1)
    b["difficulty"] = torch.tensor([dd])
    b["num_judges"] = torch.tensor([len(panel)])
    out = model(b)
    assert out["judge_scores"][0, :len(panel)].tolist() == panel
    assert model.predict(out).item() == pytest.approx(expected, abs=1e-4)
    assert expected == pytest.approx({7: 100.70, 5: 64.8, 3: 48.0}[len(panel)])


def test_assemble_panel_mixes_panel_sizes_in_one_batch():
    panels = [[9.0, 8.5, 9.0, 8.0, 9.0, 8.5, 9.0], [7.0, 7.5, 6.5, 7.0, 8.0], [8.0, 8.5, 7.5]]
    scores = torch.nan_to_num(judges_tensor(panels), nan=3.0)  # whatever the heads beyond n say
    got = assemble_panel(scores, torch.tensor([7, 5, 3]), torch.tensor([3.8, 3.0, 2.0]))
    assert got.tolist() == pytest.approx([100.70, 64.8, 48.0], abs=1e-4)
    with pytest.raises(ValueError, match=r"no panel rule for \[4\] judges"):
        assemble_panel(scores, torch.tensor([7, 4, 3]), torch.ones(3))


def test_panel_rules_reproduce_the_real_finediving_scores(finediving_annotations_dir):
    """BASELINES.md section 5: the rule by judge count fits dive_score within 0.05 for 92.7 % /
    98.7 % / 98.7 % of the 7 / 3 / 5-judge dives."""
    from aqa.data.finediving import read_finediving

    dives = list(read_finediving(finediving_annotations_dir).dives.values())
    n = torch.tensor([len(d.judge_scores) for d in dives])
    pred = assemble_panel(torch.nan_to_num(judges_tensor([d.judge_scores for d in dives]).double()), n,
                          torch.tensor([d.difficulty for d in dives], dtype=torch.float64))
    error = (pred - torch.tensor([d.dive_score for d in dives], dtype=torch.float64)).abs()
    fit = error <= 0.05 + 1e-6  # 0.05 itself, whatever the float rounding
    assert {k: int((n == k).sum()) for k in (3, 5, 7)} == {3: 1024, 5: 607, 7: 1369}
    assert {k: int(fit[n == k].sum()) for k in (3, 5, 7)} == {3: 1011, 5: 599, 7: 1270}  # 98.7 / 98.7 / 92.77 %


def test_impossible_judge_values_are_left_out_of_training_and_reported():
    """D4: 55.5 and 45.0 (FineDiving's two impossible judge values) are masked; 8.9 (off the 0.5
    grid, in range) is kept; entries beyond the panel are absent, not errors."""
    panels = [[9.0, 55.5, 9.0, 8.0, 9.0, 8.5, 9.0], [45.0, 7.5, 6.5, 7.0, 8.0], [8.9, 8.5, 7.5]]
    judges, num = judges_tensor(panels), torch.tensor([7, 5, 3])
    bad = out_of_range_judges(judges, num)
    assert bad.nonzero().tolist() == [[0, 1], [1, 0]]
    _, trained = judge_masks(judges, num, 7)
    assert trained.sum(1).tolist() == [6, 4, 3] and trained[2, 0]

    torch.manual_seed(0)
    model = build_model("musdl")
    b = layout_batch(1, False, 3)
    b["judges"], b["num_judges"] = judges, num
    out = model(b)
    total, _ = model.loss(out, b)
    assert torch.isfinite(total)
    # the masked values do not move the loss (whatever impossible value), nor the padding; 8.9 does
    for row, col, other in ((0, 1, 60.0), (1, 0, -1.0), (1, 6, 9.5)):  # bad stays bad; beyond the panel
        changed = dict(b, judges=judges.clone())
        changed["judges"][row, col] = other
        assert model.loss(out, changed)[0].item() == pytest.approx(total.item(), rel=1e-6)
    changed = dict(b, judges=judges.clone())
    changed["judges"][2, 0] = 5.0
    assert model.loss(out, changed)[0].item() != pytest.approx(total.item(), rel=1e-6)


@pytest.mark.filterwarnings(KL_MEAN_WARNING)
def test_musdl_loss_with_full_panels_is_the_sources_sum_over_judges():
    torch.manual_seed(0)
    model = build_model("musdl")
    assert sum(p.numel() for p in model.parameters()) == 2_086_035
    b = layout_batch(1, False, 4)
    panels = [[9.0, 8.5, 9.0, 8.0, 9.0, 8.5, 9.0], [6.0] * 7, [7.5, 7.0, 8.0, 7.5, 7.0, 6.5, 7.0], [10.0] * 7]
    b["judges"], b["num_judges"] = judges_tensor(panels), torch.full((4,), 7)
    out = model(b)
    total, _ = model.loss(out, b)
    soft = gaussian_targets(b["judges"], 21, 10.0, 5.0)  # (B, 7, 21)
    ref = sum(torch.nn.KLDivLoss()(torch.log(out["judge_log_probs"][:, j].exp()), soft[:, j]) for j in range(7))
    assert total.item() == pytest.approx(ref.item(), rel=1e-4)


def test_short_panels_weigh_each_judge_entry_equally():
    """A 3-judge dive trains heads 1-3 only; the loss is the sum over trained entries / (B * 21)."""
    torch.manual_seed(0)
    model = build_model("musdl")
    b = layout_batch(1, False, 2)
    panels = [[9.0, 8.5, 9.0, 8.0, 9.0, 8.5, 9.0], [8.0, 8.5, 7.5]]
    b["judges"], b["num_judges"] = judges_tensor(panels), torch.tensor([7, 3])
    out = model(b)
    total, _ = model.loss(out, b)
    soft = gaussian_targets(torch.nan_to_num(b["judges"]), 21, 10.0, 5.0)
    kl = torch.nn.functional.kl_div(out["judge_log_probs"], soft, reduction="none").sum(-1)  # (2, 7)
    assert total.item() == pytest.approx((kl[0].sum() + kl[1, :3].sum()).item() / (2 * 21), rel=1e-5)


def test_panels_larger_than_the_heads_are_refused():
    with pytest.raises(ValueError, match="at least 7 heads"):
        build_model("musdl", num_heads=5)
    with pytest.raises(ValueError, match="panels of"):
        judge_masks(torch.zeros(1, 7), torch.tensor([8]), 7)
