"""The trained seed that scores, its training pool, and the checks that they belong together.

A seed's best_val.pt describes itself (config, provenance): its config rebuilds the model and
the split of its training pool; its provenance names the annotations and the feature cache it
was trained on, which must be the ones given (another cache = a model trained on other features).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa.errors import AqaError
from aqa.features.cache import FeatureCache
from aqa.provenance import annotations_digest
from aqa.train.checkpoint import CheckpointError, load_checkpoint
from aqa.train.resume import BEST, HISTORY

SEED_PREFIX = "seed"


class ModelError(AqaError):
    """No trained model where one is named, or one that does not fit the data given."""


@dataclass
class TrainedSeed:
    seed: int
    folder: Path
    state: dict[str, Any]          # best_val.pt: model, config, epoch, val, provenance

    @property
    def config(self) -> dict[str, Any]:
        return self.state["config"]

    @property
    def val_rho(self) -> float | None:
        rho = (self.state.get("val") or {}).get("rho")
        return None if rho is None or math.isnan(rho) else float(rho)

    def test_metrics(self) -> dict[str, float] | None:
        """The honest test metrics of this checkpoint (its epoch's test row of history.json)."""
        try:
            history = json.loads((self.folder / HISTORY).read_text())
            row = history[int(self.state["epoch"]) - 1]
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            return None
        return row.get("test") if isinstance(row, dict) else None


def seed_folders(model_dir: Path) -> dict[int, Path]:
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no trained model here (expected models/<dataset>/<variant>-<mode>/ "
                         "with seed<k>/best_val.pt; train it: dvc repro)")
    found = {int(p.name[len(SEED_PREFIX):]): p for p in model_dir.glob(f"{SEED_PREFIX}*")
             if p.is_dir() and p.name[len(SEED_PREFIX):].isdigit() and (p / BEST).is_file()}
    if not found:
        raise ModelError(f"{model_dir}: no seed<k>/{BEST} in the model folder (not trained, or not a model folder)")
    return dict(sorted(found.items()))


def load_seed(model_dir: Path, seed: int | None, device: torch.device) -> TrainedSeed:
    """The seed asked for, or (seed None) the seed whose checkpoint has the best validation rho:
    chosen without looking at the test split, as the honest protocol chooses its epoch."""
    folders = seed_folders(model_dir)
    if seed is not None and seed not in folders:
        raise ModelError(f"{model_dir}: no trained seed {seed} (trained: {', '.join(map(str, folders))})")
    chosen = [seed] if seed is not None else list(folders)
    seeds = []
    for s in chosen:
        try:
            seeds.append(TrainedSeed(s, folders[s], load_checkpoint(folders[s] / BEST, map_location=device)))
        except CheckpointError as exc:
            raise ModelError(str(exc)) from None
    return max(seeds, key=lambda t: (t.val_rho if t.val_rho is not None else -math.inf, -t.seed))


def check_inputs(trained: TrainedSeed, dives_parquet: Path, cache: FeatureCache) -> None:
    """Refuse annotations or a feature cache other than those the seed was trained on."""
    prov = trained.state.get("provenance") or {}
    where = trained.folder / BEST
    if trained.config.get("train", {}).get("backbone", "cached") != "cached":
        # its I3D was fine-tuned with the heads: the cache's frozen I3D would give other features
        raise ModelError(f"{where}: trained with train.backbone {trained.config['train']['backbone']} (its own "
                         "fine-tuned I3D); aqa score scores models trained on the feature cache (backbone cached)")
    if prov.get("features") != cache.fingerprint:
        raise ModelError(f"{where}: trained on other features than the cache {cache.root} (fingerprint "
                         f"{str(prov.get('features'))[:12]}... vs {cache.fingerprint[:12]}...); pass the cache it "
                         "was trained on (--features) or retrain it (dvc repro)")
    digest = annotations_digest(dives_parquet)
    if prov.get("annotations") != digest:
        raise ModelError(f"{where}: trained on other annotations than {dives_parquet} (its training pool and "
                         "exemplars would differ); pass the dives table it was trained on (--annotations)")


def needs_difficulty(config: dict[str, Any]) -> bool:
    """Whether the model reads the dive's degree of difficulty (the with-DD readings, MUSDL)."""
    return config["method"] == "musdl" or bool(config["model_kwargs"].get("use_dd"))


def pool_rows(data, config: dict[str, Any]) -> np.ndarray:
    """The training pool of the seed (train split minus its validation dives): the exemplars."""
    from aqa.train.run import split_rows

    pool, _, _ = split_rows(data, config["train"])
    return pool


def pipeline_inputs(model_dir: Path) -> dict[str, Path]:
    """The inputs of a model folder of the pipeline (models/<dataset>/<variant>-<mode>), by the
    layout of docs/CONTRACTS.md: its dataset's feature cache and dives table, the I3D weights."""
    model_dir = Path(model_dir)
    root, dataset = model_dir.parents[2] if len(model_dir.parents) > 2 else Path("."), model_dir.parent.name
    return {"features": root / "data" / "processed" / "features" / dataset / "i3d",
            "annotations": root / "data" / "processed" / "annotations" / dataset / "dives.parquet",
            "weights": root / "data" / "external" / "i3d" / "kinetics400_rgb.pt"}
