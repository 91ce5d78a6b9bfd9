"""Flat tables for DVC's plots and metrics, read from what train and evaluate wrote.

DVC's `plots` need one flat CSV per plot (history.json is a list of nested dicts, predictions
are Parquet), and `dvc metrics show` prints one column per key of its files (the evaluate
JSONs have ~90), so this module flattens:

- `history(<models>/<variant>)`: per epoch and seed, the training loss and the validation and
  test rho (and the test AIoU of methods that segment); `history_mean` averages it over seeds.
- `test_predictions(<predictions>/<variant>)`: per test dive and seed, true and predicted score
  (and the transitions, for methods that segment).
- `summary(metrics)`: the honest and paper rho and R-l2 means of one variant, numbers only.

Pure functions of their inputs: no time, path or host in what they return.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aqa.errors import AqaError

SEED_DIR = re.compile(r"seed(\d+)")
SEED_FILE = re.compile(r"seed(\d+)\.parquet")
# per-epoch columns of the history table: (column, section of a history.json entry, key)
HISTORY_COLUMNS = (("loss", "train", "loss"), ("val_rho", "val", "rho"), ("test_rho", "test", "rho"),
                   ("test_aiou50", "test", "aiou50"), ("test_aiou75", "test", "aiou75"))
# always written (empty where a run has none: no validation split leaves "val" empty), so every
# variant's CSV has the columns dvc.yaml's plots name; the AIoU columns only for methods that segment
FIXED_COLUMNS = ("loss", "val_rho", "test_rho")
TRANSITIONS = ("pred_t1", "pred_t2", "true_t1", "true_t2")


class PlotsDataError(AqaError):
    """A history or predictions file that cannot be flattened (missing, damaged, wrong shape)."""


def _seed_folders(models_dir: Path) -> list[tuple[int, Path]]:
    found = sorted((int(m.group(1)), p) for p in Path(models_dir).iterdir()
                   if p.is_dir() and (m := SEED_DIR.fullmatch(p.name)))
    if not found:
        raise PlotsDataError(f"{models_dir}: no seed<k>/ folder (train this variant first)")
    return found


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else float("nan")


def history(models_dir: Path) -> pd.DataFrame:
    """One row per (epoch, seed): epoch, seed, loss, val_rho, test_rho[, test_aiou50, test_aiou75].

    The AIoU columns are there only when the method predicts transitions (its history has them);
    a value the history lacks (no validation split: "val" is empty) is NaN."""
    rows = []
    for seed, folder in _seed_folders(models_dir):
        path = folder / "history.json"
        try:
            entries = json.loads(path.read_text())
        except FileNotFoundError:
            raise PlotsDataError(f"{path}: missing (train this variant first)") from None
        except ValueError as exc:
            raise PlotsDataError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "epoch" in e for e in entries):
            raise PlotsDataError(f"{path}: expected a list of per-epoch entries with an 'epoch'")
        for entry in entries:
            row = {"epoch": int(entry["epoch"]), "seed": seed, **dict.fromkeys(FIXED_COLUMNS, float("nan"))}
            for column, section, key in HISTORY_COLUMNS:
                if key in (entry.get(section) or {}):
                    row[column] = _number(entry[section][key])
            rows.append(row)
    table = pd.DataFrame(rows).sort_values(["epoch", "seed"], kind="stable").reset_index(drop=True)
    return table[[c for c in ("epoch", "seed", *(c for c, _, _ in HISTORY_COLUMNS)) if c in table]]


def history_mean(table: pd.DataFrame) -> pd.DataFrame:
    """Per epoch: each metric's mean over seeds and `<metric>_std` (sample std; 0 with one seed),
    NaN seeds left out."""
    metrics = [c for c in table.columns if c not in ("epoch", "seed")]
    grouped = table.groupby("epoch", sort=True)[metrics]
    # sample std; 0 where one seed has a value (not NaN), NaN where none has
    mean, std = grouped.mean(), grouped.std(ddof=1).mask(grouped.count() == 1, 0.0)
    out = pd.DataFrame({"epoch": mean.index.astype(int)})
    for column in metrics:
        out[column] = mean[column].to_numpy()
        out[f"{column}_std"] = std[column].to_numpy()
    out["seeds"] = table.groupby("epoch", sort=True).size().to_numpy()
    return out


def test_predictions(predictions_dir: Path) -> pd.DataFrame:
    """One row per (test dive, seed): key, seed, true, predicted[, pred_t1, pred_t2, true_t1, true_t2]."""
    files = sorted((int(m.group(1)), p) for p in Path(predictions_dir).iterdir()
                   if (m := SEED_FILE.fullmatch(p.name)))
    if not files:
        raise PlotsDataError(f"{predictions_dir}: no seed<k>.parquet (evaluate this variant first)")
    parts = []
    for seed, path in files:
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise PlotsDataError(f"{path}: not a readable Parquet file: {exc}") from None
        missing = {"key", "true", "predicted"} - set(frame.columns)
        if missing:
            raise PlotsDataError(f"{path}: no column(s) {', '.join(sorted(missing))}")
        keep = ["key", "true", "predicted"] + [c for c in TRANSITIONS if c in frame.columns]
        frame = frame[keep].copy()
        frame.insert(1, "seed", seed)
        parts.append(frame)
    table = pd.concat(parts, ignore_index=True)
    table["key"] = table["key"].astype(str)
    return table.sort_values(["seed", "key"], kind="stable").reset_index(drop=True)


def segments(table: pd.DataFrame) -> bool:
    """Whether a variant predicts step transitions (F+S+R, TSA): its predictions carry them."""
    return all(c in table.columns for c in TRANSITIONS)


def summary(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of one evaluate JSON: honest and paper rho and R-l2 (x 100) means."""
    out: dict[str, float | None] = {}
    for protocol in ("honest", "paper"):
        for key in ("rho", "rl2_x100"):
            value = ((metrics.get(protocol) or {}).get(key) or {}).get("mean")
            out[f"{protocol}_{key}"] = None if value is None else round(float(value), 4)
    return out


def to_csv(table: pd.DataFrame) -> str:
    """CSV with floats at 6 significant digits (stable text, short lines; NaN as empty)."""
    return table.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def transition_errors(table: pd.DataFrame) -> np.ndarray:
    """(N, 2) predicted minus true transition frame (96-frame scale), every test dive of every seed."""
    return (table[["pred_t1", "pred_t2"]].to_numpy(dtype=float)
            - table[["true_t1", "true_t2"]].to_numpy(dtype=float))
