"""Tiny generated inputs for the train / evaluate tests: a dives.parquet and a feature cache.

Scores carry a little signal in the features (the mean of the pooled features moves with the
score), so a model can learn something, but the tests only rely on shapes and determinism.
"""

from __future__ import annotations

import atexit
import copy
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml

from aqa.data.schema import DIVES_SCHEMA, table_from_rows, write_parquet_atomic
from aqa.features.cache import MANIFEST, MAPS, POOLED, dive_dir


def panel_score(judges: np.ndarray, dd: float) -> float:
    """FineDiving's rule for a panel of 7 (middle three), 5 (0.6 x sum) or 3 (sum) judges, x DD."""
    if judges.size == 7:
        return float(np.sort(judges)[2:5].sum() * dd)
    return float((0.6 if judges.size == 5 else 1.0) * judges.sum() * dd)


def make_dives(num_dives: int = 24, *, num_actions: int = 3, test_fraction: float = 0.3, seed: int = 0,
               panels: tuple[int, ...] | None = None) -> list[dict]:
    """`panels`: judge counts cycled over the dives, scores by FineDiving's rule for each
    (panel_score); None: five judges and the sum of the middle three, as the older tests had."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_dives):
        video, idx = f"v{i // 10:02d}", i % 10
        dd = 2.0 + 0.4 * (i % num_actions)
        judges = np.round(rng.uniform(5.0, 9.5, size=5 if panels is None else panels[i % len(panels)]) * 2) / 2
        score = float(np.sort(judges)[1:4].sum() * dd) if panels is None else panel_score(judges, dd)
        t1 = int(rng.integers(10, 40))
        t2 = int(rng.integers(55, 90))
        rows.append({
            "key": f"{video}/{idx}", "video": video, "idx": idx,
            "split": "test" if rng.random() < test_fraction else "train",
            "action_type": f"{101 + i % num_actions}B", "difficulty": dd,
            "dive_score": score, "judge_scores": judges.tolist(),
            "num_judges": judges.size, "start_frame": 100 * i, "end_frame": 100 * i + 95, "num_frames": 96,
            "frame_labels": [0] * t1 + [1] * (t2 - t1) + [2] * (96 - t2),
            "steps_transit_frames": [t1, t2], "transitions_96": [t1, t2],
        })
    # both splits must be present whatever the draw
    rows[0]["split"], rows[1]["split"] = "train", "test"
    return rows


def write_dives(path: Path, rows: list[dict]) -> Path:
    write_parquet_atomic(table_from_rows(rows, DIVES_SCHEMA), path)
    return path


# Features of 128 channels instead of I3D's 1024 keep the models (and the tests) small.
FEATURE_DIM = 128
TINY_VARIANTS = {
    "fr": {"method": "fr", "feature_dim": FEATURE_DIM, "hidden": [16]},
    "fr_dn": {"method": "fr_dn", "feature_dim": FEATURE_DIM, "hidden": [16], "action_dim": 4},
    "fsr": {"method": "fsr", "psnet": {"feature_dim": FEATURE_DIM, "head_hidden": [16]}, "hidden": [16]},
    "tsa": {"method": "tsa", "psnet": {"feature_dim": FEATURE_DIM, "head_hidden": [16]},
            "decoder": {"dim": FEATURE_DIM // 16, "heads": 2, "depth": 1}, "regressor_hidden": [16]},
    # the baselines (direct: i3d_mlp, usdl, musdl; pairwise: core), small heads
    "i3d_mlp": {"method": "i3d_mlp", "feature_dim": FEATURE_DIM, "hidden": [16]},
    "usdl": {"method": "usdl", "feature_dim": FEATURE_DIM, "hidden": [16]},
    "musdl": {"method": "musdl", "feature_dim": FEATURE_DIM, "hidden": [16]},
    "core": {"method": "core", "feature_dim": FEATURE_DIM, "hidden": 16},
}


def write_cache(root: Path, rows: list[dict], *, views: int = 2, seed: int = 0, map_size: int = 4,
                feature_dim: int = FEATURE_DIM) -> Path:
    """A feature cache in FeatureCache's layout with random fp16 features."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(json.dumps({"backbone": "random-test", "views": views, "seed": seed}))
    for row in rows:
        folder = dive_dir(root, row["video"], row["idx"])
        folder.mkdir(parents=True, exist_ok=True)
        signal = (row["dive_score"] - 50.0) / 50.0
        pooled = rng.normal(signal, 1.0, size=(views, 9, feature_dim)).astype(np.float16)
        maps = rng.normal(signal, 1.0, size=(views, 9, feature_dim, map_size, map_size)).astype(np.float16)
        np.save(folder / POOLED, pooled)
        np.save(folder / MAPS, maps)
    return root


def tiny_dataset(tmp: Path, num_dives: int = 24, **kw) -> tuple[Path, Path, list[dict]]:
    """(dives.parquet under a 'finediving' folder, cache root, rows); `kw` go to make_dives."""
    rows = make_dives(num_dives, **kw)
    dives = write_dives(tmp / "annotations" / "finediving" / "dives.parquet", rows)
    cache = write_cache(tmp / "features", rows)
    return dives, cache, rows


def small_train_params(params: dict, **train) -> dict:
    """tiny_params made smaller still: small models on 128-d features, 3 epochs, validation carved out."""
    p = copy.deepcopy(params)
    p["train"].update({"epochs": 3, "batch_size": 4, "seeds": [0], "device": "cpu",
                       "validation_fraction": 0.25, "variants": copy.deepcopy(TINY_VARIANTS), **train})
    p["evaluate"].update({"num_exemplars": 3, "batch_size": 4})
    p["make_report"]["exemplar_counts"] = [1, 2, 3]
    p["datasets"]["variants"] = {"finediving": list(p["train"]["variants"]), "mtl_aqa": []}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    return p


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


_STORE_TEMPLATE: Path | None = None


def sqlite_store(folder: Path) -> str:
    """A real, empty MLflow sqlite store in `folder`, returned as its tracking URI.

    Creating the tables takes MLflow seconds (its migrations), so one empty store is made per
    session and copied.
    """
    global _STORE_TEMPLATE
    if _STORE_TEMPLATE is None:
        from mlflow import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="aqa-mlflow-template-")) / "mlflow.db"
        atexit.register(shutil.rmtree, template.parent, ignore_errors=True)   # /tmp kept clean between runs
        MlflowClient(f"sqlite:///{template}").search_experiments()
        _STORE_TEMPLATE = template
    shutil.copy(_STORE_TEMPLATE, folder / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"
