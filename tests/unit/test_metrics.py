"""aqa.metrics against the authors' released TSA predictions and small hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from aqa.metrics import aiou, regression_metrics, segment_iou
from shared_data import shared_path


def test_reference_tsa_predictions():
    folder = shared_path("reference", "TSA_FineDiving_test")
    pred, true = np.load(folder / "pred.npy"), np.load(folder / "true.npy")
    m = regression_metrics(pred, true)
    assert round(m["rho"], 5) == 0.92124
    assert round(m["rl2"] * 100, 4) == 0.3370
    assert round(m["l2"], 2) == 36.73


def test_regression_metrics_by_hand():
    true = np.array([10.0, 20.0, 30.0, 50.0])
    pred = np.array([12.0, 18.0, 35.0, 50.0])
    m = regression_metrics(pred, true)
    assert m["rho"] == pytest.approx(1.0)
    assert m["l2"] == pytest.approx((4 + 4 + 25 + 0) / 4)
    assert m["rl2"] == pytest.approx(((2 / 40) ** 2 + (2 / 40) ** 2 + (5 / 40) ** 2) / 4)
    assert regression_metrics(pred[::-1].copy(), true)["rho"] == pytest.approx(-1.0)


def test_constant_inputs_give_nan_not_errors():
    m = regression_metrics(np.full(5, 3.0), np.arange(5.0))
    assert np.isnan(m["rho"]) and m["l2"] == pytest.approx(np.mean((3.0 - np.arange(5.0)) ** 2))
    m = regression_metrics(np.arange(5.0), np.full(5, 2.0))
    assert np.isnan(m["rho"]) and np.isnan(m["rl2"])


def test_regression_metrics_rejects_mismatch():
    with pytest.raises(ValueError, match="differ"):
        regression_metrics([1, 2, 3], [1, 2])


def test_segment_iou_by_hand():
    true = np.array([[10, 50], [10, 50], [10, 50], [10, 50], [30, 30]])
    pred = np.array([[10, 50], [20, 60], [50, 70], [0, 100], [30, 30]])
    # inter 40/40; 30/(40+40-30); 0 (touching, no +1); 40/100; identical points -> 0 (eps)
    np.testing.assert_allclose(segment_iou(pred, true), [1.0, 0.6, 0.0, 0.4, 0.0])


def test_aiou_thresholds():
    true = np.array([[10, 50]] * 4)
    pred = np.array([[10, 50], [20, 60], [12, 50], [0, 100]])  # IoU 1, 0.6, 0.95, 0.4
    assert aiou(pred, true) == {0.5: 0.75, 0.75: 0.5}
    assert aiou(pred[:1], true[:1], thresholds=(1.0,)) == {1.0: 1.0}
    # a single pair may be given as (2,)
    assert aiou([20, 60], [10, 50])[0.5] == 1.0
