"""Self-describing checkpoints: weights plus everything needed to resume or rebuild the model.

A checkpoint holds only tensors and plain Python values, so it loads with
`torch.load(weights_only=True)`: no arbitrary unpickling of a file that came from elsewhere.
"""

from __future__ import annotations

import hashlib

import logging
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa.io import atomic_path

log = logging.getLogger(__name__)


def git_commit(cwd: str | Path | None = None) -> str:
    """`git rev-parse HEAD` of the working directory's repository, "unknown" outside one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rng_states() -> dict[str, Any]:
    """Global RNG states of torch, numpy and python, as plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` atomically (a killed write leaves the previous checkpoint intact)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable checkpoint: {exc}") from exc
    for key in ("model", "config", "epoch"):
        if key not in state:
            raise ValueError(f"{path}: checkpoint lacks {key!r}")
    return state


def code_fingerprint() -> str:
    """sha256 of the source that decides a training's result (models, training, voting, metrics).

    Stored in each checkpoint's config, so a checkpoint from other code is not resumed or reused.
    """
    root = Path(__file__).resolve().parents[1]
    files = sorted([*root.joinpath("models").glob("*.py"), *root.joinpath("train").glob("*.py"),
                    root / "evaluate" / "voting.py", root / "metrics.py"])
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
