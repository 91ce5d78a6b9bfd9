"""aqa.report.plots_data: flattening histories and predictions, and its refusals (one line, the file named).
The real files are flattened in tests/integration/test_make_figures.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aqa.report import plots_data
from aqa.report.plots_data import PlotsDataError


def _history(folder, seed, rhos):
    path = folder / f"seed{seed}" / "history.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"epoch": e, "train": {"loss": 10.0 - e}, "val": {"rho": r}, "test": {"rho": r / 2}}
                                for e, r in enumerate(rhos)]))
    return path


def test_mean_and_sample_std_over_seeds(tmp_path):
    _history(tmp_path, 0, [0.1, 0.3])
    _history(tmp_path, 1, [0.3, 0.5])
    seeds = plots_data.history(tmp_path)
    assert list(seeds.columns) == ["epoch", "seed", "loss", "val_rho", "test_rho"]   # no AIoU: not segmenting
    mean = plots_data.history_mean(seeds)
    assert mean["val_rho"].tolist() == pytest.approx([0.2, 0.4])
    assert mean["val_rho_std"].tolist() == pytest.approx([0.1414214, 0.1414214])
    assert mean["seeds"].tolist() == [2, 2]


def test_one_seed_has_zero_spread(tmp_path):
    _history(tmp_path, 3, [0.1, 0.2, 0.4])
    mean = plots_data.history_mean(plots_data.history(tmp_path))
    assert mean["test_rho_std"].tolist() == [0.0, 0.0, 0.0]


def test_no_validation_split_leaves_val_rho_empty(tmp_path):
    """Without validation dives the training loop records "val": {} (aqa.train.loop): the column
    stays, empty, so DVC's plots find the fields dvc.yaml names in every variant's CSV."""
    path = tmp_path / "seed0" / "history.json"
    path.parent.mkdir()
    path.write_text(json.dumps([{"epoch": e, "train": {"loss": 1.0}, "val": {}, "test": {"rho": 0.5}} for e in (0, 1)]))
    seeds = plots_data.history(tmp_path)
    assert list(seeds.columns) == ["epoch", "seed", "loss", "val_rho", "test_rho"]
    assert seeds["val_rho"].isna().all()
    mean = plots_data.history_mean(seeds)
    assert mean["val_rho"].isna().all() and mean["val_rho_std"].isna().all()
    assert mean["test_rho_std"].tolist() == [0.0, 0.0]
    assert "epoch,loss,loss_std,val_rho,val_rho_std,test_rho" in plots_data.to_csv(mean)


def test_damaged_or_missing_inputs_name_the_file(tmp_path):
    with pytest.raises(PlotsDataError, match="no seed<k>/ folder"):
        plots_data.history(tmp_path)
    path = _history(tmp_path, 0, [0.1])
    path.write_text('[{"epoch": 0, ')
    with pytest.raises(PlotsDataError, match=f"{path}: not valid JSON"):
        plots_data.history(tmp_path)
    path.write_text('{"epoch": 0}')
    with pytest.raises(PlotsDataError, match="list of per-epoch entries"):
        plots_data.history(tmp_path)
    preds = tmp_path / "pred"
    preds.mkdir()
    with pytest.raises(PlotsDataError, match="no seed<k>.parquet"):
        plots_data.test_predictions(preds)
    pd.DataFrame({"key": ["a/1"], "true": [1.0]}).to_parquet(preds / "seed0.parquet")
    with pytest.raises(PlotsDataError, match="seed0.parquet: no column\\(s\\) predicted"):
        plots_data.test_predictions(preds)
    (preds / "seed0.parquet").write_bytes(b"not parquet")
    with pytest.raises(PlotsDataError, match="seed0.parquet: not a readable Parquet file"):
        plots_data.test_predictions(preds)


def test_summary_is_four_numbers(tmp_path):
    metrics = {"honest": {"rho": {"mean": 0.512345678, "std": 0.1}, "rl2_x100": {"mean": 3.0}},
               "paper": {"rho": {"mean": 0.6}}, "units": "text", "footage": "stand-in"}
    assert plots_data.summary(metrics) == {"honest_rho": 0.5123, "honest_rl2_x100": 3.0, "paper_rho": 0.6,
                                           "paper_rl2_x100": None}
