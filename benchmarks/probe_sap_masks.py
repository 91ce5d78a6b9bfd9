"""SAP's predicted masks of a trained FineParser on the test dives, scored with and without the
per-frame min-max normalisation of the mask metrics, and the raw probabilities on foreground and
background pixels (the diagnosis in reports/data/stand_in_card.md, "FineParser").

    PYTHONPATH=src python benchmarks/probe_sap_masks.py --project /work/fp-run \
        --models models/fineparser-dn --seeds 0 1

`--project` holds the run's data/ (a feature cache with FineParser's additions) and the models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from aqa.evaluate import mask_metrics as M
from aqa.evaluate.run import build
from aqa.evaluate.sap_masks import predicted_masks
from aqa.train.checkpoint import load_checkpoint
from aqa.train.data import load_dive_data
from aqa.train.run import split_rows

SHOWN = ("mae", "fbeta_adaptive", "fbeta_max", "smeasure")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--models", default="models/fineparser-dn")
    ap.add_argument("--dataset", default="finediving")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = args.project
    data = load_dive_data(root / f"data/processed/annotations/{args.dataset}/dives.parquet",
                          root / f"data/processed/features/{args.dataset}/i3d", torch.device("cpu"),
                          cache_keys=("mixed4f", "sve", "masks"))
    for seed in args.seeds:
        best = load_checkpoint(root / args.models / f"seed{seed}" / "best_val.pt")
        model = build(best["config"], torch.device("cpu"), data)
        model.load_state_dict(best["model"])
        test = split_rows(data, best["config"]["train"])[2]
        normalised, raw, stats = [], [], []

        def score(row: int, pred: np.ndarray, gt: np.ndarray) -> None:
            normalised.append(M.dive_scores(pred, gt))
            raw.append(M.dive_scores(pred, gt, normalize=False))
            stats.append((pred.mean(), pred[gt].mean() if gt.any() else np.nan, pred[~gt].mean(), gt.mean()))

        predicted_masks(model, data, test, batch_size=8, on_dive=score)
        s = np.array(stats)
        for name, scores in (("min-max normalised", normalised), ("raw probabilities", raw)):
            summary = M.summarise(scores)
            print(f"seed {seed}, {name}: " + ", ".join(f"{k} {summary[k]:.4f}" for k in SHOWN))
        print(f"seed {seed}: probability mean {s[:, 0].mean():.4f}, on foreground {np.nanmean(s[:, 1]):.4f}, "
              f"on background {s[:, 2].mean():.4f}; ground-truth foreground share {s[:, 3].mean():.4f}")


if __name__ == "__main__":
    main()
