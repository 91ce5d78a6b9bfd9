"""aqa.evaluate.mask_metrics against pysodmetrics 1.6.2 (the oracle, imported here only) on
generated masks, edge cases included, to 1e-6; the code's IoU / F1 / F2 against a direct count."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from aqa.evaluate import mask_metrics as M

sod = pytest.importorskip("py_sod_metrics", reason="the oracle (requirements-test.txt) is not installed")

H, W = 28, 36


def _blob(rng, h=H, w=W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(2, h / 2), rng.uniform(1, w / 3)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def generated_cases(seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, pred in [0, 1] float64, gt bool) frames: blurred / noisy / shifted predictions of
    ellipse masks, and the edge cases."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(24):
        gt = _blob(rng)
        soft = np.clip(gt * rng.uniform(0.4, 1.0) + rng.normal(0, 0.25, gt.shape), 0, 1)
        shifted = np.roll(gt, rng.integers(-4, 5, size=2), axis=(0, 1)).astype(np.float64)
        cases += [(f"soft{i}", soft, gt), (f"shifted{i}", shifted, gt),
                  (f"uniform{i}", rng.uniform(0, 1, gt.shape), gt)]
    gt = _blob(rng)
    empty, full = np.zeros((H, W), bool), np.ones((H, W), bool)
    noisy = rng.uniform(0, 1, (H, W))
    cases += [("empty gt, noisy pred", noisy, empty), ("empty gt, empty pred", np.zeros((H, W)), empty),
              ("full gt, noisy pred", noisy, full), ("full gt, full pred", np.ones((H, W)), full),
              ("empty pred", np.zeros((H, W)), gt), ("full pred", np.ones((H, W)), gt),
              ("perfect", gt.astype(np.float64), gt), ("inverted", (~gt).astype(np.float64), gt),
              ("one pixel gt", noisy, np.pad(np.ones((1, 1), bool), ((3, H - 4), (5, W - 6)))),
              ("quantisation edges", np.round(noisy * 255) / 255, gt)]
    return cases


def _oracle(pred: np.ndarray, gt: np.ndarray, normalize: bool) -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm, mae_, sm = sod.Fmeasure(beta=0.3), sod.MAE(), sod.Smeasure(alpha=0.5)
    out = {}
    for metric in (fm, mae_, sm):
        metric.step(pred, gt, normalize=normalize)
    out["mae"] = mae_.maes[0]
    out["adaptive"] = fm.adaptive_fms[0]
    out["curve"] = np.flip(fm.changeable_fms[0])   # the oracle orders thresholds 255 .. 0
    out["sm"] = sm.sms[0]
    return out


@pytest.mark.parametrize("normalize", [False, True])
def test_frame_metrics_match_pysodmetrics(normalize):
    cases = generated_cases()
    if normalize:   # the toolkit's normalised path reads uint8 maps and ground truths
        preds = np.stack([np.round(p * 255).astype(np.uint8) for _, p, _ in cases])
        gts = np.stack([np.where(g, 255, 0).astype(np.uint8) for _, _, g in cases])
        mine_pred, mine_gt = M.minmax(preds / 255.0), gts > 128
    else:
        preds, gts = np.stack([p for _, p, _ in cases]), np.stack([g for _, _, g in cases])
        mine_pred, mine_gt = preds, gts
    got = {"mae": M.mae(mine_pred, mine_gt), "adaptive": M.adaptive_fbeta(mine_pred, mine_gt),
           "curve": M.fbeta_curve(mine_pred, mine_gt), "sm": M.smeasure(mine_pred, mine_gt)}
    for i, (name, _, _) in enumerate(cases):
        want = _oracle(preds[i], gts[i], normalize)
        for key in ("mae", "adaptive", "sm"):
            assert got[key][i] == pytest.approx(want[key], abs=1e-6), (name, key)
        np.testing.assert_allclose(got["curve"][i], want["curve"], atol=1e-6, err_msg=name)


def test_edge_cases_have_the_defined_values():
    gt = np.zeros((1, H, W), bool)
    assert M.smeasure(np.zeros((1, H, W)), gt)[0] == 1.0           # empty gt, empty prediction: perfect
    assert M.smeasure(np.full((1, H, W), 0.25), gt)[0] == pytest.approx(0.75)
    assert M.adaptive_fbeta(np.ones((1, H, W)), gt)[0] == 0.0      # no foreground: F is 0, as the toolkit
    assert M.mae(np.ones((1, H, W)), ~gt)[0] == 0.0
    assert M.smeasure(np.ones((1, H, W)), ~gt)[0] == 1.0


def test_a_block_without_pixels_adds_nothing_where_the_toolkit_gives_nan():
    gt = np.zeros((1, H, W), bool)
    gt[0, 5:9, W - 1] = True   # centroid on the last column: the right blocks are empty
    pred = np.clip(gt + 0.1, 0, 1)
    assert np.isfinite(M.smeasure(pred, gt)[0]) and 0 < M.smeasure(pred, gt)[0] <= 1


def test_binary_scores_are_the_codes_micro_counts_per_dive():
    rng = np.random.default_rng(3)
    gt = np.stack([_blob(rng) for _ in range(5)])
    logits = rng.normal(0, 2, gt.shape) + 3 * gt
    positive = M.code_positive(logits)
    assert (positive == (logits >= 0.5)).all()
    tp = (positive & gt).sum()
    fp = (positive & ~gt).sum()
    fn = (~positive & gt).sum()
    scores = M.dive_scores(1 / (1 + np.exp(-logits)), gt, positive)
    assert tuple(scores.confusion) == (tp, fp, fn)
    summary = M.summarise([scores])
    assert summary["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert summary["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert summary["f2"] == pytest.approx(5 * tp / (5 * tp + 4 * fn + fp))
    # the default positive rule on probabilities is the code's logit rule
    default = M.dive_scores(1 / (1 + np.exp(-logits)), gt)
    assert tuple(default.confusion) == (tp, fp, fn)


def test_averaging_is_per_frame_then_per_dive_then_over_dives():
    rng = np.random.default_rng(5)
    short = np.stack([_blob(rng) for _ in range(2)])
    long = np.stack([_blob(rng) for _ in range(6)])
    pred_short = np.zeros(short.shape)           # MAE = foreground fraction per frame
    pred_long = long.astype(np.float64)          # MAE = 0
    a, b = M.dive_scores(pred_short, short), M.dive_scores(pred_long, long)
    summary = M.summarise([a, b])
    assert summary["mae"] == pytest.approx(short.mean() / 2)   # dives count equally, not frames
    assert summary["frames"] == 8 and summary["dives"] == 2
    curve = (a.fbeta_curve + b.fbeta_curve) / 2
    assert summary["fbeta_max"] == pytest.approx(curve.max()) and summary["fbeta_mean"] == pytest.approx(curve.mean())
    # a dive with nothing to find and nothing found is perfect for the code's scores
    empty = M.dive_scores(np.zeros((2, H, W)), np.zeros((2, H, W), bool))
    assert M.summarise([empty])["iou"] == 1.0


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="bool"):
        M.mae(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.mae(np.full((1, 4, 4), 2.0), np.zeros((1, 4, 4), bool))
    with pytest.raises(ValueError, match="must both be"):
        M.smeasure(np.zeros((1, 4, 4)), np.zeros((1, 4, 5), bool))


def test_dive_scores_normalise_each_frame_unless_told_not_to():
    rng = np.random.default_rng(8)
    gt = np.stack([_blob(rng) for _ in range(3)])
    faint = 0.2 * gt + 0.1                        # a faint map: min-max stretches it to the ground truth
    assert M.dive_scores(faint, gt).mae == pytest.approx(0.0)
    assert M.dive_scores(faint, gt, normalize=False).mae == pytest.approx(np.mean(np.abs(faint - gt)))
    # the code's binary prediction reads the raw map (p >= sigmoid(0.5)), not the normalised one
    assert tuple(M.dive_scores(faint, gt).confusion) == (0, 0, gt.sum())
