"""aqa.report.figures on histories the training loop can write but the default run does not show
(the figures of real runs: tests/integration/test_make_figures.py)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from aqa.report import plots_data
from aqa.report.figures import _save, curves_figure


def test_curves_without_a_validation_split_still_draw(tmp_path):
    for seed in (0, 1):
        path = tmp_path / f"seed{seed}" / "history.json"
        path.parent.mkdir()
        path.write_text(json.dumps([{"epoch": e, "train": {"loss": 2.0 - e + seed}, "val": {}, "test": {"rho": 0.1 * e}}
                                    for e in range(3)]))
    seeds = plots_data.history(tmp_path)
    out = tmp_path / "curves.png"
    _save(curves_figure("fr-dn", "MTL-AQA", seeds, plots_data.history_mean(seeds)), out, dpi=60)
    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape == (204, 540) and (image < 128).mean() > 0.01
